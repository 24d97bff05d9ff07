"""The Gaussian noise ``xi`` of the effective process (docs/equations.md, section 2.6.2):
covariance ``Delta M_C``, extended causally by a row-by-row lower Cholesky factor, so that
row ``k`` needs only ``M_C[k, :k+1]`` and the earlier rows (``xi[k] = sum_{j<=k} L[k,j] zeta[j]``).
For ``K`` units the index is the flattened ``(time, unit)`` pair and a step adds ``K`` rows."""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax


class NoiseFactor(eqx.Module):
    """Rows ``< k`` of the causal Cholesky factor and the pivots' fate.

    ``rows``: the factor's rows ``< k``, with rows whose pivot was clipped replaced by unit
    rows (and identity rows from ``k`` on), so that one triangular solve gives ``L[k, :k]``;
    ``pivots``: int8 per row (step and unit), 1 for a kept pivot, 0 for one clipped at the rounding floor,
    -1 for one clipped because it came out below ``-rtol A[k, k]`` (positive definiteness
    lost beyond rounding at this precision)."""

    rows: Any  # (S K, S K): over the flattened (time, unit) index
    pivots: Any  # (S K,) int8

    @staticmethod
    def empty(size: int, dtype) -> "NoiseFactor":
        return NoiseFactor(rows=jnp.eye(size, dtype=dtype), pivots=jnp.zeros(size, jnp.int8))


def noise_row(factor: NoiseFactor, a_row, k, rtol, scale=None):
    """Row ``k`` of the causal Cholesky factor of ``A = Delta M_C`` given ``a_row = A[k, :]``
    (entries beyond ``k`` ignored). A pivot below ``rtol scale`` (``scale``: ``A[k, k]`` unless
    given; rounding, rank deficiency) is clipped to zero. Returns ``(L_k, factor)`` with row
    ``k`` recorded."""
    Lmod, pivot_ok = factor.rows, factor.pivots
    size = a_row.shape[0]
    idx = jnp.arange(size)
    rhs = jnp.where((idx < k) & (pivot_ok > 0), a_row, 0.0)
    x = jax.scipy.linalg.solve_triangular(Lmod, rhs, lower=True)
    a_kk = a_row[k] if scale is None else scale
    pivot = a_row[k] - x @ x
    ok = (pivot > rtol * a_kk) & (a_kk > 0)
    l_kk = jnp.where(ok, jnp.sqrt(jnp.where(ok, pivot, 1.0)), 0.0)
    unit = (idx == k).astype(a_row.dtype)
    L_k = x + l_kk * unit
    Lmod = Lmod.at[k].set(jnp.where(ok, L_k, unit))
    flag = jnp.where(ok, 1, jnp.where(pivot < -rtol * a_kk, -1, 0)).astype(jnp.int8)
    return L_k, NoiseFactor(rows=Lmod, pivots=pivot_ok.at[k].set(flag))


def noise_rows(factor: NoiseFactor, M_C_row, delta, k, rtol):
    """The factor's rows of step ``k`` for ``K`` units: ``M_C_row`` ``(S, K, K)`` is
    ``M_C[k, :]``, the covariance ``Delta M_C`` is factored over the flattened (time, unit)
    index ``(j, b) -> j K + b``, one row at a time (:func:`noise_row`). Returns ``L_k``
    ``(K, S K)`` and the factor."""
    A = delta * M_C_row
    size, K = A.shape[0], A.shape[-1]
    rows = []
    for a in range(K):
        L_row, factor = noise_row(factor, A[:, a, :].reshape(size * K), k * K + a, rtol)
        rows.append(L_row)
    return jnp.stack(rows), factor


def noise_factor(M_C, delta, rtol):
    """The full causal factor of ``Delta M_C`` ``(S, S, K, K)``, row by row (the damped
    iteration's): ``L`` ``(S, K, S K)`` and the pivot flags ``(S K,)``."""
    size, K = M_C.shape[0], M_C.shape[-1]

    def body(factor, k):
        L_k, factor = noise_rows(factor, M_C[k], delta, k, rtol)
        return factor, L_k

    factor, L = lax.scan(body, NoiseFactor.empty(size * K, M_C.dtype), jnp.arange(size))
    return L, factor.pivots


