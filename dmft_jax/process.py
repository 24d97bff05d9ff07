"""The effective training-sample process of section 2.2, vmapped over trajectories.

Layout: time is the leading axis of every history (``u[k]`` is a length-``N`` row), and
the response tensor is ``chi[k, l, n]`` for the ``N_chi`` response trajectories, so that
every kernel row is a matrix-vector product over contiguous memory.

Two functions carry the whole scheme and are shared by the causal forward sweep and the
damped fixed-point iteration (see :mod:`dmft_jax.solver`):

- :func:`kernel_row` evaluates, at step ``k``, the pre-activations of all trajectories
  and the kernel row ``k`` (``lam_hat[k]``, ``M_C[k, :k+1]``, ``mu[k]``, ``M_R[k, :k]``)
  and the observables at ``k``;
- :func:`advance` moves ``u`` and the response state from ``k`` to ``k + 1`` given kernel row ``k``.

The response ``chi`` (or its probes) is handled by an estimator object from
:mod:`dmft_jax.response`.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from . import selection


class Randomness(eqx.Module):
    """The fixed random numbers of all trajectories (common random numbers)."""

    c: Any  # (N,) cluster label
    y: Any  # (N,) class
    h0: Any  # (N,) teacher-direction noise
    s: Any  # (T+1, N) selection paths
    u0: Any  # (N,) standard normal, scaled by sqrt(Delta R0) in use
    zeta: Any  # (T+1, N) standard normals driving the noise xi
    log_p0: Any  # (N,) log-probability of (c, s[0]) under the model and algorithm
    p_on: Any  # (T,) switching probabilities of transitions k -> k+1 (differentiable in b, tau, eta)
    p_off: Any
    dts: Any  # (T+1,) step sizes eta_k (the last repeats eta_{T-1}; it is never used)


def draw(key, problem, algorithm, n_steps: int, n_traj: int, antithetic: bool, dtype) -> Randomness:
    """Draw the randomness of ``n_traj`` trajectories.

    With ``antithetic`` the trajectories come in adjacent pairs ``(2i, 2i+1)`` that share
    ``c, h0, s`` and have opposite ``u0`` and ``zeta`` (removes the spurious O(1/sqrt N)
    drift of ``m`` in symmetric models; equations page 2.7).
    """
    kc, kh, ks, ku, kz = jax.random.split(key, 5)
    n_base = n_traj // 2 if antithetic else n_traj
    # Draw in float32 and cast, so that float32 and float64 solves share their random
    # numbers (a float32 solve can then be compared with float64 at equal noise).
    draw_dtype = jnp.float32
    c, y = (a.astype(dtype) for a in problem.model.sample(kc, (n_base,), draw_dtype))
    h0 = jax.random.normal(kh, (n_base,), draw_dtype).astype(dtype)
    s = selection.sample_paths(ks, algorithm, n_steps, (n_base,), draw_dtype).astype(dtype)
    u0 = jax.random.normal(ku, (n_base,), draw_dtype).astype(dtype)
    zeta = jax.random.normal(kz, (n_steps + 1, n_base), draw_dtype).astype(dtype)
    if antithetic:
        pair = lambda a: jnp.repeat(a, 2, axis=-1)
        mirror = lambda a: jnp.stack([a, -a], axis=-1).reshape(*a.shape[:-1], -1)
        c, y, h0, s = pair(c), pair(y), pair(h0), pair(s)
        u0, zeta = mirror(u0), mirror(zeta)
    steps = algorithm.step_sizes(n_steps, dtype)
    b, p_on, p_off = algorithm.selection(steps)
    p_on, p_off = (jnp.broadcast_to(p, (n_steps,)) for p in (p_on, p_off))
    log_p0 = problem.model.log_prob(c) + jnp.log(jnp.where(s[0] > 0, b, 1 - b))
    dts = jnp.concatenate([steps, steps[-1:]])
    return Randomness(c=c, y=y, h0=h0, s=s, u0=u0, zeta=zeta, log_p0=log_p0, p_on=p_on, p_off=p_off,
                      dts=dts)


class State(eqx.Module):
    """Carry of the time loop."""

    u: Any  # (T+1, N) history of u; row k is written at the start of step k
    g: Any  # (T+1, N) history of g = s Lambda'
    resp: Any  # state of the response estimator (dmft_jax.response), e.g. chi[k, l, n]
    u_now: Any  # (N,) u at the current step
    log_w: Any  # (N,) log-likelihood of the discrete draws (c, s[0..k]) so far


class Row(eqx.Module):
    """Kernel row ``k`` and the observables at step ``k``."""

    lam_hat: Any
    mu: Any
    M_C: Any  # (T+1,) M_C[k, :], zero beyond k
    M_R: Any  # (T+1,) M_R[k, :], zero from k on
    train_loss: Any
    train_acc: Any
    sl2: Any  # (N,) s Lambda'' (for advance)
    g_k: Any  # (N,) g[k]


def init_state(problem, rnd: Randomness, n_steps: int, est, key) -> State:
    """Initial carry; ``est`` is the response estimator, ``key`` its randomness (probes)."""
    n = rnd.u0.shape[0]
    dtype = rnd.u0.dtype
    u = jnp.zeros((n_steps + 1, n), dtype)
    g = jnp.zeros((n_steps + 1, n), dtype)
    return State(u=u, g=g, resp=est.init(key, n_steps, n, dtype),
                 u_now=jnp.sqrt(problem.delta * problem.R0) * rnd.u0, log_w=jnp.zeros(n, dtype))


class Local(eqx.Module):
    """Per-step quantities that need no history: the trajectories' ``g``, ``s Lambda''``,
    the likelihood-ratio weights and the averages of step ``k``."""

    g: Any  # (N,) s Lambda'
    sl2: Any  # (N,) s Lambda''
    w: Any  # (N,) likelihood-ratio weights (value 1)
    x1: Any  # (N,) alpha Delta w g / sum(w): M_C[k, j] = g[j] . x1
    mc_kk: Any  # M_C[k, k]
    lam_hat: Any
    mu: Any
    train_loss: Any
    train_acc: Any
    log_w: Any  # (N,) log-likelihood of the discrete draws up to k


def local_step(problem, c, y, h0, s_prev, s_k, p_on_prev, p_off_prev, log_p0, u_k, m_k, log_w_prev, k) -> Local:
    """Step ``k``'s history-free part (shared by the sweep and its adjoint)."""
    alpha, delta = problem.alpha, problem.delta
    proj = c + jnp.sqrt(delta) * h0
    r = m_k * proj + u_k
    d1, d2 = problem.loss_derivatives(y, r)
    g = s_k * d1
    sl2 = s_k * d2
    # Likelihood-ratio weights of the discrete draws (c and the selection path up to k):
    # exactly 1 in value, their derivative is the score, so that jax.grad/jvp of every
    # average below includes the dependence of the law of (c, s) on rho, b, tau, eta
    # (pathwise derivatives of Bernoulli draws are zero). Self-normalised averages
    # sum(w x) / sum(w) subtract the mean score, a built-in control variate.
    on_prev, on = s_prev > 0, s_k > 0
    prob = jnp.where(on_prev, jnp.where(on, 1 - p_off_prev, p_off_prev), jnp.where(on, p_on_prev, 1 - p_on_prev))
    log_w = log_w_prev + jnp.where(k == 0, log_p0, jnp.log(prob))
    w = jnp.exp(log_w - lax.stop_gradient(log_w))
    total = jnp.sum(w)
    mean = lambda x: jnp.sum(w * x) / total
    x1 = alpha * delta * w * g / total
    margin = y * problem.model.phi(r)
    return Local(g=g, sl2=sl2, w=w, x1=x1, mc_kk=jnp.sum(x1 * g), lam_hat=alpha * delta * mean(sl2),
                 mu=alpha * mean(g * proj), train_loss=alpha * mean(problem.loss(margin)),
                 train_acc=mean((margin > 0).astype(r.dtype)), log_w=log_w)


