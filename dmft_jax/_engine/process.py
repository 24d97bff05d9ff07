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
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float

from .._algorithms import selection
from .._problem.network import Network
from .past import Past
from .._algorithms.updates import updated
from .grids import grid_normal

Traj = Float[Array, " traj"]
History = Float[Array, "steps traj"]


class Randomness(eqx.Module):
    """The fixed random numbers of all trajectories (common random numbers) and the law of
    the discrete draws they came from (differentiable: likelihood-ratio weights)."""

    c: Traj  # latent of the sample (cluster)
    y: Traj  # label
    h0: Traj  # teacher-direction noise
    s: History  # (T+1, N) selection paths
    u0: Any  # (K, N) standard normals, scaled by sqrt(Delta R0) in use
    zeta: Any  # (T+1, K, N) standard normals driving the noise xi
    log_p0: Traj  # log-probability of (c, y, s[0])
    p_on: Float[Array, " T"]  # P(s: 0 -> 1) of the transitions k -> k+1
    p_off: Float[Array, " T"]  # P(s: 1 -> 0)
    dts: Float[Array, " steps"]  # step sizes eta_k (the last repeats eta_{T-1}; never used)
    live: Any = None  # (N,) 1 for a trajectory of the solve, 0 for padding of a shape bucket; None: all
    zeta_l: Any = None  # (T+1, K, N) standard normals of the Langevin noise (None: no Langevin term)
    temperature: Any = None  # the Langevin temperature T_L (None: no Langevin term)
    update: Any = None  # the two-step update's coefficients (dmft_jax._algorithms.updates.TwoStep; None: a plain step)

    def map_trajectories(self, f) -> "Randomness":
        """``f`` applied to every per-trajectory field (e.g. to shard them)."""
        names = ("c", "y", "h0", "s", "u0", "zeta", "log_p0") + tuple(
            n for n in ("live", "zeta_l") if getattr(self, n) is not None)
        return eqx.tree_at(lambda r: [getattr(r, n) for n in names], self, [f(getattr(self, n)) for n in names])

    def at_step(self, k) -> "StepDraws":
        """What :func:`local_step` reads at step ``k``."""
        km1 = jnp.maximum(k - 1, 0)
        return StepDraws(c=self.c, y=self.y, h0=self.h0, s_prev=self.s[km1], s_k=self.s[k],
                         p_on_prev=self.p_on[km1], p_off_prev=self.p_off[km1], log_p0=self.log_p0, live=self.live)


class StepDraws(eqx.Module):
    """The randomness of one step ``k``: the sample, the selection at ``k - 1`` and ``k`` and
    the transition's probabilities."""

    c: Traj
    y: Traj
    h0: Traj
    s_prev: Traj
    s_k: Traj
    p_on_prev: Any
    p_off_prev: Any
    log_p0: Traj
    live: Any = None  # see Randomness


# Draw in float32 and cast, so that float32 and float64 solves share their random numbers (a
# float32 solve can then be compared with float64 at equal noise).
DRAW_DTYPE = jnp.float32


