"""Randomized probing of the response (docs/equations.md, section 2.7): the
:class:`ProbeResponse` estimator of ``M_R`` for every number of units ``K``, beside the exact
one of :mod:`dmft_jax._response.response` (whose module docstring explains the trade-off)."""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._util import pad_to
from .._engine.past import Past, padded_size
from .._engine.process import grid_bits
from .response import AbstractResponse, is_whole


class ProbeState(eqx.Module):
    """Probe histories ``v[k, a, p, n]``, the Rademacher fields ``eps[k, a, p, n]`` and the
    previous step's ``H`` times the update's ``b0`` (the exactly known first lag is
    ``chi[k, k-1] = b0 eta_{k-1} Delta H_{k-1}``); time and unit lead, so that the products over
    the past are plain matrix products."""

    v: Float[Array, "steps K probes traj"]
    eps: Float[Array, "steps K probes traj"]
    H_prev: Float[Array, "K K traj"]
    past: Past = Past()  # how the products over the history are taken
    incr: Any = None  # the last increment of v, (K, P, n) (for a two-step update)



class ProbeResponse(AbstractResponse):
    """Randomized probing of the response with ``n_probes`` Rademacher fields per trajectory,
    on the first ``n_traj`` trajectories (default all ``N``). See the module docstring."""

    n_probes: int = eqx.field(static=True, default=4)
    n_traj: int | None = eqx.field(static=True, default=None)

    def resolve(self, n_steps: int, n_traj: int, itemsize: int, K: int = 1) -> "ProbeResponse":
        if not is_whole(self.n_probes) or self.n_probes < 1:
            raise ValueError(f"n_probes must be an integer >= 1; got {self.n_probes}")
        n = n_traj if self.n_traj is None else self.n_traj
        if not is_whole(n) or not 1 <= n <= n_traj:
            raise ValueError(f"ProbeResponse.n_traj must be an integer with 1 <= n_traj <= N = {n_traj}; got {n}")
        return ProbeResponse(int(self.n_probes), int(n))

    def per_group(self, groups):
        """The same probes on ``n_traj / groups`` trajectories per replica."""
        if self.n_traj is not None and self.n_traj < groups:
            raise ValueError(f"ProbeResponse.n_traj = {self.n_traj} is below GroupErrors.groups = {groups}: each "
                             "replica needs at least one probed trajectory")
        return ProbeResponse(self.n_probes, None if self.n_traj is None else self.n_traj // groups)

    def peak_numbers(self, size, width, K=1):
        """The ``v`` and ``eps`` histories (padded to the chunks) and the previous ``H``, and a
        copy of them."""
        return 2 * (2 * self.n_probes * padded_size(size, width) * K * self.n_traj + K * K * self.n_traj)

    def init(self, key, n_steps, n_traj, dtype, K=1):
        return self.init_rolled(key, n_steps, n_traj, dtype, Past(), K)

    def init_rolled(self, key, n_steps, n_traj, dtype, past, K=1):
        size = n_steps + 1
        # time first; a sign per (step, probe, unit) and trajectory counter, drawn over the S
        # steps whatever the padding: every layout and shape bucket has the same probes
        signs = (grid_bits(key, size * self.n_probes * K, self.n_traj) >> 31).astype(dtype)  # 0 or 1
        eps = jnp.swapaxes((2.0 * signs - 1.0).reshape(size, self.n_probes, K, self.n_traj), 1, 2)
        eps = pad_to(eps, padded_size(size, past.width), (0,))
        return ProbeState(v=jnp.zeros(eps.shape, dtype), eps=eps, H_prev=jnp.zeros((K, K, self.n_traj), dtype),
                          past=past, incr=jnp.zeros(eps.shape[1:], dtype))

    def row(self, st, k, w, H, dts, delta):
        n = self.n_traj
        size = st.v.shape[0]
        w_n = w[:n]
        H = H[..., :n]
        norm = jnp.sum(w_n)
        km1 = jnp.maximum(k - 1, 0)
        # v[k] without the exactly known first lag chi[k, k-1] eps[k-1] = eta Delta H[k-1] eps[k-1]
        v_k = st.v[k] - dts[km1] * delta * _apply(st.H_prev, st.eps[km1])  # (K, P, n)
        Hv = w_n * _apply(H, v_k)
        est = st.past.rows(st.eps, k, lambda e: jnp.transpose(jnp.tensordot(Hv, e, axes=((1, 2), (2, 3))), (1, 0, 2)))
        est = est / self.n_probes / norm / dts[:, None, None]
        exact_first = delta * jnp.einsum("n,abn,bcn->ac", w_n, H, st.H_prev) / norm
        idx = jnp.arange(size)[:, None, None]
        est = jnp.where(idx < km1, est, 0.0)
        return jnp.where((idx == km1) & (k > 0), exact_first[None], est)

    def advance(self, st, k, K_k, dt, decay, delta, H, update=None):
        v = st.v
        H = H[..., : self.n_traj]
        A = decay[:, :, None] - dt * delta * H
        memory = st.past.total(k, lambda Kl, vl: jnp.tensordot(Kl, vl, axes=((0, 2), (0, 1))), K_k, v)
        v_next = _apply(A, v[k]) + dt * memory + dt * delta * _apply(H, st.eps[k])
        incr, first = st.incr, H
        if update is not None:  # v is linear in chi, so it takes the same update (v[-1] = v[0])
            incr = v_next - v[k]
            v_next = update.step(v[k], v[jnp.maximum(k - 1, 0)], incr, st.incr)
            first = update.b0 * H  # the first lag chi[k+1, k] = b0 eta_k Delta H_k
        return ProbeState(v=v.at[k + 1].set(v_next), eps=st.eps, H_prev=first, past=st.past, incr=incr)


def _apply(A, v):
    """The per-trajectory ``K x K`` blocks ``A`` ``(K, K, n)`` applied to vectors ``v``
    ``(K, P, n)`` (a broadcast product summed over the inner unit: elementwise at ``K = 1``,
    where a batched matrix product over trajectories is slow)."""
    return jnp.sum(A[:, :, None] * v[None], axis=1)
