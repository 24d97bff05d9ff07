"""The exact DMFT of a loss quadratic in the margin or the residual (docs/equations.md,
section 2.11): the effective process is then linear, so given the data atom (cluster or
label) every trajectory is a linear function of Gaussian and fixed variables, and the
kernels follow from second moments carried forward step by step, with no Monte Carlo.

The selection paths are the one non-Gaussian ingredient. They form a two-state Markov chain
(full batch: always 1), so the moments are split by the current state: ``S[a, s]`` holds
``E[1{s_k = s} X X^T | atom a]`` for the vector ``X`` of everything a step reads (``Z = (1, h0,
y)``, ``u[0..k]``, ``g[0..k-1]`` and the unit noises ``zeta[0..k-1]`` of the causal factor),
and ``Q[a, s, j, l] = E[1{s_k = s} chi[j, l] | atom a]`` the response's. A variable of step
``k`` is a linear form of ``X`` (times ``s_k`` for ``g``), so it adds a row and a column; the
transition ``k -> k+1`` mixes the two states. Every quantity of the Monte Carlo sweep has its
exact counterpart: ``lam_hat``, ``mu``, ``M_C``, ``M_R``, ``m``, ``train_loss``; ``R``, ``P``,
``C_perp``, ``q`` and ``eps_gen`` then come from the engine's own weight side
(:mod:`dmft_jax._engine.weights`) and the model's ``eps_gen``.

Cost ``O(T^3)`` time and ``O(T^2)`` memory (the moment matrices are ``(3T + 5)^2`` per atom and
state): milliseconds at ``T = 100``, seconds at ``T = 1000``.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from .._algorithms import selection
from . import weights
from .noise import NoiseFactor, noise_row


class GaussianCurves(eqx.Module):
    """The exact curves of a quadratic loss at the steps ``k = 0..T`` (JAX arrays): times
    ``t``, magnetisation ``m``, ``q``, ``eps_gen``, ``train_loss``, the kernels ``lam_hat``,
    ``mu``, ``M_C`` (lower triangle), ``M_R`` (strictly lower) and ``C_perp``."""

    t: Any
    m: Any
    q: Any
    eps_gen: Any
    train_loss: Any
    lam_hat: Any
    mu: Any
    M_C: Any
    M_R: Any
    C_perp: Any


def applicable(problem, algorithm) -> str | None:
    """Why :func:`quadratic_curves` cannot solve ``(problem, algorithm)``, or ``None``."""
    from .._problem.problem import Problem

    if not isinstance(problem, Problem):
        return "a committee's read-out is not linear: only a single unit (dj.Problem) has a linear surrogate process"
    if problem.loss.quadratic is None:
        return f"the loss {type(problem.loss).__name__} is not quadratic (use dj.Quadratic, Square or SquaredError)"
    if problem.model.gaussian_atoms(problem.delta) is None:
        return (f"{type(problem.model).__name__} has a non-linear read-out Phi(r) (or no known moments), so no loss "
                "makes its effective process linear")
    if problem.bias is not None:
        return "a learnable bias is not covered"
    if getattr(algorithm, "beta", None) is not None or getattr(algorithm, "temperature", None) is not None:
        return "momentum and Langevin noise are not covered"
    return None


def quadratic_curves(problem, algorithm, n_steps: int, dtype, pivot_rtol: float) -> GaussianCurves:
    """The exact solution (module docstring) of ``problem`` (its loss quadratic, see
    :func:`applicable`) trained by ``algorithm`` for ``n_steps`` steps; jittable and
    differentiable in the parameters. ``pivot_rtol``: the noise factor's pivot floor, as the
    sweep's."""
    T = n_steps
    weights_a, proj, Zmom = (jnp.asarray(x, dtype) for x in problem.model.gaussian_atoms(problem.delta))
    A = weights_a.shape[0]
    curv, center, offset = (jnp.asarray(x, dtype) for x in problem.loss.quadratic)
    alpha, delta, lam = (jnp.asarray(getattr(problem, n), dtype) for n in ("alpha", "delta", "lam"))
    steps = jnp.asarray(algorithm.step_sizes(T, dtype), dtype)
    dts = jnp.concatenate([steps, steps[-1:]])
    b0, p_on, p_off = (jnp.asarray(x, dtype) for x in selection.law(algorithm, T, dtype))
    p_on, p_off = jnp.concatenate([p_on, p_on[-1:]]), jnp.concatenate([p_off, p_off[-1:]])
    margin = problem.model.argument == "margin"
    y_atom = Zmom[:, 0, 2]  # E[y | atom] (the label itself for a loss of the margin)
    d_atom = y_atom if margin else jnp.ones_like(y_atom)  # d v / d r

    D, iu, ig, iz = 5 + 3 * T, (lambda j: 3 + j), (lambda j: 4 + T + j), (lambda j: 5 + 2 * T + j)  # X's layout
    idx = jnp.arange(D)
    unit = lambda i: (idx == i).astype(dtype)
    S0 = jnp.zeros((A, D, D), dtype).at[:, :3, :3].set(Zmom)
    S0 = S0.at[:, iu(0), iu(0)].set(delta * jnp.asarray(problem.R0, dtype))
    S = jnp.stack([1 - b0, b0]).astype(dtype)[None, :, None, None] * S0[:, None]  # states s = 0, 1
    Q = jnp.zeros((A, 2, T + 1, T + 1), dtype)
    sigma = jnp.asarray([0.0, 1.0], dtype)
    zproj = jnp.pad(proj, ((0, 0), (0, D - 3)))  # the field along the teacher, as a form over X

    E = lambda x: jnp.einsum("a,a...->...", weights_a, jnp.sum(x, axis=1))  # over atoms and states
    lags = jnp.arange(T + 1)

    def observe(S, Q, m, k):
        """Step ``k``'s ``g`` appended to ``S`` and its kernel rows and training loss."""
        # the argument v of the loss at step k, as a form over X: y r (margin) or r - y (residual)
        r_form = m * zproj + unit(iu(k))[None, :]
        v_form = d_atom[:, None] * r_form if margin else r_form - unit(2)[None, :]
        shifted = v_form - center * unit(0)[None, :]  # ell'(v) = curv (v - center)
        # E[1{s_k = s} (v - center) X]: v is a form over Z and u[k] only, so four rows of S
        w = jnp.einsum("ad,asde->ase", shifted[:, :3], S[:, :, :3, :]) + shifted[:, iu(k), None, None] * S[:, :, iu(k), :]
        square = jnp.einsum("ase,ae->as", w, shifted)
        scale = (curv * d_atom)[:, None] * sigma[None, :]  # g = s Lambda' = s curv d (v - center)
        prob = S[:, :, 0, 0]  # P(s_k = s | atom)
        S = _put(S, ig(k), scale[..., None] * w, scale**2 * square)
        row_MC = alpha * delta * E(S[:, :, ig(k), :])[ig(0):ig(0) + T + 1] * (lags <= k)
        mu = alpha * E(jnp.einsum("asd,ad->as", S[:, :, ig(k), :], zproj))
        lam_hat = alpha * delta * curv * (weights_a @ prob[:, 1])
        row_MR = alpha * delta * curv * (weights_a @ Q[:, 1, k, :]) / dts * (lags < k)  # E[a_k chi[k, l]] / eta_l
        loss = alpha * E(offset * prob + 0.5 * curv * square)
        return S, prob, (row_MC, row_MR, mu, lam_hat, loss)

    def step(carry, k):
        S, Q, m, factor = carry
        S, prob, rows = observe(S, Q, m, k)
        row_MC, row_MR, mu, lam_hat, _ = rows
        # the noise xi[k] = sum_j L[k, j] zeta[j] (the causal factor of Delta M_C, as the sweep's)
        L_k, factor = noise_row(factor, delta * row_MC, k, pivot_rtol)
        S = S.at[:, :, iz(k), iz(k)].set(prob)
        dt = dts[k]
        memory = dt * row_MR * dts  # eta_k eta_l M_R[k, l]
        u_next = ((1 - dt * (lam + lam_hat)) * unit(iu(k)) + jnp.pad(memory, (3, D - T - 4))
                  + dt * jnp.pad(L_k[:T], (5 + 2 * T, 0)) - dt * delta * unit(ig(k)))
        row = jnp.einsum("d,asde->ase", u_next, S)
        S = _put(S, iu(k + 1), row, jnp.einsum("ase,e->as", row, u_next))
        # chi[k+1, l] = (1 - eta_k (lam + lam_hat + Delta a_k)) chi[k, l] + eta_k sum_j eta_j M_R[k, j] chi[j, l]
        a_k = curv * sigma  # Lambda'' s_k, per state
        decay = 1 - dt * (lam + lam_hat + delta * a_k)
        new = decay[None, :, None] * Q[:, :, k, :] + jnp.einsum("j,asjl->asl", memory, Q)
        new = new.at[:, :, k].add(dt * delta * a_k[None, :] * prob)  # the source chi[k+1, k] = eta_k Delta a_k
        Q = Q.at[:, :, k + 1, :].set(new)
        m_next = m - dt * (lam * m + mu)
        return (_mix(S, p_on[k], p_off[k]), _mix(Q, p_on[k], p_off[k]), m_next, factor), (m,) + rows

    m0 = jnp.asarray(problem.m0, dtype)
    (S, Q, m_T, _), (m, MC, MR, mu, lam_hat, loss) = lax.scan(
        step, (S, Q, m0, NoiseFactor.empty(T + 1, dtype)), jnp.arange(T))
    _, _, last = observe(S, Q, m_T, T)  # step T: its kernels only
    stack = lambda a, b: jnp.concatenate([a, b[None]])
    return _curves(problem, steps, dts, stack(m, m_T), *(stack(a, b) for a, b in zip((MC, MR, mu, lam_hat, loss), last)))


