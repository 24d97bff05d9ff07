"""How reverse-mode derivatives of a solve are taken: ``solve(..., adjoint=...)``.

- :class:`AutodiffAdjoint` (default): JAX's own reverse (and forward) mode through the
  solver, for every solver, response estimator and sharding.
- :class:`SweepAdjoint`: a hand-written adjoint of the causal sweep with the exact response
  on one device: the same gradient at a fraction of the cost and memory.

Why a hand-written adjoint:
the sweep is a recurrence with memory (every step reads the whole past of ``u``,
``g``, ``chi``). JAX's reverse mode of a ``lax.scan`` saves what each step read, i.e. a
copy of the histories per step (``O(T^2 N + T^3 N_chi)`` bytes moved, the measured 15-30x
of a forward solve). But the histories are written once (row ``k`` at step ``k``) and
never changed, so the final histories *are* every intermediate state. The adjoint here
keeps them from the forward sweep and runs one backward scan over ``k = T .. 0``:

- the history-free part of step ``k`` (:func:`dmft_jax._engine.process.local_step`: loss
  derivatives, likelihood-ratio weights, kernel averages; the noise-factor row; the
  ``u``/``chi``/``m`` updates) is differentiated by ``jax.vjp`` on that step alone;
- the history contractions are transposed by hand: ``M_C[k, j] = G[j] . x1_k``,
  ``M_R[k, l] = chi[k, l] . x2_k / eta_l``, the memory ``sum_l K_k[l] U[l]``, the noise
  ``sum_j L_k[j] zeta[j]`` and ``sum_j K_k[j] chi[j]``. Their cotangents towards the
  histories are *pulled* when row ``k`` is reached, ``Ubar[k] = sum_{j>k} K_j[k] membar_j``
  (and likewise for ``G`` and ``chi``), from adjoint histories written once per step, so
  the backward pass reads, like the forward pass, ``O(T N)`` per step and writes ``O(N)``.

Measured cost of one gradient (all hyperparameters): 2.3-2.6x a forward solve on 2 CPU
cores for N = 4096-16384, N_chi = 256-4096, T = 50-100 (``benchmarks/gradient_cost.py``),
against 43-95x for JAX's reverse mode of the rolled sweep (14-28x before the sweep was
rolled: the transposes of its inner loops over tiles touch the whole response per tile).
Use this adjoint for reverse mode (``dj.tune`` does).

The values of the likelihood-ratio weights are exactly 1, so ``x1_j = alpha Delta
G[j] / N`` in value (their derivatives are taken inside ``jax.vjp`` of the local step).
Supported: the sweep with :class:`~dmft_jax.ExactResponse` (the probes' adjoint is not
written); gradients with respect to the problem's parameters, the step sizes and the
selection law (``rho``, ``b``, ``tau``, ``eta``) as with ``jax.grad`` of the plain sweep
(tests/test_adjoint.py checks equality to rounding). Forward mode (``jax.jvp``) is not
available through a custom VJP: use :class:`AutodiffAdjoint` (the default) for ``jacfwd``.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from .._engine import process
from .._util import pad_to
from .._engine.noise import NoiseFactor, noise_row
from .._response.response import ExactResponse, ExactState, chi_step
from .base import SolverOutput
from .sweep import CausalSweep, forward_sweep
from .._engine.timegrid import block_edges


class AbstractAdjoint(eqx.Module):
    """Interface: ``run`` calls the solver so that reverse mode takes this adjoint's route;
    ``check`` refuses combinations it does not support."""

    @abc.abstractmethod
    def run(self, solver, net, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard,
            **bucket) -> SolverOutput:
        """``solver.run(...)`` with this adjoint's reverse mode (``bucket``: ``n_real`` of a
        shape bucket, passed to the solver where the adjoint supports it)."""

    @abc.abstractmethod
    def check(self, solver, response, sharded: bool) -> None:
        """Raise ``ValueError`` if this adjoint cannot differentiate that solve."""


class AutodiffAdjoint(AbstractAdjoint):
    """JAX's own differentiation of the solver (forward and reverse mode)."""

    def run(self, solver, net, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard, **bucket):
        return solver.run(net, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard, **bucket)

    def check(self, solver, response, sharded):
        return None


