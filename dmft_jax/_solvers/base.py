"""The interface of a DMFT solver strategy (``solve(..., solver=...)``) and its output.

A solver turns the fixed randomness of the trajectories into the self-consistent kernels:
:class:`~dmft_jax.CausalSweep` (exact, one pass in time, the default) or
:class:`~dmft_jax.DampedIteration` (a fixed point over whole trajectories, a cross-check).
"""
from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from .._engine.process import Row, State


class SolverOutput(eqx.Module):
    """What a solver returns: the kernel rows ``0..T`` (stacked :class:`~dmft_jax._engine.process.Row`),
    the magnetisation, the pivot flags of the noise factor, the final trajectory state,
    the number of iterations and whether they converged; ``factor`` (the noise factor's
    rows) only where an adjoint needs it."""

    rows: Row  # kernels in K x K blocks
    m: Float[Array, "steps K"]
    pivots: Int[Array, "steps K"]
    state: State
    n_iter: Any
    converged: Any
    factor: Any = None
    bias: Any = None  # b[0..T] of a learnable bias (section 5.4)
    q_perp: Any = None  # C_perp[k, k] (T+1, K, K) from a compressed history's weight side (None: from the squares)

    def single_unit(self) -> "SolverOutput":
        """The output for ``K = 1`` with the unit axes dropped: the single-unit
        :class:`~dmft_jax.Solution`'s scalar kernels ``(T+1,)`` and ``(T+1, T+1)``, histories
        ``(T+1, N)``."""
        r = self.rows
        rows = Row(lam_hat=r.lam_hat[:, 0, 0], mu=r.mu[:, 0], M_C=r.M_C[..., 0, 0], M_R=r.M_R[..., 0, 0],
                   train_loss=r.train_loss, train_acc=r.train_acc)
        state = eqx.tree_at(lambda st: (st.u, st.g), self.state, (self.state.u[:, 0], self.state.g[:, 0]))
        return eqx.tree_at(lambda o: (o.rows, o.m, o.pivots, o.state, o.bias, o.q_perp), self,
                           (rows, self.m[:, 0], self.pivots[:, 0], state, None if self.bias is None else self.bias[:, 0],
                            None if self.q_perp is None else self.q_perp[:, 0, 0]),
                           is_leaf=lambda x: x is None)


def resolve_pivot_rtol(solver: "AbstractSolver", dtype) -> float:
    """The solver's pivot floor, or the default for ``dtype`` (1e-7 in float64, 1e-4 in
    float32); ``ValueError`` outside ``[0, 1)``. One rule for every solve (one unit or ``K``)."""
    rtol = solver.pivot_rtol
    if rtol is None:
        rtol = 1e-7 if jnp.dtype(dtype) == jnp.float64 else 1e-4
    if not 0 <= rtol < 1:
        raise ValueError(f"pivot_rtol must satisfy 0 <= pivot_rtol < 1; got {rtol}")
    return float(rtol)


class AbstractSolver(eqx.Module):
    """Interface: ``run`` solves the DMFT on given randomness; options are static fields.

    ``pivot_rtol``: relative floor below which Cholesky pivots of the noise covariance
    ``Delta M_C`` are treated as zero (``None``: 1e-7 in float64, 1e-4 in float32)."""

    pivot_rtol: eqx.AbstractVar[float | None]

    @abc.abstractmethod
    def run(self, net, rnd, n_steps: int, response, key_probe, pivot_rtol: float, meter, shard,
            n_real=None) -> SolverOutput:
        """Solve the DMFT for ``n_steps`` (``T``) steps of the ``K`` units of ``net``
        (:class:`~dmft_jax._problem.network.Network`; a single unit is ``K = 1``).

        ``rnd``: the trajectories' random numbers (:class:`~dmft_jax._engine.draws.Randomness`);
        ``response``: the resolved ``M_R`` estimator, ``key_probe`` its randomness;
        ``pivot_rtol``: the resolved pivot floor; ``meter``: call ``meter.step(k, T)`` once per
        step; ``shard``: apply it to the initial trajectory state (``process.init_state``);
        ``n_real`` (traced): solve only the first ``n_real`` steps of arrays sized for
        ``n_steps`` (a shape bucket; :class:`~dmft_jax.CausalSweep`; others refuse it).
        Build the kernel rows with :func:`dmft_jax._engine.process.kernel_row` and
        :func:`dmft_jax._engine.process.advance`, the noise with :mod:`dmft_jax._engine.noise`. Return a
        :class:`SolverOutput`: rows (``K x K`` blocks) and ``m`` ``(T + 1, K)`` for steps ``0..T``,
        ``pivots`` the int8 flags of the noise factor ``(T + 1, K)``, the final state with
        ``(T + 1, K, N)`` histories.
        Options are static (hashable) fields: they are part of the compiled program."""

    @abc.abstractmethod
    def check(self, n_steps: int) -> None:
        """Raise ``ValueError`` for options that are invalid (naming them and the valid range)."""
