"""Randomized probing of the response (docs/equations.md, section 2.7): the
:class:`ProbeResponse` estimator of ``M_R`` for every number of units ``K``, beside the exact
one of :mod:`dmft_jax._response.response` (whose module docstring explains the trade-off)."""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._engine.past import Past, padded_size
from .._engine.grids import grid_bits
from .response import AbstractResponse, is_whole


class ProbeState(eqx.Module):
    """Probe histories ``v[k, a, p, n]``, the Rademacher fields ``eps[k, a, p, n]`` of the steps
    so far (each drawn at its step from the counter ``(step, probe, unit)`` of ``key``; rows of
    later steps are zero) and the previous step's ``H`` times the update's ``b0`` (the exactly
    known first lag is ``chi[k, k-1] = b0 eta_{k-1} Delta H_{k-1}``); time and unit lead, so
    that the products over the past are plain matrix products. With a compressed history
    (``past`` a :class:`~dmft_jax._engine.history.SlotPast`) a row is a slot: ``v`` holds the
    slot's average, ``eps`` its sum."""

    v: Float[Array, "steps K probes traj"]
    eps: Float[Array, "steps K probes traj"]
    H_prev: Float[Array, "K K traj"]
    key: Any  # the probes' key
    v_now: Any  # v at the step to come (K, P, n), written to the history at its step's begin
    past: Past = Past()  # how the products over the history are taken
    incr: Any = None  # the last increment of v, (K, P, n) (for a two-step update)
    pend: Any = None  # a compressed history's rows of v and eps the next step's merges combine

    def prefetched(self, k) -> "ProbeState":
        if not self.past.compressed:
            return self
        return eqx.tree_at(lambda s: s.pend, self, (self.past.pair_rows(self.v, k), self.past.pair_rows(self.eps, k)),
                           is_leaf=lambda x: x is None)


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
        shape = (past.size(n_steps + 1), K, self.n_probes, self.n_traj)
        return ProbeState(v=jnp.zeros(shape, dtype), eps=jnp.zeros(shape, dtype),
                          H_prev=jnp.zeros((K, K, self.n_traj), dtype), key=key, v_now=jnp.zeros(shape[1:], dtype),
                          past=past, incr=jnp.zeros(shape[1:], dtype)).prefetched(0)

    def begin(self, st, k):
        """Step ``k``'s fields and the pending ``v[k]`` written, after the merges at the start of the
        step (a compressed history): every write of the step before its reads."""
        past = st.past
        pend = (None, None) if st.pend is None else st.pend
        eps = past.put(st.eps, past.slot(k), self.fields(st.key, k, st.v.shape[1], st.v.dtype), k, "sum", pend[1])
        v = past.put(st.v, past.slot(k), st.v_now, k, rows=pend[0])
        return eqx.tree_at(lambda s: (s.v, s.eps), st, (v, eps))

    def fields(self, key, k, K, dtype):
        """The Rademacher fields of step ``k`` ``(K, P, n)``: a sign per (step, probe, unit) and
        trajectory counter, the same for every layout, shape bucket and history."""
        P = self.n_probes
        signs = (grid_bits(key, P * K, self.n_traj, row0=k * (P * K)) >> 31).astype(dtype)  # 0 or 1
        return jnp.swapaxes((2.0 * signs - 1.0).reshape(P, K, self.n_traj), 0, 1)

    def row(self, st, k, w, H, dts, delta):
        n = self.n_traj
        past = st.past
        size = st.v.shape[0]
        w_n = w[:n]
        H = H[..., :n]
        norm = jnp.sum(w_n)
        km1 = jnp.maximum(k - 1, 0)
        # v[k] without the exactly known first lag chi[k, k-1] eps[k-1] = eta Delta H[k-1] eps[k-1]
        v_k = st.v[past.slot(k)] - dts[km1] * delta * _apply(st.H_prev, st.eps[past.slot(km1)])  # (K, P, n)
        Hv = w_n * _apply(H, v_k)
        # the history on the left, contracted over its trailing (probe, trajectory) axes: a plain
        # matrix-vector product (the other order made XLA CPU transpose the history at every step)
        est = past.rows(st.eps, k, lambda e: jnp.swapaxes(jnp.tensordot(e, Hv, axes=((2, 3), (1, 2))), 1, 2))
        est = est / self.n_probes / norm  # eta-weighted: eta_l M_R[k, l] / (alpha Delta)
        exact_first = delta * jnp.einsum("n,abn,bcn->ac", w_n, H, st.H_prev) / norm * dts[km1]
        est = jnp.where(past.lag_mask(size, k)[:, None, None], est, 0.0)
        first = (jnp.arange(size) == past.slot(km1))[:, None, None] & (k > 0)
        return past.per_unit_time(jnp.where(first, exact_first[None], est), dts)

    def advance(self, st, k, K_k, dt, decay, delta, H, update=None):
        v, past = st.v, st.past
        H = H[..., : self.n_traj]
        eps_k = st.eps[past.slot(k)]
        A = decay[:, :, None] - dt * delta * H
        v_k = v[past.slot(k)]
        memory = past.total(k, lambda Kl, vl: jnp.tensordot(Kl, vl, axes=((0, 2), (0, 1))), K_k, v)
        v_next = _apply(A, v_k) + dt * memory + dt * delta * _apply(H, eps_k)
        incr, first = st.incr, H
        if update is not None:  # v is linear in chi, so it takes the same update (v[-1] = v[0])
            incr = v_next - v_k
            v_next = update.step(v_k, v[past.slot(jnp.maximum(k - 1, 0))], incr, st.incr)
            first = update.b0 * H  # the first lag chi[k+1, k] = b0 eta_k Delta H_k
        return ProbeState(v=v, eps=st.eps, H_prev=first, key=st.key, v_now=v_next, past=past, incr=incr,
                          pend=st.pend).prefetched(k + 1)


def _apply(A, v):
    """The per-trajectory ``K x K`` blocks ``A`` ``(K, K, n)`` applied to vectors ``v``
    ``(K, P, n)`` (a broadcast product summed over the inner unit: elementwise at ``K = 1``,
    where a batched matrix product over trajectories is slow)."""
    return jnp.sum(A[:, :, None] * v[None], axis=1)
