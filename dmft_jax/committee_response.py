"""Estimators of the committee memory kernel ``M_R[k, l] = alpha Delta E[H_k chi[k, l]] / eta_l``
(``K x K`` blocks; docs/equations.md, sections 2.7 and 6.2): the block forms of
:class:`~dmft_jax.ExactResponse` and :class:`~dmft_jax.ProbeResponse`.

``chi[k, l]`` (``K x K`` per trajectory) obeys

    chi[k+1, l] = (I - eta_k (lam I + lam_hat_k + Delta H_k)) chi[k, l]
                  + eta_k sum_j eta_j M_R[k, j] chi[j, l] + [l = k] eta_k Delta H_k

(plus ``beta (chi[k, l] - chi[k-1, l])`` with momentum).

- :class:`ExactBlocks`: the whole ``chi`` on the first ``n_chi`` trajectories,
  ``(T+1)^2 n_chi K^2`` numbers.
- :class:`ProbeBlocks`: every probed trajectory propagates ``v_p[k] = sum_l chi[k, l] eps_p[l]``
  for ``n_probes`` Rademacher ``K``-vectors ``eps_p[l]`` per step, and
  ``E[H_k chi[k, l]] = E[H_k v_p[k] eps_p[l]^T]`` since ``E[eps_p[j] eps_p[l]^T] = [j = l] I``.
  The first lag ``chi[k, k-1] = eta_{k-1} Delta H_{k-1}`` is known exactly: it is taken out of
  ``v`` and its entry computed directly, as in the single-unit estimator.
  ``(T+1) n_traj n_probes K`` numbers for ``v`` and as many signs.

A state is an ``eqx.Module`` with the trajectory axis first after time (``(S, n, ...)``).
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .response import ExactResponse, ProbeResponse, default_n_chi


class ExactBlocksState(eqx.Module):
    chi: Any  # (S, S, n_chi, K, K): chi[j, l]


class ProbeBlocksState(eqx.Module):
    v: Any  # (S, n, P, K): v_p[k]
    eps: Any  # (S, n, P, K): the probes' signs
    H_prev: Any  # (n, K, K): H[k-1] of the probed trajectories


class ExactBlocks(eqx.Module):
    """The exact block response on the first ``n_chi`` trajectories."""

    n_chi: int = eqx.field(static=True)

    @property
    def n(self) -> int:
        return self.n_chi

    def numbers(self, S, K) -> int:
        return S * S * self.n_chi * K * K

    def per_group(self, groups):
        return ExactBlocks(self.n_chi // groups)

    def to_dict(self):
        return {"type": "ExactResponse", "n_chi": self.n_chi}

    def shard(self, st, put):
        """``st`` with its trajectory axes split by ``put(x, axis)``."""
        return ExactBlocksState(chi=put(st.chi, 2))

    def init(self, key, S, K, dtype):
        return ExactBlocksState(chi=jnp.zeros((S, S, self.n_chi, K, K), dtype))

    def row(self, st, k, w, H, dts, delta):
        """``M_R[k, :]`` up to the factor ``alpha Delta`` (``(S, K, K)``)."""
        n = self.n_chi
        wc = w[:n] / jnp.sum(w[:n])
        return jnp.einsum("n,nab,lnbc->lac", wc, H[:n], st.chi[k]) / dts[:, None, None]

    def advance(self, st, k, KR, dt, decay, delta, H, beta=None):
        """``chi[k + 1]`` from the memory weights ``KR[j] = eta_j M_R[k, j]`` and
        ``decay = lam I + lam_hat_k``."""
        H = H[: self.n_chi]
        chi = st.chi
        A = jnp.eye(H.shape[-1], dtype=H.dtype) - dt * (decay + delta * H)
        new = jnp.einsum("nab,lnbc->lnac", A, chi[k]) + dt * jnp.einsum("jab,jlnbc->lnac", KR, chi)
        new = new.at[k].add(dt * delta * H)  # the source: chi[k+1, k] = eta_k Delta H_k
        if beta is not None:  # chi[-1] = chi[0]
            new = new + beta * (chi[k] - chi[jnp.maximum(k - 1, 0)])
        return ExactBlocksState(chi=chi.at[k + 1].set(new))


class ProbeBlocks(eqx.Module):
    """Randomized probing of the block response on the first ``n`` trajectories with
    ``n_probes`` Rademacher vectors per step (module docstring)."""

    n_probes: int = eqx.field(static=True)
    n: int = eqx.field(static=True)

    def numbers(self, S, K) -> int:
        return 2 * S * self.n * self.n_probes * K

    def per_group(self, groups):
        return ProbeBlocks(self.n_probes, self.n // groups)

    def to_dict(self):
        return {"type": "ProbeResponse", "n_probes": self.n_probes, "n_traj": self.n}

    def shard(self, st, put):
        return ProbeBlocksState(v=put(st.v, 1), eps=put(st.eps, 1), H_prev=put(st.H_prev, 0))

    def init(self, key, S, K, dtype):
        eps = jax.random.rademacher(jax.random.fold_in(key, 0x9B0B), (S, self.n, self.n_probes, K), dtype)
        return ProbeBlocksState(v=jnp.zeros_like(eps), eps=eps, H_prev=jnp.zeros((self.n, K, K), dtype))

    def row(self, st, k, w, H, dts, delta):
        n, S = self.n, st.v.shape[0]
        w = w[:n]
        norm = jnp.sum(w)
        H = H[:n]
        km1 = jnp.maximum(k - 1, 0)
        # v[k] without the exactly known first lag chi[k, k-1] eps[k-1]
        v_k = st.v[k] - dts[km1] * delta * jnp.einsum("nab,npb->npa", st.H_prev, st.eps[km1])
        Hv = w[:, None, None] * jnp.einsum("nab,npb->npa", H, v_k)
        est = jnp.einsum("npa,lnpc->lac", Hv, st.eps) / (self.n_probes * norm) / dts[:, None, None]
        first = delta * jnp.einsum("n,nab,nbc->ac", w, H, st.H_prev) / norm
        idx = jnp.arange(S)[:, None, None]
        est = jnp.where(idx < km1, est, 0.0)
        return jnp.where((idx == km1) & (k > 0), first[None], est)

    def advance(self, st, k, KR, dt, decay, delta, H, beta=None):
        H = H[: self.n]
        v = st.v
        A = jnp.eye(H.shape[-1], dtype=H.dtype) - dt * (decay + delta * H)
        new = jnp.einsum("nab,npb->npa", A, v[k]) + dt * jnp.einsum("jab,jnpb->npa", KR, v) \
            + dt * delta * jnp.einsum("nab,npb->npa", H, st.eps[k])
        if beta is not None:  # v is linear in chi: the same momentum term (v[-1] = v[0])
            new = new + beta * (v[k] - v[jnp.maximum(k - 1, 0)])
        return ProbeBlocksState(v=v.at[k + 1].set(new), eps=st.eps, H_prev=H)


def block_estimator(response, n_traj: int, K: int):
    """The block estimator for ``solve(response=...)`` on a committee of ``K`` units: ``None``
    (the exact response on :func:`~dmft_jax.response.default_n_chi` trajectories), :class:`~dmft_jax.ExactResponse` ``(n_chi)``
    or :class:`~dmft_jax.ProbeResponse` ``(n_probes, n_traj)``."""
    if response is None:
        return ExactBlocks(default_n_chi(n_traj, K))
    if isinstance(response, ExactResponse) and type(response) is ExactResponse:
        if response.max_memory is not None:
            raise ValueError(f"response: committee machines take ExactResponse(n_chi) without max_memory (the solve "
                             f"checks the device's memory itself); got {response!r}")
        n_chi = default_n_chi(n_traj, K) if response.n_chi is None else response.n_chi
        if isinstance(n_chi, (bool, np.bool_)) or not isinstance(n_chi, (int, np.integer)) or not 1 <= n_chi <= n_traj:
            raise ValueError(f"n_chi must be an integer with 1 <= n_chi <= n_traj = {n_traj}; got {n_chi!r}")
        return ExactBlocks(int(n_chi))
    if isinstance(response, ProbeResponse) and type(response) is ProbeResponse:
        for name, v in (("n_probes", response.n_probes), ("ProbeResponse.n_traj", response.n_traj)):
            if v is not None and (isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))):
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        resolved = response.resolve(1, n_traj, 8)  # named checks of n_probes and n_traj
        return ProbeBlocks(resolved.n_probes, resolved.n_traj)
    raise ValueError(f"response: committee machines take dmft_jax.ExactResponse(n_chi) or "
                     f"dmft_jax.ProbeResponse(n_probes); got {response!r}")
