"""Weight side of the DMFT (section 2.4): response ``R``, homogeneous solution ``P``,
correlation ``C_perp`` and ``C = m m^T + C_perp``, from the kernels, by ``lax.scan``."""
from __future__ import annotations

import jax.numpy as jnp
from jax import lax


def response(lam, lam_hat, M_R, dts, beta=None):
    """``R[k, l]`` (per unit time; ``R[l+1, l] = 1``) and ``P[k]`` (``P[0] = 1``); with heavy-ball
    momentum ``beta`` every row also gets ``beta (R[k] - R[k-1])`` (``P[-1] = P[0]``, section 5.1).

    ``lam_hat``: (T+1,), ``M_R``: (T+1, T+1) strictly lower triangular, ``dts``: step sizes
    ``eta_k`` (T+1,); step ``k`` advances by ``eta_k`` and the memory integral weights
    ``M_R[k, j]`` by ``eta_j``.
    """
    size = lam_hat.shape[0]
    dtype = lam_hat.dtype
    eye = jnp.eye(size, dtype=dtype)
    # Stack P as an extra column so that one scan handles both (P has no source term).
    R0 = jnp.zeros((size, size + 1), dtype).at[0, size].set(1.0)

    def body(R, k):
        dt = dts[k]
        decay = 1.0 - dt * (lam + lam_hat[k])
        row = decay * R[k] + dt * ((M_R[k] * dts) @ R)
        if beta is not None:  # R[-1] = R[0]: zero for the R columns, P[0] for P (no first-step momentum)
            row = row + beta * (R[k] - R[jnp.maximum(k - 1, 0)])
        row = row + jnp.concatenate([eye[k], jnp.zeros((1,), dtype)])
        return R.at[k + 1].set(row), None

    R, _ = lax.scan(body, R0, jnp.arange(size - 1))
    return R[:, :size], R[:, size]


def correlation(R, P, M_C, R0, dts, temperature=None):
    """``C_perp[k, l] = R0 P[k] P[l] + sum_{i<k, j<l} eta_i eta_j R[k, i] M_C[i, j] R[l, j]``, plus
    with Langevin noise ``2 T_L sum_{i < min(k, l)} eta_i R[k, i] R[l, i]`` (section 5.2)."""
    M_C_full = jnp.tril(M_C) + jnp.tril(M_C, -1).T
    Rw = R * dts[None, :]
    C = R0 * jnp.outer(P, P) + Rw @ M_C_full @ Rw.T
    if temperature is not None:
        C = C + 2.0 * temperature * (Rw @ R.T)
    return C
