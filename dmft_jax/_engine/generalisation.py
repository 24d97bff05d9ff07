"""The test error of a committee machine (docs/equations.md, section 6.2): ``P(y f(r) <= 0)``
(regression: the squared error against the noiseless target) for a fresh sample, by product
quadrature over the model's atoms and the Gaussian fields for small ``K``, else by Monte Carlo."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr


# quadrature of the test error: Gauss-Legendre nodes on [-8, 0] and [0, 8] per Gaussian
# dimension (the normal density in the weights; its mass beyond 8 is 1e-15), for up to
# QUADRATURE_MAX_K units. Beyond, the grid grows as 40^K per atom, costs more than the sweep (K = 3:
# 128000 points a step, a solve 2x slower and its replicas 4x), and where the read-out's root turns
# infinite its kinks cost the rule its accuracy (K = 3 sign units: 5e-4), so Monte Carlo takes over
HALF_NODES, QUADRATURE_MAX_K = 20, 2


def _has_root(readout, K) -> bool:
    return jax.eval_shape(lambda: readout.root_last(jnp.zeros((1, K - 1)))) is not None


def quadrature_size(committee) -> int:
    """Points of the test error's product quadrature (0: Monte Carlo). It needs at most
    ``QUADRATURE_MAX_K`` units, the model's atoms, and for classification the read-out's root
    (the last field integrated exactly): ``h0`` and the other ``K - 1`` fields (regression: all
    ``K``) take ``2 HALF_NODES`` nodes each."""
    model = committee.problem.model
    atoms = model.test_atoms()
    regression = model.argument == "residual"
    if committee.K > QUADRATURE_MAX_K or atoms is None or not (regression or _has_root(committee.readout,
                                                                                        committee.K)):
        return 0
    return atoms[0].shape[0] * (2 * HALF_NODES) ** (committee.K + regression)


def _nodes(dims: int, half: int):
    """Product Gauss-Legendre nodes ``(n, dims)``, ``half`` per half-line and dimension, and
    their weights (the normal density included)."""
    x, w = np.polynomial.legendre.leggauss(half)
    t, wt = 4.0 * (x + 1.0), 4.0 * w * np.exp(-0.5 * (4.0 * (x + 1.0)) ** 2) / np.sqrt(2 * np.pi)
    t, wt = np.concatenate([-t, t]), np.concatenate([wt, wt])
    grid = np.stack(np.meshgrid(*([t] * dims), indexing="ij"), -1).reshape(-1, dims)
    weights = np.prod(np.stack(np.meshgrid(*([wt] * dims), indexing="ij"), -1).reshape(-1, dims), axis=1)
    return grid, weights


def test_error(committee, rnd, m, C_kk, key, config):
    """``P(y f(r) <= 0)`` at every step for a fresh sample, ``r = m proj + sqrt(Delta) L z``
    (``L L^T = C_perp[k, k]``, ``y`` the clean label). With the read-out's root the last field
    is integrated exactly, and the rest (``h0``, the first ``K - 1`` entries of ``z`` and the
    model's atoms) by product quadrature when :func:`quadrature_size` allows (its error estimated
    by the difference from the rule with half the nodes), else by Monte Carlo over the solve's ``N`` samples ``(c, h0)`` with fresh ``z`` (smooth);
    without a root by the indicator's Monte Carlo average. Returns the mean and its standard
    error."""
    problem, readout = committee.problem, committee.readout
    model, delta = problem.model, problem.delta
    K = config.K
    dtype = m.dtype
    eye = jnp.eye(K, dtype=dtype)
    tiny = jnp.finfo(dtype).tiny

    regression = model.argument == "residual"

    def error(m_k, C_k, proj, y, z, exact_last):
        """The error of every point ``(proj, y, z)`` (``z`` ``(P, K)``)."""
        cov = delta * 0.5 * (C_k + C_k.T)
        L = jnp.linalg.cholesky(cov + 1e-12 * jnp.maximum(jnp.trace(cov), tiny) * eye)
        mean = proj[:, None] * m_k[None, :]
        if regression:  # the squared error against the noiseless target
            return (readout(mean + z @ L.T) - y) ** 2
        if not exact_last:
            return (y * readout(mean + z @ L.T) <= 0).astype(dtype)
        root = readout.root_last(mean[:, :-1] + z[:, :-1] @ L[:-1, :-1].T)
        base = mean[:, -1] + z[:, :-1] @ L[-1, :-1]
        sd = jnp.maximum(L[-1, -1], tiny)
        # P(r_K <= root): f <= 0. An infinite root (f of one sign for every r_K) is a constant,
        # kept out of the arithmetic so that its derivatives are 0, not inf * 0
        finite = jnp.isfinite(root)
        below = jnp.where(finite, ndtr((jnp.where(finite, root, 0.0) - base) / sd), jnp.where(root > 0, 1.0, 0.0))
        return jnp.where(y > 0, below, 1.0 - below)

    if config.quadrature:
        c_atoms, p_atoms = model.test_atoms()

        def rule(half):  # the points (proj, y, z) and weights over the atoms x nodes
            grid, weights = _nodes(K + regression, half)  # columns: h0, z_1 .. z_{K-1} (regression: .. z_K)
            n_atoms, n = c_atoms.shape[0], grid.shape[0]
            c = jnp.repeat(c_atoms.astype(dtype), n)
            h0 = jnp.tile(jnp.asarray(grid[:, 0], dtype), n_atoms)
            z = grid[:, 1:] if regression else np.concatenate([grid[:, 1:], np.zeros((n, 1))], 1)
            z = jnp.tile(jnp.asarray(z, dtype), (n_atoms, 1))
            w = (p_atoms.astype(dtype)[:, None] * jnp.asarray(weights, dtype)[None, :]).reshape(-1)
            return model.projection(c, h0, delta), model.clean_label(c, h0), z, w

        fine, coarse = rule(HALF_NODES), rule(HALF_NODES // 2)

        def at(mC):
            value = lambda proj, y, z, w: jnp.sum(w * error(*mC, proj, y, z, True)) / jnp.sum(w)
            est = value(*fine)
            return est, jnp.abs(lax.stop_gradient(est - value(*coarse)))

        return lax.map(at, (m, C_kk))
    c, h0 = rnd.c, rnd.h0
    N = c.shape[0]
    proj, y = model.projection(c, h0, delta), model.clean_label(c, h0)
    lp = model.log_prob(c, rnd.y)
    w = jnp.exp(lp - lax.stop_gradient(lp))  # the law of c (rho) in gradients
    z = jax.random.normal(jax.random.fold_in(key, 0x7E57), (N, K), jnp.float32).astype(dtype)
    exact_last = _has_root(readout, K)

    def at(m_k, C_k):
        err = error(m_k, C_k, proj, y, z, exact_last)
        est = jnp.sum(w * err) / jnp.sum(w)
        pairs = err.reshape(-1, 2).mean(axis=1) if config.antithetic else err
        se = jnp.std(lax.stop_gradient(pairs), ddof=1) / jnp.sqrt(pairs.shape[0])
        return est, se

    return jax.vmap(at)(m, C_kk)
