"""A plain NumPy implementation of the DMFT equations (docs/equations.md, section 2),
written the way a paper's companion code would be: a Python loop over time steps,
NumPy vectorised over trajectories, float64, logistic loss and the two-cluster model
only. Used by ``benchmarks/solve_speed.py`` as the speed baseline, and by a test as an
independent implementation of the same equations.

``n_chi`` trajectories carry the exact response, like ``dmft_jax.solve``; pass
``n_chi = n_traj`` for the "response on every trajectory" variant.
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import erfc, expit


def solve_numpy(alpha, delta, lam, R0, rho, eta, b, tau, T, n_traj, n_chi, seed=0, m0=0.0,
                pivot_rtol=1e-7, draws=None):
    """``draws``: optional dict of the random numbers ``c, h0, s, zeta, u0`` (e.g. those of
    ``dmft_jax._engine.process.draw``) instead of drawing them here from ``seed``."""
    rng = np.random.default_rng(seed)
    dt = eta
    N = n_traj
    if draws is not None:
        c, h0, s, zeta, u0 = (np.asarray(draws[k], dtype=float) for k in ("c", "h0", "s", "zeta", "u0"))
    else:
        c = np.where(rng.random(N) < rho, 1.0, -1.0)
        h0 = rng.standard_normal(N)
        # selection paths
        if b >= 1:
            s = np.ones((T + 1, N))
        else:
            p_off, p_on = eta / tau, b * eta / ((1 - b) * tau)
            s = np.zeros((T + 1, N))
            s[0] = rng.random(N) < b
            for k in range(T):
                u = rng.random(N)
                s[k + 1] = np.where(s[k] == 1, u >= p_off, u < p_on)
        zeta = rng.standard_normal((T + 1, N))
        u0 = rng.standard_normal(N)
    y = c
    proj = c + np.sqrt(delta) * h0

    u = np.zeros((T + 1, N))
    u[0] = np.sqrt(delta * R0) * u0
    g = np.zeros((T + 1, N))
    chi = np.zeros((T + 1, T + 1, n_chi))
    m = np.zeros(T + 1)
    m[0] = m0
    lam_hat = np.zeros(T + 1)
    mu = np.zeros(T + 1)
    M_C = np.zeros((T + 1, T + 1))
    M_R = np.zeros((T + 1, T + 1))
    L = np.zeros((T + 1, T + 1))
    train_loss = np.zeros(T + 1)
    train_acc = np.zeros(T + 1)
    for k in range(T + 1):
        r = m[k] * proj + u[k]
        v = y * r
        d1 = -y * expit(-v)  # logistic: Lambda' = -y sigma(-y r)
        d2 = expit(v) * expit(-v)
        g[k] = s[k] * d1
        sl2 = s[k] * d2
        lam_hat[k] = alpha * delta * np.mean(sl2)
        mu[k] = alpha * np.mean(g[k] * proj)
        M_C[k, : k + 1] = alpha * delta * (g[: k + 1] @ g[k]) / N
        M_C[: k + 1, k] = M_C[k, : k + 1]
        M_R[k, :k] = alpha * delta / dt * np.einsum("ln,n->l", chi[k, :k], sl2[:n_chi]) / n_chi
        train_loss[k] = alpha * np.mean(np.logaddexp(0, -v))
        train_acc[k] = np.mean(v > 0)
        # causal Cholesky row of Delta M_C
        a = delta * M_C[k, : k + 1]
        ok = np.diag(L)[:k] > 0
        x = np.zeros(k)
        if ok.any():
            idx = np.flatnonzero(ok)
            Lsub = L[np.ix_(idx, idx)]
            x[idx] = solve_triangular(Lsub, a[idx], lower=True)
        piv = a[k] - x @ x
        L[k, :k] = x
        L[k, k] = np.sqrt(piv) if piv > pivot_rtol * a[k] and a[k] > 0 else 0.0
        if k == T:
            break
        xi = L[k, : k + 1] @ zeta[: k + 1]
        memory = M_R[k, :k] @ u[:k]
        u[k + 1] = u[k] + dt * (-(lam + lam_hat[k]) * u[k] + dt * memory + xi - delta * g[k])
        decay = 1 - dt * (lam + lam_hat[k] + delta * sl2[:n_chi])
        chi[k + 1, :k] = decay * chi[k, :k] + dt * dt * np.einsum("j,jln->ln", M_R[k, :k], chi[:k, :k])
        chi[k + 1, k] = dt * delta * sl2[:n_chi]
        m[k + 1] = m[k] - dt * (lam * m[k] + mu[k])

    # weight side
    R = np.zeros((T + 1, T + 1))
    P = np.zeros(T + 1)
    P[0] = 1.0
    for k in range(T):
        R[k + 1] = (1 - dt * (lam + lam_hat[k])) * R[k] + dt * dt * M_R[k] @ R
        R[k + 1, k] = 1.0
        P[k + 1] = (1 - dt * (lam + lam_hat[k])) * P[k] + dt * dt * M_R[k] @ P
    C = np.outer(m, m) + R0 * np.outer(P, P) + dt * dt * R @ M_C @ R.T
    q = np.diag(C)
    eps_gen = 0.5 * erfc(m / np.sqrt(2 * delta * q))
    return dict(m=m, q=q, C=C, eps_gen=eps_gen, train_loss=train_loss, train_acc=train_acc,
                lam_hat=lam_hat, mu=mu, M_C=M_C, M_R=M_R)