def local_rnd(rnd: Randomness, k):
    """The randomness ``local_step`` reads at step ``k``."""
    km1 = jnp.maximum(k - 1, 0)
    return (rnd.c, rnd.y, rnd.h0, rnd.s[km1], rnd.s[k], rnd.p_on[km1], rnd.p_off[km1], rnd.log_p0)


def kernel_row(problem, rnd: Randomness, state: State, k, m_k, est):
    """Evaluate the trajectories at step ``k`` and form kernel row ``k``.

    Returns the new state (``u[k]``, ``g[k]`` recorded) and the :class:`Row`. Histories are
    written before they are read within a step, so XLA updates them in place (writing
    ``u[k+1]`` after the memory product of the same step made it copy the history).
    """
    alpha, delta = problem.alpha, problem.delta
    u_k = state.u_now
    u_hist = state.u.at[k].set(u_k)
    loc = local_step(problem, *local_rnd(rnd, k), u_k, m_k, state.log_w, k)
    g_hist = state.g.at[k].set(loc.g)
    row = Row(
        lam_hat=loc.lam_hat,
        mu=loc.mu,
        M_C=g_hist @ loc.x1,
        # per unit time: a source at step l carries eta_l (chi[l+1, l] = eta_l Delta s Lambda'')
        M_R=(alpha * delta) * est.row(state.resp, k, loc.w, loc.sl2, rnd.dts, delta),
        train_loss=loc.train_loss,
        train_acc=loc.train_acc,
        sl2=loc.sl2,
        g_k=loc.g,
    )
    return eqx.tree_at(lambda st: (st.u, st.g, st.log_w), state, (u_hist, g_hist, loc.log_w)), row


