"""The DMFT of committee machines (docs/equations.md, section 6.2): the causal sweep of
section 2 with a ``K``-vector effective process and every kernel a ``K x K`` block.

Per step ``k``, on ``N`` trajectories (the draws of :func:`dmft_jax.process.draw`, with one
stream of ``u0`` and of the noise ``zeta`` per unit; unit 0's are the single-unit ones):

- fields ``r = m[k] proj + u[k]`` (``N x K``), ``g = s grad_r Lambda``, ``H = s Hess_r Lambda``;
- ``lam_hat[k] = alpha Delta E[H]``, ``mu[k] = alpha E[g proj]``,
  ``M_C[k, j] = alpha Delta E[g[k] g[j]^T]``, ``M_R[k, l] = alpha Delta E[H chi[k, l]] / eta_l``
  by the block estimator of ``response`` (``committee_response.py``: ``chi`` exact on
  ``n_chi`` trajectories, or probes);
- the noise: the causal Cholesky factor of ``Delta M_C`` over the flattened (time, unit) index,
  extended by ``K`` rows per step (the single-unit row update, pivots clipped and counted);
- ``u`` and ``m`` advanced with matrix products (with heavy-ball momentum and Langevin noise as in
  sections 5.1 and 5.2, per unit), the estimator's state likewise.

After the sweep the weight side: ``R``, ``P``, ``C_perp`` (blocks), ``Q[k] = m m^T + C_perp[k, k]``,
and the test error ``P(y f(r) <= 0)`` of a fresh sample, ``r = m proj + sqrt(Delta) C_perp^(1/2) z``:
the last unit integrated analytically when the read-out gives its root, the rest by quadrature
(small ``K``) or over the trajectories' samples with fresh ``z``; without a root an indicator.

``errors=GroupErrors(G)`` adds ``G`` replica solves on ``N / G`` trajectories (vmapped);
``sharding`` splits the trajectory axis over devices; ``dmft_jax.solve_grid`` vmaps
:func:`solve_traced` over points. Everything is plain ``jax``: ``jax.grad``/``jax.jvp`` and
``jax.vmap`` go through a solve (likelihood-ratio weights for the laws of the discrete draws, as
in the single-unit sweep).
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import process
from ._validate import poison, traced_checks
from .committee_error import test_error
from .noise import NoiseFactor, noise_row
from .results import DIVERGENCE_FACTOR, RESULTS, Result
from .weights import correlation_blocks, response_blocks
from .sharding import sharder


def _unit_draws(key, problem, algorithm, config, dtype):
    """The randomness: unit 0's ``u0``, ``zeta`` (and Langevin ``zeta_l``) are the single-unit
    draws of ``key``; unit ``a`` takes the Gaussian streams of ``fold_in(key, a)``. Returns the
    single-unit draws, ``u0`` ``(N, K)``, ``zeta`` and ``zeta_l`` ``(S, N, K)`` (``None`` without
    Langevin noise)."""
    rnd = process.draw(key, problem, algorithm, config.n_steps, config.n_traj, config.antithetic, dtype,
                       config.moment_matching)
    others = [process.gaussian_streams(jax.random.fold_in(key, a), config.n_steps, config.n_traj, config.antithetic,
                                       dtype, config.moment_matching, rnd.zeta_l is not None)
              for a in range(1, config.K)]
    u0 = jnp.stack([rnd.u0] + [o[0] for o in others], axis=-1)
    zeta = jnp.stack([rnd.zeta] + [o[1] for o in others], axis=-1)
    zeta_l = None
    if rnd.zeta_l is not None:
        zeta_l = jnp.stack([rnd.zeta_l] + [o[2] for o in others], axis=-1)
    return rnd, u0, zeta, zeta_l


class _Carry(eqx.Module):
    m: Any  # (K,)
    m_prev: Any  # (K,) m[k-1] (m[-1] = m[0]) for momentum
    u: Any  # (N, K) u[k]
    u_hist: Any  # (S, N, K)
    g_hist: Any  # (S, N, K)
    response: Any  # the block estimator's state (committee_response.py)
    L: Any  # the causal factor's rows so far over the flattened (time, unit) index (noise.NoiseFactor)
    log_w: Any  # (N,)


def committee_sweep(committee, algorithm, key, config):
    """The traced solve (see the module docstring); returns the solution's fields."""
    problem, readout = committee.problem, committee.readout
    model = problem.model
    K, T = config.K, config.n_steps
    est = config.response
    put = _sharder(config.devices)
    S = T + 1
    dtype = problem.alpha.dtype
    alpha, delta, lam = problem.alpha, problem.delta, problem.lam
    eye = jnp.eye(K, dtype=dtype)
    rnd, u0, zeta, zeta_l = _unit_draws(key, problem, algorithm, config, dtype)
    if config.devices is not None:
        rnd = sharder(config.devices)(rnd)  # the single-unit draws: trajectories last
        u0, zeta = put(u0, 0), put(zeta, 1)
        zeta_l = None if zeta_l is None else put(zeta_l, 1)
    beta, temperature = algorithm.beta, algorithm.temperature
    N = u0.shape[0]
    dts = rnd.dts
    zeta_flat = jnp.transpose(zeta, (0, 2, 1)).reshape(S * K, N)  # row j K + b: zeta[j, :, b]
    rtol = 1e-7 if dtype == jnp.float64 else 1e-4  # the single-unit sweep's pivot floor

    def sample_loss(y, r):  # one sample: r (K,)
        return problem.loss(model.loss_argument(y, readout(r)))

    grad_r = jax.vmap(jax.grad(sample_loss, argnums=1))
    hess_r = jax.vmap(jax.hessian(sample_loss, argnums=1))
    loss_v = jax.vmap(sample_loss)

    def row(carry, k):
        """Kernel row ``k`` and the observables at ``k`` (histories of ``u`` and ``g`` written)."""
        draws = rnd.at_step(k)
        proj = model.projection(draws.c, draws.h0, delta)
        r = proj[:, None] * carry.m[None, :] + carry.u
        g = draws.s_k[:, None] * grad_r(draws.y, r)
        H = draws.s_k[:, None, None] * hess_r(draws.y, r)
        log_w, w = process.likelihood_weights(draws, carry.log_w, k)
        total = jnp.sum(w)
        mean = lambda x: jnp.tensordot(w, x, axes=1) / total
        g_hist = carry.g_hist.at[k].set(g)
        u_hist = carry.u_hist.at[k].set(carry.u)
        x1 = alpha * delta * w[:, None] * g / total
        M_C = jnp.einsum("na,jnb->jab", x1, g_hist)  # M_C[k, j], zero beyond k
        M_R = alpha * delta * est.row(carry.response, k, w, H, dts, delta)
        if not config.cross_memory:
            M_R = M_R * eye
        out = dict(lam_hat=alpha * delta * mean(H), mu=alpha * mean(g * proj[:, None]), M_C=M_C, M_R=M_R,
                   train_loss=alpha * mean(loss_v(draws.y, r)),
                   train_acc=mean((draws.y * readout(r) > 0).astype(dtype)))
        if config.symmetric:
            out.update(lam_hat=exchangeable(out["lam_hat"]), mu=jnp.broadcast_to(jnp.mean(out["mu"]), (K,)),
                       M_C=exchangeable(M_C), M_R=exchangeable(M_R))
        carry = eqx.tree_at(lambda c: (c.u_hist, c.g_hist, c.log_w), carry, (u_hist, g_hist, log_w))
        return carry, out, g, H

    def noise(factor, M_C_row, k):
        """Rows ``(k, 0..K-1)`` of the causal factor of ``Delta M_C`` over the flattened index
        ``(j, b) -> j K + b``, one row at a time as in the single-unit sweep (a pivot below
        ``rtol`` times its variance, rounding or a rank-deficient estimate, is clipped to zero and
        flagged), and the noise ``xi[k]`` (N, K)."""
        A = delta * M_C_row  # (S, K, K): Cov(xi[k]_a, xi[j]_b)
        rows = []
        for a in range(K):
            L_row, factor = noise_row(factor, A[:, a, :].reshape(S * K), k * K + a, rtol)
            rows.append(L_row)
        return factor, (jnp.stack(rows) @ zeta_flat).T

    def step(carry, k):
        carry, out, g, H = row(carry, k)
        L, xi = noise(carry.L, out["M_C"], k)
        dt = dts[k]
        KR = out["M_R"] * dts[:, None, None]  # memory weights eta_l M_R[k, l]
        decay = lam * eye + out["lam_hat"]
        memory = jnp.einsum("lab,lnb->na", KR, carry.u_hist)
        u_next = carry.u + dt * (-carry.u @ decay.T + memory + xi - delta * g)
        response = est.advance(carry.response, k, KR, dt, decay, delta, H, beta)
        m_next = carry.m - dt * (lam * carry.m + out["mu"])
        if temperature is not None:  # Langevin noise on every unit (section 5.2)
            u_next = u_next + jnp.sqrt(2.0 * dt * temperature * delta) * zeta_l[k]
        if beta is not None:  # heavy ball (section 5.1); at k = 0 the previous rows are row 0's
            prev = jnp.maximum(k - 1, 0)
            u_next = u_next + beta * (carry.u - carry.u_hist[prev])
            m_next = m_next + beta * (carry.m - carry.m_prev)
        carry = _Carry(m=m_next, m_prev=carry.m, u=put(u_next, 0), u_hist=put(carry.u_hist, 1),
                       g_hist=put(carry.g_hist, 1), response=est.shard(response, put), L=L, log_w=carry.log_w)
        return carry, out

    init = _Carry(m=committee.m0, m_prev=committee.m0, u=jnp.sqrt(delta) * jnp.sqrt(problem.R0) * u0,
                  u_hist=jnp.zeros((S, N, K), dtype), g_hist=jnp.zeros((S, N, K), dtype),
                  response=est.init(key, S, K, dtype), L=NoiseFactor.empty(S * K, dtype),
                  log_w=jnp.zeros(N, dtype))

    def scan_step(carry, k):
        m_k = carry.m
        carry, out = step(carry, k)
        return carry, (m_k, out)

    carry, (m, rows) = lax.scan(scan_step, init, jnp.arange(T))
    _, last, _, _ = row(carry, T)
    rows = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), rows, last)
    m = jnp.concatenate([m, carry.m[None]])  # (S, K)
    R, P = response_blocks(lam, rows["lam_hat"], rows["M_R"], dts, beta)
    C_perp = correlation_blocks(R, P, rows["M_C"], problem.R0, dts, temperature)
    C_kk = jnp.einsum("kakb->kab", C_perp)
    Q = m[:, :, None] * m[:, None, :] + C_kk
    eps, eps_se = test_error(committee, rnd, m, C_kk, key, config)
    fields = dict(m=m, Q=Q, eps_gen=eps, train_loss=rows["train_loss"])
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fields.values()]))
    diag = jnp.diagonal(Q, axis1=-2, axis2=-1)
    exploding = jnp.max(jnp.abs(diag)) > DIVERGENCE_FACTOR * (1 + jnp.max(jnp.abs(diag[0])))
    code = jnp.where(finite, jnp.where(exploding, RESULTS.diverged, RESULTS.successful), RESULTS.nonfinite)
    # values set under vmap / eqx.tree_at were never checked: the checks run here too, and a
    # point that fails one is an invalid input, named, with no numbers (NaN, NaN gradients)
    checks, valid, first_bad = traced_checks(problem, algorithm, T)
    code = jnp.where(valid, code, RESULTS.invalid_input)
    if checks:
        m, Q, C_perp, R, eps = (poison(valid, x) for x in (m, Q, C_perp, R, eps))
        rows = {n: poison(valid, x) for n, x in rows.items()}
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(dts[:T])])
    pivots = carry.L.pivots[: T * K]  # the step-T rows enter no noise
    n_clipped, n_negative = jnp.sum(pivots <= 0), jnp.sum(pivots < 0)
    return dict(t=t, m=m, Q=Q, C_perp=jnp.transpose(C_perp, (0, 2, 1, 3)), R=R, lam_hat=rows["lam_hat"],
                mu=rows["mu"], M_C=rows["M_C"], M_R=rows["M_R"], eps_gen=eps, eps_gen_integral_se=eps_se,
                train_loss=rows["train_loss"], train_acc=rows["train_acc"],
                result=Result.of(code, first_bad, checks), stats=dict(n_clipped=n_clipped, n_negative=n_negative))


def _sharder(ids):
    """``put(x, axis)``: ``x`` with its trajectory axis ``axis`` split over the devices ``ids``
    (a layout only: the values are unchanged); the identity for one device, or where the axis
    does not split evenly."""
    if ids is None:
        return lambda x, axis: x
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    by_id = {d.id: d for d in jax.devices()}
    mesh = Mesh(np.array([by_id[i] for i in ids]), ("traj",))

    def put(x, axis):
        if x.shape[axis] % len(ids):
            return x
        spec = [None] * x.ndim
        spec[axis] = "traj"
        return lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*spec)))

    return put


def exchangeable(B):
    """``K x K`` blocks (last two axes) averaged over the permutations of the units: every
    diagonal entry becomes the mean diagonal entry, every off-diagonal one the mean
    off-diagonal entry."""
    K = B.shape[-1]
    if K == 1:
        return B
    eye = jnp.eye(K, dtype=B.dtype)
    diag = jnp.einsum("...aa->...", B)[..., None, None] / K
    off = (jnp.sum(B, axis=(-2, -1))[..., None, None] - diag * K) / (K * (K - 1))
    return diag * eye + off * (1 - eye)
