"""dmft-jax: JAX-accelerated dynamical mean-field theory of multi-pass SGD on
high-dimensional Gaussian mixtures (docs/equations.md)."""
from ._algorithms import bounds
from ._results import io, plot
from ._validate import check as check_parameter
from ._version import __version__
from ._cache.compilation import default_cache_dir, disable_compilation_cache, enable_compilation_cache
from ._cache.entry import CacheWarning
from ._solvers.adjoint import AbstractAdjoint, AutodiffAdjoint, SweepAdjoint
from ._algorithms.bounds import AbstractBound, Above, Positive, UnitInterval
from ._problem.readouts import (AbstractReadout, Committee, CustomReadout, SignCommittee,
                        SoftCommittee)
from ._algorithms.algorithms import GD, SGD, AbstractAlgorithm, AbstractMinibatch, PersistentSGD
from ._solve.standard_errors import AbstractErrors, GroupErrors, NoErrors
from ._solve.control_variates import ControlVariates
from ._tools.fdt import FDT, fdt
from ._tools.grid import GridSolution, count_compilations, solve_grid
from ._results.io import load, save
from ._solvers.iteration import DampedIteration
from ._problem.losses import (AbstractLoss, CustomLoss, Exponential, Hinge, Logistic, PseudoHuber, Quadratic,
                              SmoothHinge, Square, SquaredError)
from ._problem.problem import AbstractMixture, AbstractModel, Problem, ThreeCluster, TwoCluster
from ._problem.teacher import AbstractTeacher, TeacherRegression, TeacherStudent
from ._solve.progress import AbstractProgressMeter, NoProgressMeter, TextProgressMeter, TqdmProgressMeter
from ._solve.memory import SizeWarning, memory_estimate, time_estimate
from ._tools.exact import quadratic_dmft, ridge_gd
from ._tools.long_time import LongTimeGD, alpha_star, gd_long_time
from ._tools.replica import ERMSolution, erm
from ._response.probes import ProbeResponse
from ._response.response import AbstractResponse, ExactResponse
from ._results.results import RESULTS, Result
from ._algorithms.schedules import CustomSchedule, ExponentialDecay, PiecewiseConstant, Schedule
from ._simulate.simulate import Simulation, simulate
from ._results.solution import Solution
from ._solve.config import SolveConfig
from ._solve.trajectories import Trajectories
from ._solve.solve import solve
from ._solve.deprecated import solve_committee
from ._solvers.base import AbstractSolver
from ._solvers.sweep import CausalSweep
from ._engine.history import AbstractHistory, CompressedHistory, FullHistory
from ._tools.tune import TuneResult, tune
from ._algorithms.updates import AbstractUpdate, HeavyBall, Nesterov


_DEPRECATED_NAMES = {
    "CommitteeSolution": (Solution, "dj.solve returns a dj.Solution for every K (a committee's arrays carry unit "
                                    "axes; Q is q)"),
    "CommitteeSimulation": (Simulation, "dj.simulate returns a dj.Simulation for every K (a committee's arrays "
                                        "carry unit axes; Q is q)"),
}


def __getattr__(name):
    """Deprecated names, kept one release: ``CommitteeSolution`` is :class:`Solution` (one
    result for every number of units)."""
    if name in _DEPRECATED_NAMES:
        import warnings

        new, what = _DEPRECATED_NAMES[name]
        warnings.warn(f"dj.{name} is deprecated: {what}", DeprecationWarning, stacklevel=2)
        return new
    raise AttributeError(f"module 'dmft_jax' has no attribute {name!r}")


# former names of the interfaces
Algorithm = AbstractAlgorithm
Loss = AbstractLoss
Response = AbstractResponse


__all__ = [
    "AbstractReadout", "Committee", "solve_committee", "CustomReadout", "SignCommittee", "SoftCommittee",
    "AbstractUpdate", "HeavyBall", "Nesterov",
    "CacheWarning", "AbstractBound", "Above", "Positive", "UnitInterval", "bounds",
    "AbstractAdjoint", "AbstractAlgorithm", "AbstractErrors", "GroupErrors", "NoErrors", "AbstractLoss", "AbstractMinibatch", "AbstractMixture",
    "AbstractModel", "AbstractProgressMeter", "AbstractTeacher", "PseudoHuber", "SquaredError", "TeacherRegression",
    "TeacherStudent", "AbstractResponse", "AbstractSolver", "Algorithm",
    "AutodiffAdjoint", "CausalSweep", "AbstractHistory", "CompressedHistory", "FullHistory", "CustomLoss", "CustomSchedule", "DampedIteration", "ERMSolution",
    "ExactResponse", "Exponential", "FDT", "fdt", "ExponentialDecay", "GD", "GridSolution", "Hinge", "Logistic", "LongTimeGD",
    "Loss", "NoProgressMeter", "PersistentSGD", "PiecewiseConstant", "ProbeResponse", "Problem", "RESULTS",
    "Response", "Result", "SGD", "Schedule", "Simulation", "SmoothHinge", "Solution", "SolveConfig", "Square", "Trajectories",
    "SweepAdjoint", "TextProgressMeter", "TqdmProgressMeter", "ThreeCluster", "TuneResult", "TwoCluster", "__version__", "alpha_star",
    "check_parameter", "count_compilations", "default_cache_dir", "disable_compilation_cache",
    "enable_compilation_cache", "erm", "memory_estimate", "time_estimate", "SizeWarning", "ridge_gd", "quadratic_dmft", "Quadratic",
    "ControlVariates", "gd_long_time", "io", "load", "plot", "save", "simulate", "solve", "solve_grid",
    "tune",
]