def _unit_fn(n_base, antithetic, moment_matching, n_live):
    """Moment matching (mean square 1 over the live trajectories), or the identity."""
    if not moment_matching:
        return lambda a: a
    live_base = None
    if n_live is not None:
        live_base = jnp.arange(n_base) < (n_live // 2 if antithetic else n_live)
    return lambda a: _unit_mean_square(a, live_base)


def gaussian_streams(key, n_steps: int, n_traj: int, antithetic: bool, dtype, moment_matching: bool = True,
                     langevin: bool = False, n_live=None):
    """The Gaussian streams of :func:`draw` with ``key`` alone: ``u0`` ``(N,)``, ``zeta``
    ``(T+1, N)`` and, with ``langevin``, the Langevin normals ``zeta_l`` (else ``None``);
    :func:`draw` takes them for each unit."""
    _, _, _, ku, kz = jax.random.split(key, 5)
    n_base = n_traj // 2 if antithetic else n_traj
    unit = _unit_fn(n_base, antithetic, moment_matching, n_live)
    u0 = unit(jax.random.normal(ku, (n_base,), DRAW_DTYPE).astype(dtype))
    zeta = unit(grid_normal(kz, n_steps + 1, n_base).astype(dtype))
    zeta_l = None
    if langevin:  # Langevin noise: its own counter-based draws (the others unchanged)
        zeta_l = unit(grid_normal(jax.random.fold_in(key, 0x1A6E), n_steps + 1, n_base).astype(dtype))
    if antithetic:
        mirror = lambda a: jnp.stack([a, -a], axis=-1).reshape(*a.shape[:-1], -1)
        u0, zeta = mirror(u0), mirror(zeta)
        zeta_l = None if zeta_l is None else mirror(zeta_l)
    return u0, zeta, zeta_l


def draw(key, problem, algorithm, n_steps: int, n_traj: int, antithetic: bool, dtype,
         moment_matching: bool = True, n_live=None, K: int = 1) -> Randomness:
    """Draw the randomness of ``n_traj`` trajectories.

    With ``antithetic`` the trajectories come in adjacent pairs ``(2i, 2i+1)`` that share
    ``c, y, h0, s`` and have opposite ``u0`` and ``zeta`` (removes the spurious O(1/sqrt N)
    drift of ``m`` in symmetric models; docs/equations.md, section 2.8.3). With
    ``moment_matching`` the Gaussian draws ``h0``, ``u0`` and each step's ``zeta`` are rescaled
    to mean square exactly 1 over the trajectories (section 2.8.7).

    Every draw depends on its trajectory (and step) index only (``zeta`` from a counter per
    step and trajectory, :func:`grid_normal`; the rest indexed by trajectory), so that the first ``n`` trajectories of a larger
    draw, or of a draw over more steps, are the draws of ``n`` trajectories over fewer steps.
    ``n_live`` (traced, optional): only the first ``n_live`` trajectories belong to the solve,
    the rest pad a shape bucket (``live`` is 0 for them; moment matching ignores them).

    ``K`` units (a committee): the Gaussian streams ``u0`` ``(K, N)``, ``zeta`` and ``zeta_l``
    ``(T+1, K, N)`` carry a unit axis; unit 0's are those of ``key`` (a single unit's), unit
    ``a``'s those of ``fold_in(key, a)``. The sample and the selection are shared.
    """
    kc, kh, ks, _, _ = jax.random.split(key, 5)
    n_base = n_traj // 2 if antithetic else n_traj
    unit = _unit_fn(n_base, antithetic, moment_matching, n_live)
    # moment matching in the working dtype: the same in a compiled solve as in an eager call
    h0 = unit(jax.random.normal(kh, (n_base,), DRAW_DTYPE).astype(dtype))
    c, y = (a.astype(dtype) for a in problem.model.sample(kc, h0.astype(DRAW_DTYPE)))
    b0, p_on, p_off = selection.law(algorithm, n_steps, dtype)
    s = selection.draw_paths(ks, b0, p_on, p_off, (n_base,), DRAW_DTYPE).astype(dtype)
    temperature = algorithm.temperature
    streams = [gaussian_streams(key if a == 0 else jax.random.fold_in(key, a), n_steps, n_traj, antithetic, dtype,
                                moment_matching, temperature is not None, n_live) for a in range(K)]
    u0, zeta = jnp.stack([st[0] for st in streams], axis=-2), jnp.stack([st[1] for st in streams], axis=-2)
    zeta_l = None if temperature is None else jnp.stack([st[2] for st in streams], axis=-2)
    if antithetic:
        pair = lambda a: jnp.repeat(a, 2, axis=-1)
        c, y, h0, s = pair(c), pair(y), pair(h0), pair(s)
    log_p0 = problem.model.log_prob(c, y) + jnp.log(jnp.where(s[0] > 0, b0, 1 - b0))
    steps = algorithm.step_sizes(n_steps, dtype)
    dts = jnp.concatenate([steps, steps[-1:]])
    live = None if n_live is None else (jnp.arange(n_traj) < n_live).astype(dtype)
    return Randomness(c=c, y=y, h0=h0, s=s, u0=u0, zeta=zeta, log_p0=log_p0, p_on=p_on, p_off=p_off,
                      dts=dts, live=live, zeta_l=zeta_l, temperature=temperature,
                      update=algorithm.two_step())


def _unit_mean_square(a, live=None):
    """``a`` rescaled along its last (trajectory) axis to mean square 1 over the ``live``
    trajectories (moment matching)."""
    if live is None:
        ms = jnp.mean(a * a, axis=-1, keepdims=True)
    else:
        ms = jnp.sum(jnp.where(live, a * a, 0.0), axis=-1, keepdims=True) / jnp.sum(live)
    return a / jnp.sqrt(jnp.maximum(ms, jnp.finfo(a.dtype).tiny))


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
                  incr=jnp.zeros((K, n), dtype))
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
    loc = local_step(net, rnd.at_step(k), u_k, m_k, state.log_w, k, b_k)
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
        u_next = u_next + jnp.sqrt(2.0 * dt * rnd.temperature * delta) * rnd.zeta_l[k]
    # momentum: u[-1] = u[0] (row k is written), so none at the first step
    u_next, incr = updated(rnd.update, u_next, state.u_now, state.u[past.slot(jnp.maximum(k - 1, 0))], state.incr)
    momentum = {} if rnd.update is None else {"update": rnd.update}
    decay = jnp.eye(net.K, dtype=u_next.dtype) - dt * decay_matrix(lam, lam_hat_k)
    resp = est.advance(state.resp, k, K_k, dt, decay, delta, row.H, **momentum)
    return State(u=state.u, g=state.g, resp=resp, u_now=u_next, log_w=state.log_w, incr=incr,
                 pend=state.pend).prefetched(past, k + 1)
