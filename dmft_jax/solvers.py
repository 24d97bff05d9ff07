"""The interface of a DMFT solver strategy (``solve(..., solver=...)``) and its output.

A solver turns the fixed randomness of the trajectories into the self-consistent kernels:
:class:`~dmft_jax.CausalSweep` (exact, one pass in time, the default) or
:class:`~dmft_jax.DampedIteration` (a fixed point over whole trajectories, a cross-check).
"""
from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
from jaxtyping import Array, Float, Int

from .process import Row, State


class SolverOutput(eqx.Module):
    """What a solver returns: the kernel rows ``0..T`` (stacked :class:`~dmft_jax.process.Row`),
    the magnetisation, the pivot flags of the noise factor, the final trajectory state,
    the number of iterations and whether they converged; ``factor`` (the noise factor's
    rows) only where an adjoint needs it."""

    rows: Row
    m: Float[Array, " steps"]
    pivots: Int[Array, " steps"]
    state: State
    n_iter: Any
    converged: Any
    factor: Any = None


class AbstractSolver(eqx.Module):
    """Interface: ``run`` solves the DMFT on given randomness; options are static fields.

    ``pivot_rtol``: relative floor below which Cholesky pivots of the noise covariance
    ``Delta M_C`` are treated as zero (``None``: 1e-7 in float64, 1e-4 in float32)."""

    pivot_rtol: eqx.AbstractVar[float | None]

    @abc.abstractmethod
    def run(self, problem, rnd, n_steps: int, response, key_probe, pivot_rtol: float, meter, shard,
            keep_factor: bool = False) -> SolverOutput:
        """Solve for ``n_steps`` steps with the response estimator ``response`` (resolved),
        ``key_probe`` its randomness, ``meter`` a progress meter and ``shard`` the placement of
        per-trajectory arrays."""

    @abc.abstractmethod
    def check(self, n_steps: int) -> None:
        """Raise ``ValueError`` for options that are invalid (naming them and the valid range)."""
