"""The causal forward sweep (docs/equations.md, section 2.6.1): the default solver.

Why a sweep: every kernel at step ``k`` is an average over trajectories advanced with
kernels of steps ``< k`` only, so the self-consistent solution of the discrete scheme is
obtained exactly in one pass (``lax.scan`` over ``k``): evaluate the trajectories at ``k``,
form kernel row ``k``, extend the causal Cholesky factor of the noise covariance
``Delta M_C`` by one row, advance ``u``, the response and ``m``.

One rolled loop: time is cut into ``n`` chunks of equal width ``w`` (histories padded to
``n w`` rows), and every product over the past runs over the chunks up to the current
step's only (:class:`~dmft_jax._engine.past.Past`; the exact response is stored as tiles of its
lower triangle), so a step reads the ``O(k)`` (``O(k^2)`` for ``chi``) entries it needs
while the loop body, compiled once, has the same shapes at every step. The compiled
program therefore does not grow with ``T`` or with the number of chunks. Steps are
scanned in groups of ``w`` (one checkpoint per group for reverse mode); the padded steps
past ``T`` are skipped by a branch. Results are equal to rounding for any number of chunks.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._engine import process
from .._util import pad_to
from .._engine.noise import NoiseFactor, SlotNoise, noise_rows, slot_noise
from .._engine.past import Past, padded_size
from .._engine.history import AbstractHistory, FullHistory, as_history
from .._engine.weights import SlotWeights
from .base import AbstractSolver, SolverOutput
from .._engine.timegrid import auto_time_blocks, chunk_width
from .._algorithms.updates import updated


class SweepCarry(eqx.Module):
    """The state carried from step to step: trajectories, ``m[k]`` and the noise factor."""

    state: process.State
    m: jax.Array  # (K,)
    factor: NoiseFactor
    m_prev: jax.Array  # m[k-1] (m[-1] = m[0]), for momentum
    m_incr: jax.Array  # the last step's increment before momentum (a two-step update)
    b: Any = None  # the learnable bias b[k] and b[k-1] (K,) and its increment (section 5.4; None without one)
    b_prev: Any = None
    b_incr: Any = None
    weights: Any = None  # the weight side of a compressed history (SlotWeights; None for the full history)


class CausalSweep(AbstractSolver):
    """One causal pass in time, in one rolled loop. ``time_blocks``: the number of equal
    chunks time is cut into (default :func:`~dmft_jax._engine.timegrid.auto_time_blocks`): more
    chunks read less of the past per step; the compiled program is the same size for any
    number. ``buckets`` (default on): a top-level :func:`~dmft_jax.solve` with constant step
    sizes runs ``T`` steps in arrays sized for ``T``'s bucket
    (:func:`~dmft_jax._engine.timegrid.bucket_steps`), so that another ``t_max`` in the bucket
    reuses the compiled program (results equal to rounding). ``pivot_rtol``: see
    :class:`~dmft_jax._solvers.base.AbstractSolver`. ``history``: how the past is kept,
    :class:`~dmft_jax.FullHistory` (the exact scheme) or :class:`~dmft_jax.CompressedHistory`
    (cost linear in ``T``; docs/equations.md, section 2.10); default ``None``: the solve picks
    the full history up to 2000 steps and a ``CompressedHistory()`` beyond, where it applies
    (default or probed response, no momentum, the autodiff adjoint)."""

    time_blocks: int | None = eqx.field(static=True)
    pivot_rtol: float | None = eqx.field(static=True)
    buckets: bool = eqx.field(static=True)
    history: AbstractHistory = eqx.field(static=True)

    def __init__(self, time_blocks: int | None = None, pivot_rtol: float | None = None, buckets: bool = True,
                 history: AbstractHistory | None = None):
        self.time_blocks = time_blocks
        self.pivot_rtol = pivot_rtol
        self.buckets = buckets
        self.history = None if history is None else as_history(history)  # None: chosen by the solve (auto)

    def check(self, n_steps):
        if self.time_blocks is not None and (isinstance(self.time_blocks, bool)
                                             or int(self.time_blocks) != self.time_blocks
                                             or self.time_blocks < 1):
            raise ValueError(f"time_blocks must be an integer >= 1; got {self.time_blocks!r}")
        if not isinstance(self.buckets, (bool, np.bool_)):
            raise ValueError(f"buckets must be True or False; got {self.buckets!r}")
        if self.history is not None:
            self.history.check(n_steps)

    def blocks(self, n_steps: int) -> int:
        return auto_time_blocks(n_steps) if self.time_blocks is None else int(self.time_blocks)

    def run(self, net, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard, n_real=None):
        return forward_sweep(net, rnd, n_steps, response, key_probe, pivot_rtol, self.blocks(n_steps), meter,
                             shard, n_real, self.history or FullHistory())


def forward_sweep(net, rnd, T, est, key_probe, pivot_rtol, n_chunks, meter, shard=lambda x: x,
                  n_real=None, history: AbstractHistory = FullHistory()) -> SolverOutput:
    """The sweep over ``T`` steps in ``n_chunks`` chunks (see the module docstring) for the
    ``K`` units of ``net`` (:class:`~dmft_jax._engine.process.Network`; a single unit is ``K = 1``):
    kernels in ``K x K`` blocks, the noise factor over the flattened (time, unit) index.

    ``n_real`` (traced, optional): a shape bucket. The arrays are sized for ``T`` steps but the
    sweep stops after ``n_real <= T`` (steps from ``n_real`` on are skipped, kernel rows past
    ``n_real`` are zero, their pivot flags were never formed (0: the caller masks them) and
    ``m`` keeps its value at ``n_real``), so that every ``n_real``
    shares one compiled program and gives the numbers of a sweep over ``n_real`` steps.

    ``history``: how the past is kept (:mod:`dmft_jax._engine.history`). A compressed history
    reads the past through slots (kernel rows ``M_C[k, s]``, ``M_R[k, s]`` over the slots of
    step ``k``, ``M_R`` eta-weighted), draws the noise given the slots' averages and carries
    the weight side (``q``) in the loop."""
    dtype = rnd.u0.dtype
    problem, K = net.problem, net.K
    stop = T if n_real is None else n_real
    compressed = history.compressed
    past, padded, group, rnd_p = _layout(T, n_chunks, history, rnd)

    def live(carry: SweepCarry, k):
        meter.step(k, stop)
        state, row = process.kernel_row(net, rnd_p, carry.state, k, carry.m, est, past, carry.b)
        dt = rnd_p.dts[k]
        weights, extra = None, ()
        if compressed:
            xi, factor, flags = slot_noise(carry.factor, row.M_C, problem.delta, past, k, rnd_p.zeta_at(k), pivot_rtol)
            state = process.advance(net, rnd_p, state, k, row.lam_hat, row.M_R, None, row, est, past, xi=xi)
            weights = carry.weights.step(past, k, problem.lam, row.lam_hat, row.M_R, row.M_C, dt, rnd.temperature)
            extra = (carry.weights.q_perp(past.slot(k)), flags)
        else:
            L_k, factor = noise_rows(carry.factor, row.M_C, problem.delta, k, pivot_rtol)
            state = process.advance(net, rnd_p, state, k, row.lam_hat, row.M_R, L_k, row, est, past)
        m_next, m_incr = updated(rnd.update, process.m_step(problem.lam, dt, carry.m, row.mu), carry.m,
                                         carry.m_prev, carry.m_incr)
        b_next, b_incr = None, None
        if carry.b is not None:  # b[k+1] = b[k] - dt alpha E[g[k]] (no ridge on the bias)
            b_next, b_incr = updated(rnd.update, process.m_step(0.0, dt, carry.b, row.g_mean), carry.b,
                                             carry.b_prev, carry.b_incr)
        return (SweepCarry(state, m_next, factor, carry.m, m_incr, b_next, carry.b, b_incr, weights),
                ((carry.m, carry.b), row.public(), extra))

    state = shard(process.init_state(net, rnd, T, est, key_probe, past))
    zero = lambda x: None if x is None else jnp.zeros_like(x)
    if compressed:
        factor = SlotNoise.empty(past, K, rnd.u0.shape[-1], dtype)
        weights = SlotWeights.start(padded, K, past.slot(0), problem.R0, dtype)
    else:
        factor, weights = NoiseFactor.empty(padded * K, dtype), None
    carry = SweepCarry(state, net.m0, factor, net.m0, zero(net.m0), net.bias, net.bias, zero(net.bias), weights)
    return _scan(live, carry, T, group, n_real, net, rnd_p, est, past, pivot_rtol, stop)


def _layout(T, n_chunks, history, rnd):
    """``(past, rows of a history, steps per checkpointed group, randomness)`` of a sweep: a
    compressed history's slots, checkpointed every ``sqrt(T)`` steps; else the full history in
    chunks, its histories and step sizes padded to them (the padded steps' sizes are 1:
    ``M_R[k, l]`` divides by them)."""
    if history.compressed:
        past = history.past(T)
        return past, past.size(T + 1), max(16, int(np.ceil(np.sqrt(T)))), rnd
    width = chunk_width(T, n_chunks)
    padded = padded_size(T + 1, width)
    rnd_p = eqx.tree_at(lambda r: (r.zeta, r.dts), rnd,
                        (pad_to(rnd.zeta, padded, (0,)), pad_to(rnd.dts, padded, (0,), value=1.0)))
    return Past(width), padded, T if width is None else width, rnd_p


def _scan(live, carry, T, group, n_real, net, rnd_p, est, past, pivot_rtol, stop):
    """The sweep's loop over the steps of ``live`` from ``carry`` (module docstring), in
    checkpointed groups of ``group`` steps, and its output."""
    K, size, compressed = net.K, T + 1, past.compressed
    n_groups = -(-T // group)
    out_shape = jax.eval_shape(live, carry, jnp.asarray(0))

    def body(carry, k):
        if n_groups * group == T:  # no padded steps
            return live(carry, k)
        zeros = lambda: jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), out_shape[1][1:])
        return lax.cond(k < T, live, lambda c, k: (c, ((c.m, c.b),) + zeros()), carry, k)

    if n_real is None:
        # Reverse mode: each group of steps is recomputed in the backward pass (checkpoint), so
        # memory holds the groups' boundary carries plus one group's per-step carries, not T
        # carries (a carry holds the O(T^2 N_chi) response).
        run_group = jax.checkpoint(lambda c, g: lax.scan(body, c, g * group + jnp.arange(group)))
        carry, (m, rows, extra) = lax.scan(run_group, carry, jnp.arange(n_groups))
        flat = lambda a: a.reshape((-1,) + a.shape[2:])[:T]
        m, rows, extra = (jax.tree_util.tree_map(flat, x) for x in (m, rows, extra))
    else:
        # a bucket (a concrete top-level solve: forward only): n_real steps in a while loop,
        # the rows written into arrays of T (rows past n_real stay zero)
        if compressed:
            raise ValueError("a compressed history runs without shape buckets (CausalSweep(buckets=False))")

        def step(st):
            k, carry, ms, rows = st
            carry, (m_k, row, _) = live(carry, k)
            put = lambda a, x: lax.dynamic_update_index_in_dim(a, x, k, 0)
            return k + 1, carry, jax.tree_util.tree_map(put, ms, m_k), jax.tree_util.tree_map(put, rows, row)

        zeros = lambda a: jnp.zeros((T,) + a.shape, a.dtype)
        init = (jnp.zeros((), jnp.result_type(int)), carry, jax.tree_util.tree_map(zeros, out_shape[1][0]),
                jax.tree_util.tree_map(zeros, out_shape[1][1]))
        _, carry, m, rows = lax.while_loop(lambda st: st[0] < n_real, step, init)
        extra = ()
    m, b = m
    out = _finish(net, rnd_p, carry, rows, m, b, size, stop, n_real, est, past, pivot_rtol)
    if compressed:  # q from the weight side in the loop; the pivot flags of steps 0..T-1 (step T's: none)
        q_perp = jnp.concatenate([extra[0], carry.weights.q_perp(past.slot(T))[None]])
        pivots = jnp.concatenate([extra[1], jnp.ones((1, K), jnp.int8)])
        out = eqx.tree_at(lambda o: (o.q_perp, o.pivots), out, (q_perp, pivots), is_leaf=lambda x: x is None)
    return out


def _finish(net, rnd_p, carry: SweepCarry, rows, m, b, size, stop, n_real, est, past, pivot_rtol) -> SolverOutput:
    """The sweep's output: kernel row ``stop`` (``T``, or ``n_real`` in a bucket) appended to the
    scanned rows, ``m`` (and ``b``) to step ``T``, the histories cut to ``size = T + 1`` (a
    compressed history's are its slots)."""
    K = net.K
    state, row_T = process.kernel_row(net, rnd_p, carry.state, stop, carry.m, est, past, carry.b)
    if past.compressed:
        rows = stack_rows(rows, row_T.public())
        m = jnp.concatenate([m, carry.m[None]])
        b = None if b is None else jnp.concatenate([b, carry.b[None]])
        return SolverOutput(rows=rows, m=m, pivots=None, state=state, n_iter=jnp.asarray(0),
                            converged=jnp.asarray(True), factor=None, bias=b)
    _, factor = noise_rows(carry.factor, row_T.M_C, net.problem.delta, stop, pivot_rtol)
    if n_real is None:
        rows = stack_rows(rows, row_T.public())
    else:  # row n_real in place of the skipped step's zeros
        rows = stack_rows(rows, jax.tree_util.tree_map(jnp.zeros_like, row_T.public()))
        rows = jax.tree_util.tree_map(lambda a, b: a.at[n_real].set(b), rows, row_T.public())
    rows = eqx.tree_at(lambda r: (r.M_C, r.M_R), rows, (rows.M_C[:, :size], rows.M_R[:, :size]))
    m = jnp.concatenate([m, carry.m[None]])
    if b is not None:
        b = jnp.concatenate([b, carry.b[None]])
    if n_real is not None:  # m (and b) stay at their values of step n_real
        past_real = (jnp.arange(size) >= n_real)[:, None]
        m = jnp.where(past_real, carry.m, m)
        b = None if b is None else jnp.where(past_real, carry.b, b)
    state = eqx.tree_at(lambda st: (st.u, st.g), state, (state.u[:size], state.g[:size]))
    return SolverOutput(rows=rows, m=m, pivots=factor.pivots[:size * K].reshape(size, K), state=state,
                        n_iter=jnp.asarray(0), converged=jnp.asarray(True),
                        factor=carry.factor.rows[:size * K, :size * K], bias=b)


def stack_rows(rows_scan, row_last):
    """Append the last row (step T) to the scanned rows (steps 0..T-1)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), rows_scan, row_last)