class SweepAdjoint(AbstractAdjoint):
    """The hand-written adjoint of :class:`~dmft_jax.CausalSweep` with
    :class:`~dmft_jax.ExactResponse` on one device (reverse mode only), for a single unit
    (``K = 1``; committees are differentiated by :class:`AutodiffAdjoint`)."""

    def run(self, solver, net, rnd, n_steps, response, key_probe, pivot_rtol, meter, shard, n_real=None):
        if n_real is not None:
            raise ValueError("adjoint: SweepAdjoint solves the full T steps (no shape bucket)")
        if net.K != 1:
            raise ValueError(f"adjoint: SweepAdjoint is written for a single unit; this problem has K = {net.K} "
                             "units: use AutodiffAdjoint() (the default)")
        theta = (net.problem, rnd.dts, rnd.p_on, rnd.p_off, rnd.log_p0)
        consts = (rnd.c, rnd.y, rnd.h0, rnd.s, rnd.u0[0], rnd.zeta[:, 0])
        static = _Static(n_steps, response, pivot_rtol, solver.blocks(n_steps), meter)
        rows, m, pivots, u, g, chi = _sweep(theta, consts, static)
        unit = lambda x: x[:, None]  # the engine's unit axis, K = 1
        rows = process.Row(lam_hat=rows.lam_hat[:, None, None], mu=unit(rows.mu), M_C=rows.M_C[..., None, None],
                           M_R=rows.M_R[..., None, None], train_loss=rows.train_loss, train_acc=rows.train_acc)
        chi = tuple(c[:, None, :, None] for c in chi)
        state = process.State(u=unit(u), g=unit(g), resp=ExactState(chi=chi), u_now=unit(u)[-1],
                              log_w=jnp.zeros_like(u[-1]))
        return SolverOutput(rows=rows, m=unit(m), pivots=unit(pivots), state=lax.stop_gradient(state),
                            n_iter=jnp.asarray(0), converged=jnp.asarray(True))

    def check(self, solver, response, sharded):
        if not isinstance(solver, CausalSweep) or not isinstance(response, ExactResponse) or sharded:
            raise ValueError("adjoint: SweepAdjoint supports the CausalSweep solver with ExactResponse on one "
                             "device; use AutodiffAdjoint() (the default) otherwise")


@dataclasses.dataclass(frozen=True)
class _Static:
    """The static arguments of the custom VJP."""

    T: int
    est: Any
    pivot_rtol: float
    n_blocks: int
    meter: Any


def _rnd(theta, consts):
    problem, dts, p_on, p_off, log_p0 = theta
    c, y, h0, s, u0, zeta = consts
    return process.Randomness(c=c, y=y, h0=h0, s=s, u0=u0[None], zeta=zeta[:, None], log_p0=log_p0, p_on=p_on,
                              p_off=p_off,
                              dts=dts)


def _forward(theta, consts, static: _Static):
    """The forward sweep of the single unit, its outputs without the unit axes (the
    backward pass below is written for ``K = 1``)."""
    out = forward_sweep(process.Network.single(theta[0]), _rnd(theta, consts), static.T, static.est, None,
                        static.pivot_rtol, static.n_blocks, static.meter)
    chi = tuple(c[:, 0, :, 0] for c in static.est.to_column_blocks(out.state.resp, static.T + 1).chi)
    one = out.single_unit()
    return (one.rows, one.m, one.pivots, one.state.u, one.state.g, chi), out.factor


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sweep(theta, consts, static):
    return _forward(theta, consts, static)[0]


def _sweep_fwd(theta, consts, static):
    out, factor_rows = _forward(theta, consts, static)
    return out, (theta, consts, out, factor_rows)