def u_step(lam, delta, dt, u_k, g_k, lam_hat_k, memory, xi):
    """``u[k+1]`` from ``u[k]`` given the memory integral and the noise of step ``k``."""
    return u_k + dt * (-(lam + lam_hat_k) * u_k + memory + xi - delta * g_k)


def advance(problem, rnd: Randomness, state: State, k, lam_hat_k, M_R_k, L_k, row: Row, est):
    """Advance ``u`` and ``chi`` from step ``k`` to ``k + 1``.

    ``lam_hat_k``, ``M_R_k`` (row ``k`` of ``M_R``) and ``L_k`` (row ``k`` of the noise
    factor) are the kernels used for the dynamics; ``row`` supplies this step's
    per-trajectory ``g[k]`` and ``s Lambda''``. In the sweep the kernels are ``row``'s own;
    in the damped iteration they are the previous iterate's.
    """
    lam, delta = problem.lam, problem.delta
    xi = L_k @ rnd.zeta
    dt = rnd.dts[k]
    K_k = M_R_k * rnd.dts  # memory weights eta_l M_R[k, l]
    u_next = u_step(lam, delta, dt, state.u_now, row.g_k, lam_hat_k, K_k @ state.u, xi)
    resp = est.advance(state.resp, k, K_k, dt, 1.0 - dt * (lam + lam_hat_k), delta, row.sl2)
    return State(u=state.u, g=state.g, resp=resp, u_now=u_next, log_w=state.log_w)


def noise_row(Lmod, pivot_ok, a_row, k, rtol):
    """Row ``k`` of the causal (lower) Cholesky factor of ``A = Delta M_C``.

    ``a_row`` is ``A[k, :]`` (entries beyond ``k`` ignored). ``Lmod`` holds the factor's
    rows ``< k``, with rows whose pivot was clipped replaced by unit rows (and identity
    rows beyond ``k``) so that one triangular solve gives ``L[k, :k]``. A pivot below
    ``rtol * A[k, k]`` (rounding, rank deficiency) is clipped to zero.

    ``pivot_ok`` is an int8 vector: 1 for a kept pivot, 0 for one clipped at the rounding
    floor, -1 for one clipped because it came out below ``-rtol * A[k, k]`` (a loss of
    positive definiteness beyond rounding at this precision). Returns ``(L_k, Lmod, pivot_ok)``.
    """
    size = a_row.shape[0]
    idx = jnp.arange(size)
    rhs = jnp.where((idx < k) & (pivot_ok > 0), a_row, 0.0)
    x = jax.scipy.linalg.solve_triangular(Lmod, rhs, lower=True)
    a_kk = a_row[k]
    pivot = a_kk - x @ x
    ok = (pivot > rtol * a_kk) & (a_kk > 0)
    l_kk = jnp.where(ok, jnp.sqrt(jnp.where(ok, pivot, 1.0)), 0.0)
    unit = (idx == k).astype(a_row.dtype)
    L_k = x + l_kk * unit
    Lmod = Lmod.at[k].set(jnp.where(ok, L_k, unit))
    flag = jnp.where(ok, 1, jnp.where(pivot < -rtol * a_kk, -1, 0)).astype(jnp.int8)
    return L_k, Lmod, pivot_ok.at[k].set(flag)


def noise_factor(M_C, delta, rtol):
    """Full causal Cholesky factor of ``Delta M_C`` row by row (used by the iteration)."""
    size = M_C.shape[0]
    Lmod0 = jnp.eye(size, dtype=M_C.dtype)
    ok0 = jnp.zeros(size, jnp.int8)

    def body(carry, k):
        Lmod, ok = carry
        L_k, Lmod, ok = noise_row(Lmod, ok, delta * M_C[k], k, rtol)
        return (Lmod, ok), L_k

    (_, ok), L = lax.scan(body, (Lmod0, ok0), jnp.arange(size))
    return L, ok