class SlotNoise(eqx.Module):
    """The noise of a compressed history (docs/equations.md, section 2.10.2): ``xi`` averaged
    over each slot ``(n, K, N)`` and the covariance of those averages ``(n, K, n, K)``
    (``Delta M_C`` averaged over the slots' pairs of steps)."""

    xi: Any
    cov: Any
    xi_prev: Any  # xi of the previous step (K, N), written to its slot at the next step's start
    pend: Any = None  # the rows of xi the next step's merges combine (SlotPast.pair_rows)

    @staticmethod
    def empty(past, K: int, n_traj: int, dtype) -> "SlotNoise":
        n = past.n_slots
        xi = jnp.zeros((n, K, n_traj), dtype)
        return SlotNoise(xi=xi, cov=jnp.zeros((n, K, n, K), dtype), xi_prev=jnp.zeros((K, n_traj), dtype),
                         pend=past.pair_rows(xi, 0))

    def begin(self, past, k) -> "SlotNoise":
        """The pending ``xi[k-1]`` written, then the merges at the start of step ``k``."""
        xi = past.put(self.xi, past.slot(jnp.maximum(k - 1, 0)), jnp.where(k > 0, self.xi_prev, 0.0), k,
                      rows=self.pend)
        cov = past.merged(past.merged(self.cov, k, axis=0), k, axis=2)
        return SlotNoise(xi=xi, cov=cov, xi_prev=self.xi_prev, pend=self.pend)


def slot_noise(ns: SlotNoise, M_C_row, delta, past, k, zeta_k, rtol):
    """``xi[k]`` ``(K, N)`` drawn given the slots' averages of the past noise: the Gaussian
    conditional ``xi[k] | xi_bar`` of covariance ``Delta M_C`` (``M_C_row`` ``(n, K, K)``:
    ``M_C[k, s]`` averaged over slot ``s``; step ``k``'s slot holds ``M_C[k, k]``), its mean
    ``c^T C^{-1} xi_bar`` and covariance ``Delta M_C[k, k] - c^T C^{-1} c`` factored with the
    sweep's pivot rule. ``C`` is regularised by ``rtol`` times its diagonal (empty slots by 1).
    With every slot one step (no merge yet) this is the causal Cholesky row of the full
    scheme, to about ``rtol`` (the regularisation here, pivot clipping there). Returns ``xi[k]``, the new state and the pivot flags ``(K,)``."""
    ns = ns.begin(past, k)
    slot_k = past.slot(k)
    n, K = M_C_row.shape[0], M_C_row.shape[-1]
    A = delta * M_C_row  # A[s, a, b] = Cov(xi[k, a], xi_bar[s, b])
    own = jnp.arange(n) == slot_k
    c = jnp.where(own[:, None, None], 0.0, A)
    c_flat = jnp.transpose(c, (0, 2, 1)).reshape(n * K, K)  # [(s, b), a]
    C = ns.cov.reshape(n * K, n * K)
    d = jnp.diagonal(C)
    C = C + jnp.diag(jnp.where(d > 0, rtol * d, 1.0))
    L = jnp.linalg.cholesky(C)
    X = jax.scipy.linalg.solve_triangular(L, c_flat, lower=True)
    coef = jax.scipy.linalg.solve_triangular(L.T, X, lower=False)  # C^{-1} c
    A_kk = A[slot_k]
    S = A_kk - X.T @ X  # the conditional covariance
    L_S, flags = _small_factor(S, jnp.einsum("aa->a", A_kk), rtol)
    xi_k = coef.T @ ns.xi.reshape(n * K, -1) + L_S @ zeta_k
    cov = ns.cov.at[slot_k].set(jnp.transpose(A, (1, 0, 2))).at[:, :, slot_k].set(jnp.transpose(A, (0, 2, 1)))
    return xi_k, SlotNoise(xi=ns.xi, cov=cov, xi_prev=xi_k, pend=past.pair_rows(ns.xi, k + 1)), flags


def _small_factor(S, scale, rtol):
    """The lower factor of a ``K x K`` covariance ``S`` by :func:`noise_row`, the sweep's pivot rule
    against ``rtol scale[a]`` (``scale``: the unconditional variances). Returns the factor and the
    int8 flags (1 kept, 0 clipped, -1 negative beyond rounding)."""
    K = S.shape[0]
    factor, rows = NoiseFactor.empty(K, S.dtype), []
    for a in range(K):
        L_a, factor = noise_row(factor, S[a], a, rtol, scale[a])
        rows.append(L_a)
    return jnp.stack(rows), factor.pivots
