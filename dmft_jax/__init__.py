"""dmft-jax: JAX-accelerated dynamical mean-field theory of multi-pass SGD on
high-dimensional Gaussian mixtures."""
from . import io, plot
from .algorithms import GD, SGD, Algorithm, PersistentSGD
from .grid import GridSolution, count_compilations, solve_grid
from .io import load, save
from .losses import CustomLoss, Exponential, Hinge, Logistic, Loss, SmoothHinge, Square
from .problem import Problem, ThreeCluster, TwoCluster
from .replica import ERMSolution, alpha_star, erm, gd_long_time
from .response import ExactResponse, ProbeResponse, Response
from .schedules import CustomSchedule, ExponentialDecay, PiecewiseConstant, Schedule
from .simulate import Simulation, simulate
from .solver import Solution, solve
from .tune import TuneResult, tune

__version__ = "0.1.0"

__all__ = [
    "Algorithm", "CustomLoss", "Exponential", "GD", "Hinge", "Logistic", "Loss",
    "PersistentSGD", "Problem", "SGD", "Solution", "SmoothHinge", "Square", "ThreeCluster",
    "TwoCluster", "Simulation", "simulate", "solve", "ERMSolution", "alpha_star", "erm",
    "gd_long_time", "TuneResult", "tune", "Schedule", "ExponentialDecay", "PiecewiseConstant",
    "CustomSchedule", "ExactResponse", "GridSolution", "count_compilations", "solve_grid", "ProbeResponse", "Response", "io", "load", "plot", "save", "__version__",
]
