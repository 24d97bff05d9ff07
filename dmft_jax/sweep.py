"""The causal forward sweep (docs/equations.md, section 2.6.1): the default solver.

Why a sweep: every kernel at step ``k`` is an average over trajectories advanced with
kernels of steps ``< k`` only, so the self-consistent solution of the discrete scheme is
obtained exactly in one pass (``lax.scan`` over ``k``): evaluate the trajectories at ``k``,
form kernel row ``k``, extend the causal Cholesky factor of the noise covariance
``Delta M_C`` by one row, advance ``u``, the response and ``m``.

Time is cut into blocks; in a block ending at step ``e`` all histories (``u``, ``g``, the
response, the noise factor) are held at size ``e + 1`` only, so a step reads the ``O(k)``
(``O(k^2)`` for ``chi``) entries it needs instead of the full ``T + 1`` (triangular
structure); arrays grow by zero padding between blocks. Results are equal to rounding for
any number of blocks.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from . import process
from ._util import pad_to
from .noise import NoiseFactor, noise_row
from .solvers import AbstractSolver, SolverOutput
from .timegrid import auto_time_blocks, block_edges


class SweepCarry(eqx.Module):
    """The state carried from step to step: trajectories, ``m[k]`` and the noise factor."""

    state: process.State
    m: jax.Array
    factor: NoiseFactor


class CausalSweep(AbstractSolver):
    """One causal pass in time. ``time_blocks``: number of time blocks (default
    :func:`~dmft_jax.timegrid.auto_time_blocks`): more blocks read less history per step but
    compile longer. ``pivot_rtol``: see :class:`~dmft_jax.solvers.AbstractSolver`."""

    time_blocks: int | None = eqx.field(static=True)
    pivot_rtol: float | None = eqx.field(static=True)

    def __init__(self, time_blocks: int | None = None, pivot_rtol: float | None = None):
        self.time_blocks = time_blocks
        self.pivot_rtol = pivot_rtol

    def check(self, n_steps):
        if self.time_blocks is not None and (isinstance(self.time_blocks, bool)
                                             or int(self.time_blocks) != self.time_blocks
                                             or self.time_blocks < 1):
            raise ValueError(f"time_blocks must be an integer >= 1; got {self.time_blocks!r}")

    def blocks(self, n_steps: int) -> int:
        return auto_time_blocks(n_steps) if self.time_blocks is None else int(self.time_blocks)

    def run(self, problem, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard):
        return forward_sweep(problem, rnd, n_steps, response, key_probe, pivot_rtol, self.blocks(n_steps), meter,
                             shard)


def forward_sweep(problem, rnd, T, est, key_probe, pivot_rtol, n_blocks, meter, shard=lambda x: x) -> SolverOutput:
    """The sweep over ``T`` steps in ``n_blocks`` time blocks (see the module docstring)."""
    edges = block_edges(T, n_blocks)
    dtype = rnd.u0.dtype
    size = T + 1

    def body(carry: SweepCarry, k, rnd_b):
        meter.step(k, T)
        state, row = process.kernel_row(problem, rnd_b, carry.state, k, carry.m, est)
        L_k, factor = noise_row(carry.factor, problem.delta * row.M_C, k, pivot_rtol)
        state = process.advance(problem, rnd_b, state, k, row.lam_hat, row.M_R, L_k, row, est)
        m_next = process.m_step(problem.lam, rnd.dts[k], carry.m, row.mu)
        return SweepCarry(state, m_next, factor), (carry.m, row.public())

    s0 = edges[1] + 1
    full = shard(process.init_state(problem, rnd, T, est, key_probe))
    state = eqx.tree_at(lambda st: (st.u, st.g, st.resp), full, (full.u[:s0], full.g[:s0], est.shrink(full.resp, s0)))
    carry = SweepCarry(state, problem.m0, NoiseFactor.empty(s0, dtype))
    ms, rows_list = [], []
    for e0, e1 in zip(edges[:-1], edges[1:]):
        sb = e1 + 1
        carry = _grow(carry, sb, est, dtype)
        rnd_b = eqx.tree_at(lambda r: (r.zeta, r.dts), rnd, (rnd.zeta[:sb], rnd.dts[:sb]))
        # Reverse mode: each block is recomputed in the backward pass (block checkpoint),
        # so memory holds the block-boundary carries plus one block's per-step carries,
        # not T carries (a carry holds the O(T^2 N_chi) response).
        run_block = jax.checkpoint(
            lambda c, rnd_b=rnd_b, e0=e0, e1=e1: lax.scan(lambda c, k: body(c, k, rnd_b), c, jnp.arange(e0, e1)))
        carry, (m, rows) = run_block(carry)
        ms.append(m)
        rows_list.append(pad_rows(rows, size))
    state, row_T = process.kernel_row(problem, rnd, carry.state, T, carry.m, est)
    _, factor = noise_row(carry.factor, problem.delta * row_T.M_C, T, pivot_rtol)
    rows = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *rows_list)
    rows = stack_rows(rows, pad_rows(row_T.public(), size))
    m = jnp.concatenate(ms + [carry.m[None]])
    return SolverOutput(rows=rows, m=m, pivots=factor.pivots, state=state, n_iter=jnp.asarray(0),
                        converged=jnp.asarray(True), factor=carry.factor.rows)


def _grow(carry: SweepCarry, size: int, est, dtype) -> SweepCarry:
    """The carry's histories grown to a time block of ``size`` steps."""
    state = carry.state
    if state.u.shape[0] >= size:
        return carry
    state = eqx.tree_at(lambda st: (st.u, st.g, st.resp), state,
                        (pad_to(state.u, size, (0,)), pad_to(state.g, size, (0,)), est.grow(state.resp, size)))
    old = carry.factor.rows.shape[0]
    rows = pad_to(carry.factor.rows, size, (0, 1)) + jnp.diag((jnp.arange(size) >= old).astype(dtype))
    factor = NoiseFactor(rows=rows, pivots=pad_to(carry.factor.pivots, size, (0,)))
    return SweepCarry(state, carry.m, factor)


def stack_rows(rows_scan, row_last):
    """Append the last row (step T) to the scanned rows (steps 0..T-1)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), rows_scan, row_last)


def pad_rows(rows, size):
    """Pad kernel rows (``M_C``, ``M_R``) of a block to the full length ``T + 1``."""
    return eqx.tree_at(lambda r: (r.M_C, r.M_R), rows,
                       (pad_to(rows.M_C, size, (rows.M_C.ndim - 1,)),
                        pad_to(rows.M_R, size, (rows.M_R.ndim - 1,))))
