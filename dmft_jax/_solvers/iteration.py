"""The damped fixed-point iteration (docs/equations.md, section 2.6.3): a cross-check of the
causal sweep, and the route for any implicit time scheme.

``K <- (1 - a) K + a F(K)`` over the kernels ``(mu, lam_hat, M_C, M_R)``, where ``F``
advances all trajectories (common random numbers) with the kernels ``K`` and returns the
kernels they imply. It reaches the sweep's answer at tens of times its cost.
"""
from __future__ import annotations

import equinox as eqx
import equinox.internal as eqxi
import jax.numpy as jnp
from jax import lax

from .._engine import process
from .._engine.noise import noise_factor
from .._algorithms.updates import updated
from .base import AbstractSolver, SolverOutput
from .sweep import stack_rows


class DampedIteration(AbstractSolver):
    """``damping`` ``a`` in ``(0, 1]``; stop when every kernel moved by less than
    ``atol + rtol max|K|``, or after ``max_iter`` iterations (result ``max_iter``);
    ``pivot_rtol``: see :class:`~dmft_jax._solvers.base.AbstractSolver`."""

    damping: float = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    max_iter: int = eqx.field(static=True)
    pivot_rtol: float | None = eqx.field(static=True)

    def __init__(self, damping: float = 0.5, rtol: float = 1e-9, atol: float = 1e-12, max_iter: int = 500,
                 pivot_rtol: float | None = None):
        self.damping = damping
        self.rtol = rtol
        self.atol = atol
        self.max_iter = max_iter
        self.pivot_rtol = pivot_rtol

    def check(self, n_steps):
        if not 0 < self.damping <= 1:
            raise ValueError(f"damping must satisfy 0 < damping <= 1; got {self.damping}")
        if not (self.rtol >= 0 and self.atol >= 0):
            raise ValueError(f"rtol and atol must be >= 0; got rtol={self.rtol}, atol={self.atol}")
        if isinstance(self.max_iter, bool) or int(self.max_iter) != self.max_iter or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1; got {self.max_iter!r}")

    def run(self, net, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard, n_real=None):
        if n_real is not None:
            raise ValueError("solver: DampedIteration solves the full T steps (no shape bucket)")
        T = n_steps
        size = T + 1
        dtype = rnd.u0.dtype
        a = self.damping
        n_units = net.K
        problem = net.problem
        K0 = dict(mu=jnp.zeros((size, n_units), dtype), lam_hat=jnp.zeros((size, n_units, n_units), dtype),
                  M_C=jnp.zeros((size, size, n_units, n_units), dtype),
                  M_R=jnp.zeros((size, size, n_units, n_units), dtype))

        def F(K):
            m = magnetisation(net.m0, problem.lam, K["mu"], rnd.dts, rnd.update)
            L, pivots = noise_factor(K["M_C"], problem.delta, pivot_rtol)
            rows, state = run_fixed_kernels(net, rnd, T, response, key_probe, m, K["lam_hat"], K["M_R"], L, shard)
            return rows, state, pivots.reshape(size, n_units)

        def err(K, rows):
            diffs = [jnp.max(jnp.abs(getattr(rows, n) - K[n])) for n in K]
            scale = jnp.max(jnp.stack([jnp.max(jnp.abs(K[n])) for n in K]))
            return jnp.max(jnp.stack(diffs)) / (self.atol + self.rtol * scale)

        def cond(carry):
            K, it, e = carry
            return (it < self.max_iter) & (e > 1.0)

        def body(carry):
            K, it, _ = carry
            rows, _, _ = F(K)
            e = err(K, rows)
            K = {n: (1 - a) * K[n] + a * getattr(rows, n) for n in K}
            return K, it + 1, e

        # equinox's checkpointed while loop: bounded by max_iter, so that reverse mode (jax.grad,
        # AutodiffAdjoint) goes through the iterations (lax.while_loop has no reverse mode)
        K, n_iter, e = eqxi.while_loop(cond, body, (K0, jnp.asarray(0), jnp.asarray(jnp.inf, dtype)),
                                       max_steps=self.max_iter, kind="checkpointed")
        rows, state, pivots = F(K)
        converged = (e <= 1.0) | (err(K, rows) <= 1.0)
        m = magnetisation(net.m0, problem.lam, rows.mu, rnd.dts, rnd.update)
        return SolverOutput(rows=rows, m=m, pivots=pivots, state=state, n_iter=n_iter, converged=converged)


def magnetisation(m0, lam, mu, dts, update=None):
    """``m[0..T]`` from ``mu`` (section 2.1; with a two-step ``update``, 5.1)."""
    def body(carry, x):
        m, m_prev, incr = carry
        mu_k, dt = x
        m_next, incr = updated(update, process.m_step(lam, dt, m, mu_k), m, m_prev, incr)
        return (m_next, m, incr), m

    (m_T, _, _), m = lax.scan(body, (m0, m0, jnp.zeros_like(m0)), (mu[:-1], dts[:-1]))
    return jnp.concatenate([m, m_T[None]])


def run_fixed_kernels(net, rnd, T, est, key_probe, m, lam_hat, M_R, L, shard=lambda x: x):
    """Advance all trajectories with given kernels (``m`` ``(S, K)``, ``lam_hat`` ``(S, K, K)``,
    ``M_R`` ``(S, S, K, K)``, the noise factor ``L`` ``(S, K, S K)``); return the kernels they
    imply."""
    state = shard(process.init_state(net, rnd, T, est, key_probe))

    def body(state, k):
        state, row = process.kernel_row(net, rnd, state, k, m[k], est)
        state = process.advance(net, rnd, state, k, lam_hat[k], M_R[k], L[k], row, est)
        return state, row.public()

    state, rows = lax.scan(body, state, jnp.arange(T))
    state, row_T = process.kernel_row(net, rnd, state, T, m[T], est)
    return stack_rows(rows, row_T.public()), state
