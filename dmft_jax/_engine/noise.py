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


def noise_row(factor: NoiseFactor, a_row, k, rtol):
    """Row ``k`` of the causal Cholesky factor of ``A = Delta M_C`` given ``a_row = A[k, :]``
    (entries beyond ``k`` ignored). A pivot below ``rtol A[k, k]`` (rounding, rank
    deficiency) is clipped to zero. Returns ``(L_k, factor)`` with row ``k`` recorded."""
    Lmod, pivot_ok = factor.rows, factor.pivots
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
