"""Weight side of the DMFT (section 2.4; section 6.2 for ``K`` units): response ``R``,
homogeneous solution ``P`` and correlation ``C_perp`` from the kernels, by ``lax.scan``.

One implementation for every ``K``: the kernels are ``K x K`` blocks (``lam_hat`` ``(S, K, K)``,
``M_R`` and ``M_C`` ``(S, S, K, K)``), and a single unit is ``K = 1`` (:func:`response` and
:func:`correlation` take and return its plain ``(S,)`` and ``(S, S)`` arrays, through the same
block code).
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from .._algorithms.updates import updated


def response_blocks(lam, lam_hat, M_R, dts, update=None):
    """``R[k, l]`` (``K x K`` blocks per unit time, ``R[l+1, l] = I``) and ``P[k]`` (``P[0] = I``):
    ``R[k+1] = (I - eta_k (lam I + lam_hat[k])) R[k] + eta_k sum_j eta_j M_R[k, j] R[j]`` (plus the
    source ``I`` at ``l = k``, so ``R[l+1, l] = b0 I`` after the update); with a two-step ``update`` (:class:`~dmft_jax._algorithms.updates.TwoStep`,
    section 5.1) every row takes the weights' update, ``R[-1] = R[0]``. ``dts``: the step sizes
    ``eta_k``."""
    S, K = lam_hat.shape[0], lam_hat.shape[-1]
    dtype = lam_hat.dtype
    eye = jnp.eye(K, dtype=dtype)
    width = (S + 1) * K
    # carried as RP[k, a, (l, c)], column block S holding P (no source term), so that every
    # product is one matrix product (a matrix-vector product at K = 1)
    RP = jnp.zeros((S, K, S + 1, K), dtype).at[0, :, S, :].set(eye).reshape(S, K, width)
    weighted = jnp.transpose(M_R * dts[None, :, None, None], (0, 2, 1, 3)).reshape(S, K, S * K)  # [k, a, (j, b)]

    def body(carry, k):
        RP, incr = carry
        dt = dts[k]
        decay = eye - dt * (lam * eye + lam_hat[k])
        new = decay @ RP[k] + dt * (weighted[k] @ RP.reshape(S * K, width))
        at = (0, k * K)  # the source I in column block l = k
        new = lax.dynamic_update_slice(new, lax.dynamic_slice(new, at, (K, K)) + eye, at)
        new, incr = updated(update, new, RP[k], RP[jnp.maximum(k - 1, 0)], incr)
        return (RP.at[k + 1].set(new), incr), None

    (RP, _), _ = lax.scan(body, (RP, jnp.zeros_like(RP[0])), jnp.arange(S - 1))
    RP = jnp.transpose(RP.reshape(S, K, S + 1, K), (0, 2, 1, 3))  # [k, l, a, c]
    return RP[:, :S], RP[:, S]


def correlation_blocks(R, P, M_C, R0, dts, temperature=None):
    """``C_perp[k, a, l, b]`` = ``R0 (P[k] P[l]^T)_ab + sum_{i, j} eta_i eta_j (R[k, i] M_C[i, j] R[l, j]^T)_ab``
    with ``M_C[i, j] = M_C[j, i]^T`` above the diagonal (plus ``2 T_L sum_i eta_i R[k, i] R[l, i]^T``
    with Langevin noise, section 5.2); returned as ``(S, K, S, K)``."""
    S, K = P.shape[0], P.shape[-1]
    flat = lambda X: jnp.transpose(X, (0, 2, 1, 3)).reshape(S * K, S * K)  # [k, l, a, b] -> [(k, a), (l, b)]
    steps = jnp.arange(S)
    lower = flat(M_C * (steps[:, None] >= steps[None, :])[:, :, None, None])  # only k >= l is read
    strict = flat(M_C * (steps[:, None] > steps[None, :])[:, :, None, None])
    M = lower + strict.T
    Rw = flat(R) * jnp.repeat(dts, K)[None, :]
    P2 = P.reshape(S * K, K)
    C = R0 * P2 @ P2.T + Rw @ M @ Rw.T
    if temperature is not None:
        C = C + 2.0 * temperature * (Rw @ flat(R).T)
    return C.reshape(S, K, S, K)


def response(lam, lam_hat, M_R, dts, update=None):
    """A single unit's ``R`` ``(S, S)`` and ``P`` ``(S,)``: :func:`response_blocks` at ``K = 1``
    (``lam_hat`` ``(S,)``, ``M_R`` ``(S, S)`` strictly lower triangular)."""
    R, P = response_blocks(lam, lam_hat[:, None, None], M_R[:, :, None, None], dts, update)
    return R[:, :, 0, 0], P[:, 0, 0]


def correlation(R, P, M_C, R0, dts, temperature=None):
    """A single unit's ``C_perp`` ``(S, S)``: :func:`correlation_blocks` at ``K = 1`` (``M_C``
    lower triangular, its upper half read by symmetry)."""
    C = correlation_blocks(R[:, :, None, None], P[:, None, None], M_C[:, :, None, None], R0, dts, temperature)
    return C[:, 0, :, 0]


class SlotWeights(eqx.Module):
    """The weight side of a compressed history (docs/equations.md, section 2.10.3), carried
    through the sweep: ``G[s, a, s', b]`` the covariance of the slots' averages of the
    weights' free part ``x`` (``C_perp`` averaged over the slots' pairs of steps) and
    ``Rb[s, a, s', b]`` the response of slot ``s``'s average to a field over slot ``s'``
    (``sum_{l in s'} eta_l R[., l]``), both ``(n, K, n, K)``. ``x`` follows the linear process
    whose covariance is ``C_perp`` (section 2.4): ``x[k+1] = (I - eta_k (lam + lam_hat_k))
    x[k] + eta_k sum_l eta_l M_R[k, l] x[l] + eta_k nu[k]``, ``Cov(nu) = M_C``,
    ``Cov(x[0]) = R0 I`` (plus ``2 T_L eta_k I`` a step with Langevin noise)."""

    G: Any
    Rb: Any

    @staticmethod
    def start(n_slots: int, K: int, slot0, R0, dtype) -> "SlotWeights":
        G = jnp.zeros((n_slots, K, n_slots, K), dtype).at[slot0, :, slot0, :].set(R0 * jnp.eye(K, dtype=dtype))
        return SlotWeights(G=G, Rb=jnp.zeros((n_slots, K, n_slots, K), dtype))

    def q_perp(self, slot_k):
        """``C_perp[k, k]`` ``(K, K)`` of the step written to ``slot_k``."""
        return self.G[slot_k, :, slot_k, :]

    def step(self, past, k, lam, lam_hat_k, K_k, M_C_row, dt, temperature=None) -> "SlotWeights":
        """Row ``k + 1`` from the kernel row ``k`` (``K_k[s]`` the memory weights
        ``sum_{l in s} eta_l M_R[k, l]`` ``(n, K, K)``, ``M_C_row[s]`` ``M_C[k, s]`` averaged
        over slot ``s``), written to step ``k + 1``'s slot, then the merges at the start of step ``k + 1``."""
        n, K = self.G.shape[0], self.G.shape[1]
        eye = jnp.eye(K, dtype=self.G.dtype)
        s_k, s_next = past.slot(k), past.slot(k + 1)
        own = (jnp.arange(n) == s_k)[:, None, None]
        B = dt * K_k + jnp.where(own, eye - dt * (lam * eye + lam_hat_k), 0.0)  # x[k+1] = sum_s B[s] x_bar[s] + dt nu
        # Cov(nu[k, a], x_bar[s, b]) = sum_{s', c} Rb[s, b, s', c] M_C[k, s']_{ac}
        V = jnp.einsum("sbtc,tac->asb", self.Rb, M_C_row)
        cross = jnp.einsum("sab,sbtc->atc", B, self.G) + dt * V  # Cov(x[k+1, a], x_bar[t, c])
        BV = jnp.einsum("sab,csb->ac", B, V)
        var = jnp.einsum("atc,tbc->ab", jnp.einsum("sab,sbtc->atc", B, self.G), B) + dt * (BV + BV.T) \
            + dt * dt * M_C_row[s_k]
        if temperature is not None:
            var = var + 2.0 * temperature * dt * eye
        Rb_row = jnp.einsum("sab,sbtc->atc", B, self.Rb)
        Rb_row = Rb_row.at[:, s_k, :].add(dt * eye)
        G = self.G.at[s_next].set(cross).at[:, :, s_next].set(jnp.transpose(cross, (1, 2, 0)))
        G = G.at[s_next, :, s_next, :].set(var)
        Rb = self.Rb.at[s_next].set(Rb_row)
        G = past.merged(past.merged(G, k + 1, axis=0), k + 1, axis=2)
        Rb = past.merged(past.merged(Rb, k + 1, axis=0), k + 1, "sum", axis=2)
        return SlotWeights(G=G, Rb=Rb)
