"""The effective training-sample process (docs/equations.md, sections 2.2-2.3), vmapped
over trajectories.

Layout: time is the leading axis of every history (``u[k]`` is a ``(K, N)`` row: the units,
then the trajectories; a single unit is ``K = 1``) and the trajectory axis is the last axis of
every per-trajectory array, so that kernel rows are
matrix-vector products over contiguous memory and sharding splits one axis.

Two functions carry the scheme and are shared by the causal sweep, the damped iteration
and the adjoint:

- :func:`kernel_row` evaluates, at step ``k``, the pre-activations of all trajectories,
  the kernel row ``k`` (``lam_hat[k]``, ``M_C[k, :k+1]``, ``mu[k]``, ``M_R[k, :k]``) and the
  observables at ``k``; its history-free part is :func:`local_step`;
- :func:`advance` moves ``u`` and the response state from ``k`` to ``k + 1`` given kernel
  row ``k`` (the updates themselves are :func:`u_step` and :func:`m_step`).
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from .._problem.network import Network
from .past import Past
from .._algorithms.updates import updated
# the randomness lives in .draws; process.draw stays the name a solve calls (and benchmarks patch)
from .draws import Randomness, StepDraws, draw  # noqa: F401

Traj = Float[Array, " traj"]
History = Float[Array, "steps traj"]


class State(eqx.Module):
    """Carry of the time loop (histories over all steps, padded to the sweep's chunks; units
    before trajectories)."""

    u: Any  # (S, K, N): row k is written at the start of step k
    g: Any  # (S, K, N): g = s grad_r Lambda
    resp: eqx.Module  # the response estimator's state (dmft_jax._response.response)
    u_now: Any  # (K, N): u at the current step
    log_w: Traj  # log-likelihood of the discrete draws (c, s[0..k]) so far
    incr: Any = None  # (K, N): the last step's increment u[k] - u[k-1] before momentum (a two-step update)
    pend: Any = None  # a compressed history's rows of u and g the next step's merges combine (SlotPast.pair_rows)
    sel: Any = None  # the selection at the current step when drawn step by step (Selection; None: up front)

    def prefetched(self, past: Past, k) -> "State":
        """With the rows the merges at the start of step ``k`` read (a compressed history)."""
        pend = (past.pair_rows(self.u, k), past.pair_rows(self.g, k)) if past.compressed else None
        return eqx.tree_at(lambda st: st.pend, self, pend, is_leaf=lambda x: x is None)



class Row(eqx.Module):
    """Kernel row ``k`` and the observables at step ``k`` in ``K x K`` blocks; ``H`` and
    ``g_k`` are the per-trajectory parts ``advance`` needs (``None`` in stacked output)."""

    lam_hat: Any  # (K, K)
    mu: Any  # (K,)
    M_C: Any  # (S, K, K) M_C[k, :], zero beyond k
    M_R: Any  # (S, K, K) M_R[k, :], zero from k on
    train_loss: Any
    train_acc: Any
    H: Any = None  # (K, K, N) s Hess_r Lambda
    g_k: Any = None  # (K, N) g[k]
    g_mean: Any = None  # (K,) alpha E[g[k]]: the force on a learnable bias (None without one)

    def public(self) -> "Row":
        return Row(self.lam_hat, self.mu, self.M_C, self.M_R, self.train_loss, self.train_acc, g_mean=self.g_mean)


def init_state(net: Network, rnd: Randomness, n_steps: int, est, key, past: Past | None = None) -> State:
    """Initial carry; ``est`` is the response estimator, ``key`` its randomness (probes).
    With ``past`` (the rolled sweep) the histories are padded to its chunks."""
    K, n = rnd.u0.shape
    dtype = rnd.u0.dtype
    if past is None:
        resp, size = est.init(key, n_steps, n, dtype, K), n_steps + 1
    else:
        resp, size = est.init_rolled(key, n_steps, n, dtype, past, K), past.size(n_steps + 1)
    u = jnp.zeros((size, K, n), dtype)
    g = jnp.zeros((size, K, n), dtype)
    state = State(u=u, g=g, resp=resp, u_now=initial_u(net.problem, rnd.u0), log_w=jnp.zeros(n, dtype),
                  incr=jnp.zeros((K, n), dtype), sel=rnd.selection_start())
    return state if past is None else state.prefetched(past, 0)


def initial_u(problem, u0):
    """``u[0] = sqrt(Delta R0) u0``. Written as ``sqrt(Delta) sqrt(R0)`` so that at ``R0 = 0``
    only the derivative in ``R0`` (undefined for pathwise gradients there) is non-finite,
    not those of ``Delta`` and of every parameter downstream."""
    return jnp.sqrt(problem.delta) * jnp.sqrt(problem.R0) * u0


class Local(eqx.Module):
    """Per-step quantities that need no history: the trajectories' ``g`` ``(K, N)``, ``H``
    ``(K, K, N)``, the likelihood-ratio weights and the averages of step ``k``."""

    g: Any  # s grad_r Lambda
    H: Any  # s Hess_r Lambda
    w: Traj  # likelihood-ratio weights (value 1)
    x1: Any  # (K, N) alpha Delta w g / sum(w): M_C[k, j]_ab = x1[a] . g[j, b]
    mc_kk: Any  # M_C[k, k] (K, K)
    lam_hat: Any
    mu: Any
    train_loss: Any
    train_acc: Any
    log_w: Traj  # log-likelihood of the discrete draws up to k
    g_mean: Any = None  # alpha E[g] (with a learnable bias)


def likelihood_weights(draws: StepDraws, log_w_prev, k):
    """``(log_w, w)`` at step ``k``: the likelihood-ratio weights of the discrete draws (``c``
    and the selection path up to ``k``). Exactly 1 in value, their derivative is the score,
    so that jax.grad/jvp of every average includes the dependence of the law of ``(c, s)`` on
    rho, b, tau, eta (pathwise derivatives of Bernoulli draws are zero). Self-normalised
    averages ``sum(w x) / sum(w)`` subtract the mean score, a built-in control variate.
    Padding trajectories of a shape bucket get weight 0 (outside every average)."""
    on_prev, on = draws.s_prev > 0, draws.s_k > 0
    p_on, p_off = draws.p_on_prev, draws.p_off_prev
    prob = jnp.where(on_prev, jnp.where(on, 1 - p_off, p_off), jnp.where(on, p_on, 1 - p_on))
    log_w = log_w_prev + jnp.where(k == 0, draws.log_p0, jnp.log(prob))
    w = jnp.exp(log_w - lax.stop_gradient(log_w))
    if draws.live is not None:
        w = w * draws.live
    return log_w, w


def local_step(net: Network, draws: StepDraws, u_k, m_k, log_w_prev, k, b_k=None) -> Local:
    """Step ``k``'s history-free part (shared by the sweep and its adjoint): ``u_k``
    ``(K, N)``, ``m_k`` ``(K,)``; ``b_k``: the learnable bias at ``k`` (section 5.4), if the
    problem has one."""
    problem = net.problem
    alpha, delta = problem.alpha, problem.delta
    proj = problem.model.projection(draws.c, draws.h0, delta)
    r = m_k[:, None] * proj + u_k
    if b_k is not None:
        r = r + b_k[:, None]
    d1, d2 = net.readout.loss_derivatives(problem, draws.y, r)
    g = draws.s_k * d1
    H = draws.s_k * d2
    log_w, w = likelihood_weights(draws, log_w_prev, k)
    total = jnp.sum(w)
    mean = lambda x: jnp.sum(w * x, axis=-1) / total
    x1 = alpha * delta * w * g / total
    out = net.readout(r.T)
    margin = draws.y * out
    loss = problem.loss(problem.model.loss_argument(draws.y, out))
    return Local(g=g, H=H, w=w, x1=x1, mc_kk=x1 @ g.T, lam_hat=alpha * delta * mean(H),
                 mu=alpha * mean(g * proj), train_loss=alpha * mean(loss),
                 train_acc=mean((margin > 0).astype(r.dtype)), log_w=log_w,
                 g_mean=None if b_k is None else alpha * mean(g))


def kernel_row(net: Network, rnd: Randomness, state: State, k, m_k, est, past: Past = Past(), b_k=None):
    """Evaluate the trajectories at step ``k`` and form kernel row ``k`` (products over the
    history as ``past`` takes them).

    Returns the new state (``u[k]``, ``g[k]`` recorded, the estimator's :meth:`begin` taken)
    and the :class:`Row`. Histories are written before they are read within a step, so XLA
    updates them in place (writing ``u[k+1]`` after the memory product of the same step made it
    copy the history).
    """
    alpha, delta = net.problem.alpha, net.problem.delta
    u_k = state.u_now
    # a compressed history merges the slots step k - 1 filled up first (writes before reads)
    pend = (None, None) if state.pend is None else state.pend
    u_hist = past.put(state.u, past.slot(k), u_k, k, rows=pend[0])
    loc = local_step(net, rnd.at_step(k, state.sel), u_k, m_k, state.log_w, k, b_k)
    g_hist = past.put(state.g, past.slot(k), loc.g, k, rows=pend[1])
    resp = est.begin(state.resp, k)
    row = Row(
        lam_hat=loc.lam_hat,
        mu=loc.mu,
        M_C=past.rows(g_hist, k, lambda g: jnp.einsum("an,lbn->lab", loc.x1, g)),
        # per unit time: a source at step l carries eta_l (chi[l+1, l] = eta_l Delta H_l)
        M_R=(alpha * delta) * est.row(resp, k, loc.w, loc.H, rnd.dts, delta),
        train_loss=loc.train_loss,
        train_acc=loc.train_acc,
        H=loc.H,
        g_k=loc.g,
        g_mean=loc.g_mean,
    )
    return eqx.tree_at(lambda st: (st.u, st.g, st.log_w, st.resp), state, (u_hist, g_hist, loc.log_w, resp)), \
        net.project(row)


def decay_matrix(lam, lam_hat_k):
    """``lam I + lam_hat_k`` ``(K, K)``: the deterministic restoring force of step ``k``."""
    return lam * jnp.eye(lam_hat_k.shape[-1], dtype=lam_hat_k.dtype) + lam_hat_k


def u_step(lam, delta, dt, u_k, g_k, lam_hat_k, memory, xi):
    """``u[k+1]`` from ``u[k]`` ``(K, N)`` given the memory integral and the noise of step ``k``
    (docs/equations.md, section 2.2)."""
    return u_k + dt * (-(decay_matrix(lam, lam_hat_k) @ u_k) + memory + xi - delta * g_k)


def m_step(lam, dt, m_k, mu_k):
    """``m[k+1] = m[k] - eta_k (lam m[k] + mu[k])`` (docs/equations.md, section 2.1)."""
    return m_k - dt * (lam * m_k + mu_k)



def noise_term(L_k, zeta, k, past: Past = Past()):
    """``xi[k] = sum_j L[(k, a), (j, b)] zeta[j, b]`` ``(K, N)`` from the factor's rows of step
    ``k``, ``L_k`` ``(K, S K)`` over the flattened (time, unit) index."""
    K = L_k.shape[0]
    L_t = jnp.transpose(L_k.reshape(K, -1, K), (1, 0, 2))  # [j, a, b], time leading
    return past.total(k, lambda L, z: jnp.einsum("jab,jbn->an", L, z), L_t, zeta)


def advance(net: Network, rnd: Randomness, state: State, k, lam_hat_k, M_R_k, L_k, row: Row, est,
            past: Past = Past(), xi=None):
    """Advance ``u`` and the response from step ``k`` to ``k + 1``.

    ``lam_hat_k``, ``M_R_k`` (row ``k`` of ``M_R``, ``(S, K, K)``) and ``L_k`` (the noise
    factor's rows of step ``k``, ``(K, S K)``) are the kernels used for the dynamics; ``row``
    supplies this step's per-trajectory ``g[k]`` and ``H``. In the sweep the kernels are
    ``row``'s own; in the damped iteration they are the previous iterate's. ``xi``: the noise of
    step ``k`` when the history draws it itself (a compressed history; ``L_k`` is then unused).
    """
    lam, delta = net.problem.lam, net.problem.delta
    if xi is None:
        xi = noise_term(L_k, rnd.zeta, k, past)
    dt = rnd.dts[k]
    K_k = past.eta_weighted(M_R_k, rnd.dts)  # memory weights eta_l M_R[k, l]
    memory = past.total(k, lambda Kl, u: jnp.einsum("lab,lbn->an", Kl, u), K_k, state.u)
    u_next = u_step(lam, delta, dt, state.u_now, row.g_k, lam_hat_k, memory, xi)
    if rnd.temperature is not None:  # Langevin: the weight noise reaches the field through |x|^2/d = Delta
        u_next = u_next + jnp.sqrt(2.0 * dt * rnd.temperature * delta) * rnd.zeta_l_at(k)
    # momentum: u[-1] = u[0] (row k is written), so none at the first step
    u_next, incr = updated(rnd.update, u_next, state.u_now, state.u[past.slot(jnp.maximum(k - 1, 0))], state.incr)
    momentum = {} if rnd.update is None else {"update": rnd.update}
    decay = jnp.eye(net.K, dtype=u_next.dtype) - dt * decay_matrix(lam, lam_hat_k)
    resp = est.advance(state.resp, k, K_k, dt, decay, delta, row.H, **momentum)
    return State(u=state.u, g=state.g, resp=resp, u_now=u_next, log_w=state.log_w, incr=incr,
                 pend=state.pend, sel=rnd.selection_next(state.sel, k)).prefetched(past, k + 1)