class Cotangents(eqx.Module):
    """Cotangents carried backwards from step ``k + 1`` to ``k``: of ``u[k+1]``, of the
    response row ``chi[k+1]`` (block-local size), of ``m[k+1]``, of the log-likelihood, of the
    noise factor's rows (block-local), and the accumulated ones of the parameters."""

    u: Any
    chi: Any
    m: Any
    log_w: Any
    factor: Any
    problem: Any
    dts: Any
    p_on: Any
    p_off: Any
    log_p0: Any


class BlockAdjoint(eqx.Module):
    """Adjoint histories of the current backward block ``[a, p)`` (rows ``a..p-1``), written
    once per step: of the memory integral of ``u`` (``mem``) and of that of ``chi``
    (``chimem``); and of every ``M_C`` row so far (``mc``, full size)."""

    mem: Any
    chimem: Any
    mc: Any


def _sweep_bwd(static: _Static, res, cts):
    return _BackwardPass(static, res, cts).run()


class _Block(eqx.Module):
    """What the backward steps of a block ``[a, p)`` read: the past up to ``p`` and the pulls
    of its rows from the steps ``>= p`` (formed once per block)."""

    a: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    chi_cols: list  # (e, c1, block, block cut at p) of the forward's column blocks with e < p
    u_pull: Any
    g_pull: Any
    chi_pull: Any