def _put(S, i, row, diag):
    """``S`` with a variable of moments ``row`` ``(A, 2, D)`` (with ``X``) and ``diag`` in row and
    column ``i``."""
    S = S.at[:, :, i, :].set(row).at[:, :, :, i].set(row)
    return S.at[:, :, i, i].set(diag)


def _mix(X, on, off):
    """The transition of the selection chain (``0 -> 1`` w.p. ``on``, ``1 -> 0`` w.p. ``off``) on
    the state axis 1."""
    return jnp.stack([off * X[:, 1] + (1 - on) * X[:, 0], (1 - off) * X[:, 1] + on * X[:, 0]], axis=1)


def _curves(problem, steps, dts, m, MC, MR, mu, lam_hat, loss) -> GaussianCurves:
    """The curves from the exact kernels: ``R, P, C_perp`` by the engine's weight side, ``q`` and
    the model's ``eps_gen``."""
    dtype = m.dtype
    R, P = weights.response(jnp.asarray(problem.lam, dtype), lam_hat, MR, dts)
    C_perp = weights.correlation(R, P, MC, problem.R0, dts)
    q = m**2 + jnp.diagonal(C_perp)
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(steps)])
    return GaussianCurves(t=t, m=m, q=q, eps_gen=problem.eps_gen(m, q), train_loss=loss, lam_hat=lam_hat, mu=mu,
                          M_C=MC, M_R=MR, C_perp=C_perp)
