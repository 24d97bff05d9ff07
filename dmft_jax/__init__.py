"""dmft-jax: JAX-accelerated dynamical mean-field theory of multi-pass SGD on
high-dimensional Gaussian mixtures (docs/equations.md)."""
from . import bounds, io, plot
from ._validate import check as check_parameter
from .cache import default_cache_dir, disable_compilation_cache, enable_compilation_cache
from .cache_entry import CacheWarning
from .adjoint import AbstractAdjoint, AutodiffAdjoint, SweepAdjoint
from .bounds import AbstractBound, Above, Positive, UnitInterval
from .committee import (AbstractReadout, Committee, CommitteeSimulation, CustomReadout, SignCommittee,
                        SoftCommittee)
from .committee_solve import CommitteeSolution
from .algorithms import GD, SGD, AbstractAlgorithm, AbstractMinibatch, PersistentSGD
from .errors import AbstractErrors, GroupErrors, NoErrors
from .fdt import FDT, fdt
from .grid import GridSolution, count_compilations, solve_grid
from .io import load, save
from .iteration import DampedIteration
from .losses import (AbstractLoss, CustomLoss, Exponential, Hinge, Logistic, PseudoHuber, SmoothHinge, Square,
                     SquaredError)
from .problem import AbstractMixture, AbstractModel, Problem, ThreeCluster, TwoCluster
from .teacher import AbstractTeacher, TeacherRegression, TeacherStudent
from .progress import AbstractProgressMeter, NoProgressMeter, TextProgressMeter
from .replica import ERMSolution, LongTimeGD, alpha_star, erm, gd_long_time
from .probes import ProbeResponse
from .response import AbstractResponse, ExactResponse
from .results import RESULTS, Result
from .schedules import CustomSchedule, ExponentialDecay, PiecewiseConstant, Schedule
from .simulate import Simulation, simulate
from .solution import Solution, SolveConfig
from .solver import solve
from .deprecated import solve_committee
from .solvers import AbstractSolver
from .sweep import CausalSweep
from .tune import TuneResult, tune
from .updates import AbstractUpdate, HeavyBall, Nesterov

# former names of the interfaces
Algorithm = AbstractAlgorithm
Loss = AbstractLoss
Response = AbstractResponse

__version__ = "0.2.0"

__all__ = [
    "AbstractReadout", "Committee", "CommitteeSimulation", "CommitteeSolution", "solve_committee", "CustomReadout", "SignCommittee", "SoftCommittee",
    "AbstractUpdate", "HeavyBall", "Nesterov",
    "CacheWarning", "AbstractBound", "Above", "Positive", "UnitInterval", "bounds",
    "AbstractAdjoint", "AbstractAlgorithm", "AbstractErrors", "GroupErrors", "NoErrors", "AbstractLoss", "AbstractMinibatch", "AbstractMixture",
    "AbstractModel", "AbstractProgressMeter", "AbstractTeacher", "PseudoHuber", "SquaredError", "TeacherRegression",
    "TeacherStudent", "AbstractResponse", "AbstractSolver", "Algorithm",
    "AutodiffAdjoint", "CausalSweep", "CustomLoss", "CustomSchedule", "DampedIteration", "ERMSolution",
    "ExactResponse", "Exponential", "FDT", "fdt", "ExponentialDecay", "GD", "GridSolution", "Hinge", "Logistic", "LongTimeGD",
    "Loss", "NoProgressMeter", "PersistentSGD", "PiecewiseConstant", "ProbeResponse", "Problem", "RESULTS",
    "Response", "Result", "SGD", "Schedule", "Simulation", "SmoothHinge", "Solution", "SolveConfig", "Square",
    "SweepAdjoint", "TextProgressMeter", "ThreeCluster", "TuneResult", "TwoCluster", "__version__", "alpha_star",
    "check_parameter", "count_compilations", "default_cache_dir", "disable_compilation_cache",
    "enable_compilation_cache", "erm", "gd_long_time", "io", "load", "plot", "save", "simulate", "solve", "solve_grid",
    "tune",
]