class _BackwardPass:
    """One backward scan over ``k = T .. 0`` in blocks (module docstring): the constants of
    the pass, the three local steps differentiated by ``jax.vjp``, and the step."""

    def __init__(self, static: _Static, res, cts):
        self.T, self.est, self.pivot_rtol = static.T, static.est, static.pivot_rtol
        theta, consts, out, self.factor_rows = res
        self.problem, self.dts, self.p_on, self.p_off, self.log_p0 = theta
        self.c, self.y, self.h0, self.s, self.u0, self.zeta = consts
        self.consts = consts
        self.rows, self.ms, self.pivots, self.U, self.G, chi = out
        # the response as the forward left it: column blocks (rows e.., columns e..e+w) of chi
        self.chi_blocks, _ = ExactState(chi=chi).column_blocks()
        self.rows_bar, self.m_bar_out = cts[0], cts[1]
        self.size = self.T + 1
        self.n = self.est.n_chi
        self.N = self.U.shape[1]
        self.dtype = self.U.dtype
        self.K_all = self.rows.M_R * self.dts[None, :]  # memory weights K_j[l] = eta_l M_R[j, l]
        self.zeros_n = jnp.zeros(self.N, self.dtype)
        self.alpha_delta = self.problem.alpha * self.problem.delta

    def rb(self, name):
        """The cotangent of an output row (zeros where the output was not used)."""
        shape = (self.size, self.size) if name in ("M_C", "M_R") else (self.size,)
        v = getattr(self.rows_bar, name)
        return jnp.zeros(shape, self.dtype) if v is None else v

    def phase_a(self, problem, p_on_prev, p_off_prev, log_p0, u_k, m_k, log_w_prev, k):
        """The history-free part of step ``k`` (process.local_step) and the response weights."""
        km1 = jnp.maximum(k - 1, 0)
        draws = process.StepDraws(c=self.c, y=self.y, h0=self.h0, s_prev=self.s[km1], s_k=self.s[k],
                                  p_on_prev=p_on_prev, p_off_prev=p_off_prev, log_p0=log_p0)
        loc = process.local_step(process.Network.single(problem), draws, u_k[None], m_k[None], log_w_prev, k)
        x2 = problem.alpha * problem.delta * self.est.source_weights(loc.w, loc.H)[0, 0]
        return (loc.g[0], loc.H[0, 0], loc.x1[0], loc.mc_kk[0, 0], x2, loc.lam_hat[0, 0], loc.mu[0], loc.train_loss,
                loc.train_acc, loc.log_w)

    def phase_b(self, problem, mc_row, mr_row, dts, factor_k, k):
        """The noise-factor row ``k`` and the memory weights."""
        factor = NoiseFactor(rows=factor_k, pivots=self.pivots[: mc_row.shape[0]])
        L_k, factor_new = noise_row(factor, problem.delta * mc_row, k, self.pivot_rtol)
        return L_k, factor_new.rows, mr_row * dts

    def phase_c(self, problem, dt, u_k, g, sl2_n, lam_hat, mem, xi, chi_k, chimem, m_k, mu, k):
        """The ``u``, ``chi`` and ``m`` updates of step ``k``."""
        u_next = process.u_step(problem.lam, problem.delta, dt, u_k[None], g[None], jnp.reshape(lam_hat, (1, 1)),
                                mem[None], xi[None])[0]
        decay = jnp.reshape(1.0 - dt * (problem.lam + lam_hat), (1, 1))
        chi_next = chi_step(chi_k[None, :, None], chimem[None, :, None], k, dt, decay, problem.delta,
                            sl2_n[None, None])[0][0, :, 0]
        m_next = process.m_step(problem.lam, dt, m_k, mu)
        return u_next, chi_next, m_next

    def chi_row(self, blk: _Block, k):
        """``chi[k, :p]``. A block's rows start at ``e``; for ``k < e`` its row ``e`` (zero:
        columns ``>= e``) is read (explicitly: a negative index would wrap around)."""
        parts = [lax.dynamic_index_in_dim(arr, jnp.maximum(k - e, 0), 0, keepdims=False)[: c1 - e]
                 for e, c1, arr, _ in blk.chi_cols]
        return pad_to(jnp.concatenate(parts), blk.p, (0,))

    def step(self, blk: _Block, carry, k):
        """Backward step ``k`` in the block ``[a, p)``: the past is read from rows ``< p`` (all
        that steps ``< p`` read in the forward sweep), the future from rows ``>= a``."""
        a, p = blk.a, blk.p
        ct, hist = carry
        problem, dtype, n = self.problem, self.dtype, self.n
        km1 = jnp.maximum(k - 1, 0)
        u_k, m_k, chi_k = self.U[k], self.ms[k], self.chi_row(blk, k)
        idx_p = jnp.arange(p)
        past = idx_p < k
        # cotangents of rows k pulled from the later steps of this block that read them
        # (rows > k of the block-local adjoint histories; row k is not needed)
        k_col = jnp.where(jnp.arange(a, self.size) > k, self.K_all[a:, k], 0.0)
        u_b_pull = blk.u_pull[k - a] + k_col[: p - a] @ hist.mem
        chi_b_pull = blk.chi_pull[k - a] + jnp.tensordot(k_col[: p - a], hist.chimem, axes=(0, 0))
        # local step k: values and pullback
        outs_a, vjp_a = jax.vjp(lambda *x: self.phase_a(*x, k), problem, self.p_on[km1], self.p_off[km1],
                                self.log_p0, u_k, m_k, self.zeros_n)
        g, sl2, x1, mc_kk, x2, lam_hat, mu, _, _, _ = outs_a
        # u, chi, m updates. They are linear in the contractions, whose values enter only the
        # derivative in eta_k: recovered from the stored rows k + 1 (memory + noise)
        kp1 = jnp.minimum(k + 1, self.T)
        dt = self.dts[k]
        lam_tot = problem.lam + lam_hat
        incr = (self.U[kp1] - u_k) / dt + lam_tot * u_k + problem.delta * g
        decay = 1.0 - dt * (lam_tot + problem.delta * sl2[:n])
        chimem = (self.chi_row(blk, kp1) - decay[None, :] * chi_k) / dt  # row k is overwritten by the source
        _, vjp_c = jax.vjp(lambda *x: self.phase_c(*x, k), problem, dt, u_k, g, sl2[:n], lam_hat, incr,
                           self.zeros_n, chi_k, chimem, m_k, mu)
        (prob_c, dt_b, u_b_c, g_b_c, sl2n_b_c, lamhat_b_c, mem_b, xi_b, chik_b_c, chimem_b, m_b_c,
         mu_b_c) = vjp_c((ct.u, ct.chi, ct.m))
        # block-local adjoint histories (rows a..p-1), written in place after the pulls read them
        mem_hist = _write_after(hist.mem, k - a, mem_b, u_b_pull)
        chimem_hist = _write_after(hist.chimem, k - a, chimem_b, chi_b_pull)
        # transposed contractions towards the kernels (reads of the past)
        k_b_chi = jnp.zeros(p, dtype)
        for c0, c1, _, chi_c in blk.chi_cols:
            k_b_chi = k_b_chi.at[c0:].add(jnp.tensordot(chi_c, chimem_b[c0:c1], axes=((1, 2), (0, 1))))
        K_b = jnp.where(past, self.U[:p] @ mem_b + k_b_chi, 0.0)
        L_b = jnp.where(idx_p <= k, self.zeta[:p] @ xi_b, 0.0)
        # noise-factor row and memory weights
        factor_k = jnp.where(past[:, None], self.factor_rows[:p, :p], jnp.eye(p, dtype=dtype))
        _, vjp_b = jax.vjp(lambda *x: self.phase_b(*x, k), problem, self.rows.M_C[k, :p], self.rows.M_R[k, :p],
                           self.dts[:p], factor_k)
        prob_b, mc_b_b, mr_b_b, dts_b_b, factor_k_b = vjp_b((L_b, ct.factor, K_b))
        mc_tot = jnp.where(idx_p <= k, self.rb("M_C")[k, :p] + mc_b_b, 0.0)
        mr_tot = jnp.where(past, self.rb("M_R")[k, :p] + mr_b_b, 0.0)
        mc_hist = hist.mc.at[k, :p].set(mc_tot)
        mr_scaled = mr_tot / self.dts[:p]
        # cotangents pulled from the later steps that read row k
        inside = jnp.arange(a, p) > k
        g_b_pull = blk.g_pull[k - a] + (self.alpha_delta / self.N) * (
            jnp.where(inside, mc_hist[a:p, k], 0.0) @ self.G[a:p])
        sl2_b = jnp.zeros(self.N, dtype).at[:n].set(sl2n_b_c)
        prob_a, p_on_b, p_off_b, log_p0_b, u_b_a, m_b_a, logw_prev_b = vjp_a(
            (g_b_c + g_b_pull, sl2_b, jnp.where(past, mc_tot, 0.0) @ self.G[:p], mc_tot[k], mr_scaled @ chi_k,
             self.rb("lam_hat")[k] + lamhat_b_c, self.rb("mu")[k] + mu_b_c, self.rb("train_loss")[k],
             self.rb("train_acc")[k], ct.log_w))
        add = lambda a_, b_: jax.tree_util.tree_map(jnp.add, a_, b_)
        ct = Cotangents(
            u=u_b_a + u_b_c + u_b_pull, chi=chik_b_c + jnp.outer(mr_scaled, x2) + chi_b_pull,
            m=self.m_bar_out[k] + m_b_a + m_b_c, log_w=logw_prev_b,
            factor=jnp.where(past[:, None], factor_k_b, 0.0),
            problem=add(ct.problem, add(prob_a, add(prob_b, prob_c))),
            dts=ct.dts.at[:p].add(dts_b_b - mr_tot * self.rows.M_R[k, :p] / self.dts[:p]).at[k].add(dt_b),
            p_on=ct.p_on.at[km1].add(p_on_b), p_off=ct.p_off.at[km1].add(p_off_b), log_p0=ct.log_p0 + log_p0_b)
        return (ct, BlockAdjoint(mem=mem_hist, chimem=chimem_hist, mc=mc_hist)), None

    def run(self):
        """The backward scan, block by block from the last; returns the cotangents of
        ``(theta, consts)``."""
        size, dtype, N, n = self.size, self.dtype, self.N, self.n
        zero = lambda x: jax.tree_util.tree_map(jnp.zeros_like, x)
        ct = Cotangents(u=self.zeros_n, chi=jnp.zeros((size, n), dtype), m=jnp.zeros((), dtype),
                        log_w=self.zeros_n, factor=jnp.zeros((size, size), dtype), problem=zero(self.problem),
                        dts=jnp.zeros_like(self.dts), p_on=jnp.zeros_like(self.p_on),
                        p_off=jnp.zeros_like(self.p_off), log_p0=jnp.zeros_like(self.log_p0))
        mc_hist = jnp.zeros((size, size), dtype)
        mem_all = jnp.zeros((size, N), dtype)
        chimem_blocks = []  # (a, chimem history of block [a, b)): rows a..b-1, columns < b
        # the backward's time blocks, last first; step T (kernels only) joins the last block
        edges = block_edges(self.T, _backward_blocks(self.T))
        edges[-1] = self.T + 1
        for a, b in reversed(list(zip(edges[:-1], edges[1:]))):
            # block-local sizes of the carried row cotangents (entries beyond are structural zeros)
            ct = eqx.tree_at(lambda x: (x.chi, x.factor), ct, (ct.chi[:b], ct.factor[:b, :b]))
            hist = BlockAdjoint(mem=jnp.zeros((b - a, N), dtype), chimem=jnp.zeros((b - a, b, n), dtype), mc=mc_hist)
            # pulls of rows a..b-1 from all steps >= b, as one product per block
            if chimem_blocks:
                later = jnp.concatenate([cb[:, :b] for _, cb in chimem_blocks])  # rows b..T
                chi_pull = jnp.tensordot(self.K_all[b:, a:b], later, axes=(0, 0))
            else:
                chi_pull = jnp.zeros((b - a, b, n), dtype)
            # the response's lower triangle in the forward's column blocks, cut at b (rows
            # j <= l are zero): the read of the past chi is ~0.6 of the square b x b
            blk = _Block(a=a, p=b, chi_pull=chi_pull,
                         chi_cols=[(e, min(e + arr.shape[1], b), arr, arr[: b - e, : b - e])
                                   for e, arr in self.chi_blocks if e < b],
                         u_pull=self.K_all[b:, a:b].T @ mem_all[b:],
                         g_pull=(self.alpha_delta / N) * (mc_hist[b:, a:b].T @ self.G[b:]))
            (ct, hist), _ = lax.scan(functools.partial(self.step, blk), (ct, hist), jnp.arange(b - 1, a - 1, -1))
            ct = eqx.tree_at(lambda x: (x.chi, x.factor), ct,
                             (pad_to(ct.chi, size, (0,)), pad_to(ct.factor, size, (0, 1))))
            mc_hist = hist.mc
            mem_all = mem_all.at[a:b].set(hist.mem)
            chimem_blocks.insert(0, (a, hist.chimem))
        # u_0 = sqrt(Delta R0) u0, m_0 = m0
        _, vjp0 = jax.vjp(lambda p: (process.initial_u(p, self.u0), p.m0), self.problem)  # u0 (N,): one unit
        (prob0,) = vjp0((ct.u, ct.m))
        prob_bar = jax.tree_util.tree_map(jnp.add, ct.problem, prob0)
        return (prob_bar, ct.dts, ct.p_on, ct.p_off, ct.log_p0), zero(self.consts)


def _write_after(hist, i, row, read):
    """``hist`` with row ``i`` set to ``row``, ordered after ``read`` (a product that read
    ``hist``). The zero-weight term makes the write depend on the read; without it XLA found
    the two unordered and copied the adjoint history twice per step instead of updating it
    in place (measured: the whole gradient 1.2-1.3x slower). A non-finite ``read`` makes the
    gradient non-finite either way."""
    return lax.dynamic_update_index_in_dim(hist, row + jnp.zeros((), row.dtype) * read.ravel()[0], i, 0)


def _backward_blocks(T):
    """Blocks of the backward scan (independent of the forward's): about one per 16 steps, at
    most 12 (measured best at T = 100 on CPU: 6)."""
    return max(1, min(12, T // 16))


_sweep.defvjp(_sweep_fwd, _sweep_bwd)
