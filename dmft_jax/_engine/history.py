"""How the causal sweep keeps the past (docs/equations.md, section 2.10): a strategy of
:class:`~dmft_jax.CausalSweep` (``CausalSweep(history=...)``).

- :class:`FullHistory` (default): every step of the past at full resolution, the exact
  discrete scheme; the work per step grows with ``k`` (``O(k N)``, ``O(k^2)`` for the noise
  factor), a solve's with ``T^2`` and more.
- :class:`CompressedHistory`: the last ``window`` steps at full resolution and the far past
  in blocks whose length doubles with their age (at most ``per_level`` blocks of each length
  ``2, 4, 8, ...``; Kim and Latz's scheme for a Monte Carlo process with memory). Every
  history (``u``, ``g``, the noise ``xi``, the probes' ``v`` and fields, the weight side's
  covariance and response) holds one row per block, the block's average (the fields'
  sum); a step reads ``n_slots = O(window + per_level log2(T / window))`` rows, so the work
  per step is flat in ``k`` once ``k`` passes the window. Every SGD step still runs.

The layout of a compressed history is a static schedule (:func:`slot_schedule`): the row
("slot") each step is written to and the pairs of slots merged after each step. Slots are
never moved; a merge averages two slots into the first and clears the second, which the
schedule hands to a later step. Products over the past are then dense products over the
slots (empty slots are zero).
"""
from __future__ import annotations

import collections
import functools
import numbers

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .past import Past

MIN_ESTIMATE = 64  # the fewest trajectories the embedded error estimate runs on (fewer: it is noise itself)


class AbstractHistory(eqx.Module):
    """Interface of a history strategy: ``past(T, width)`` gives the object the sweep reads
    the past through (:class:`~dmft_jax._engine.past.Past` or :class:`SlotPast`)."""

    compressed = False

    def check(self, n_steps: int) -> None:
        """Raise ``ValueError`` for options that are invalid, naming them."""

    def to_dict(self) -> dict:
        return {"history": type(self).__name__, **{f: getattr(self, f) for f in self.__dataclass_fields__}}


class FullHistory(AbstractHistory):
    """Every step of the past at full resolution: the exact discrete scheme (the default)."""


class CompressedHistory(AbstractHistory):
    """A recent ``window`` of steps at full resolution and the far past in blocks of doubling
    length, at most ``per_level`` blocks of each length (module docstring; docs/equations.md,
    section 2.10).

    Error control: with ``estimate=True`` (default) the solve estimates the compression error
    as an embedded pair does: the same random numbers are solved on the first ``n_estimate``
    trajectories (default ``min(N, 2048)``) with this history and with the next coarser one
    (``window / 2``, ``per_level / 2``); the largest difference over the run of ``eps_gen``
    (absolute) and of ``q`` (relative to ``1 + |q|``) is reported in
    ``sol.stats["history_error"]`` and ``sol.stats["history_error_q"]``, and a solve whose
    estimate exceeds ``atol`` (``eps_gen``, default ``5e-3``) or ``rtol`` (``q``, default
    ``5e-2``) ends with ``result`` ``history_tolerance``, not success. The estimate costs about
    ``2 n_estimate / N`` of a solve (one coarser, cheaper solve when ``n_estimate = N``). It is
    conservative twice over: it is the coarser history's error, and it holds a Monte Carlo part
    (the two compressions draw the noise given different slots, which reshuffles the
    trajectories at the level of the pair's Monte Carlo error, ~1e-3 at 2048 trajectories),
    hence the defaults above the errors measured against the full history (2e-4 to 5e-4 in
    ``eps_gen``, 0.4% to 0.9% in ``q`` at T = 1000; ``benchmarks/long_times.py``).

    Requires :class:`~dmft_jax.ProbeResponse` (the default estimator of a compressed solve;
    the exact response is ``O(T^2)`` by nature) and a plain step (no momentum ``beta``).
    """

    window: int = eqx.field(static=True, default=32)
    per_level: int = eqx.field(static=True, default=4)
    atol: float = eqx.field(static=True, default=5e-3)
    rtol: float = eqx.field(static=True, default=5e-2)
    estimate: bool = eqx.field(static=True, default=True)
    n_estimate: int | None = eqx.field(static=True, default=None)

    compressed = True

    def __check_init__(self):
        for name, low in (("window", 4), ("per_level", 2)):
            v = getattr(self, name)
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"CompressedHistory.{name} must be an integer >= {low}; got {v!r}")
        for name in ("atol", "rtol"):
            r = getattr(self, name)
            if isinstance(r, (bool, np.bool_)) or not isinstance(r, numbers.Real) or not (np.isfinite(r) and r > 0):
                raise ValueError(f"CompressedHistory.{name} must be a finite number > 0; got {r!r}")
        if not isinstance(self.estimate, (bool, np.bool_)):
            raise ValueError(f"CompressedHistory.estimate must be True or False; got {self.estimate!r}")
        n = self.n_estimate
        if n is not None and (isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral)
                              or n < MIN_ESTIMATE):
            raise ValueError(f"CompressedHistory.n_estimate must be an integer >= {MIN_ESTIMATE} or None (fewer "
                             f"trajectories make the estimate itself noise); got {n!r}")
        if self.estimate and self.window < 8 and self.per_level < 4:
            raise ValueError(f"CompressedHistory.estimate=True compares with a coarser history (window / 2, "
                             f"per_level / 2): it needs window >= 8 or per_level >= 4; got window={self.window}, "
                             f"per_level={self.per_level} (or pass estimate=False)")

    def coarser(self) -> "CompressedHistory":
        """The embedded coarser history of the error estimate (half the window and blocks per
        length), without an estimate of its own."""
        return CompressedHistory(max(4, self.window // 2), max(2, self.per_level // 2), self.atol, self.rtol, False)

    def past(self, n_steps: int) -> "SlotPast":
        return SlotPast(n_steps=int(n_steps), window=self.window, per_level=self.per_level)

    def n_slots(self, n_steps: int) -> int:
        """Rows of every history of a solve over ``n_steps`` steps (the slots and one scratch row):
        the schedule's count up to a million steps, beyond it a bound in closed form (for the
        estimates: the schedule itself is a Python loop over the steps)."""
        if n_steps <= 10**6:
            return slot_schedule(n_steps, self.window, self.per_level)[3]
        levels = int(np.ceil(np.log2(max(n_steps / self.window, 2.0)))) + 1
        return self.window + 3 + (self.per_level + 1) * levels


def as_history(history) -> AbstractHistory:
    if history is None:
        return FullHistory()
    if not isinstance(history, AbstractHistory):
        raise ValueError(f"history must be dmft_jax.FullHistory() or dmft_jax.CompressedHistory(...) (an instance); "
                         f"got {history!r}")
    return history


@functools.lru_cache(maxsize=16)
def slot_schedule(n_steps: int, window: int, per_level: int):
    """The static layout of a compressed history over steps ``0..n_steps``.

    Returns ``(write, dst, src, n_rows)``: step ``k`` is written to slot ``write[k]``; at the
    start of step ``k`` (before any write of the step: XLA then updates the histories in place)
    the slot pairs ``(dst[k, i], src[k, i])`` that step ``k - 1`` filled up are merged (``src``
    averaged into ``dst``, ``src`` cleared; a pair of the scratch slot ``n_rows - 1`` with
    itself is no merge).
    Steps enter level 0 (length 1); a level holding more than its capacity (``window`` for
    level 0, ``per_level`` above) merges its two oldest slots, adjacent in time, into one of
    the next level, one merge per step (the lowest level over its capacity first; a higher
    level then holds one slot over its capacity for a few steps). One merge per step, not a
    cascade through every level, keeps the rows each step rewrites at three (the pair and the
    new step) at any ``T``: with the cascade's ``log2(T / window)`` pairs, the merges' reads and
    writes cost more than the products (2.8x the step at ``T = 1000``, ``N = 16384``). The slot of step ``k + 1`` is reserved before the merges of step ``k``
    (its ``v`` and weight-side row are written during step ``k``). The schedule of the first
    ``k`` steps does not depend on ``n_steps``."""
    levels: list[collections.deque] = []
    free: list[int] = []
    n_used = 0

    def take():
        nonlocal n_used
        if free:
            return free.pop()
        n_used += 1
        return n_used - 1

    write = np.zeros(n_steps + 1, np.int32)
    merges: list[list[tuple[int, int]]] = []
    write[0] = take()
    for k in range(n_steps + 1):
        if not levels:
            levels.append(collections.deque())
        levels[0].append(write[k])
        if k < n_steps:
            write[k + 1] = take()
        step = []
        over = [lev for lev, q in enumerate(levels) if len(q) > (window if lev == 0 else per_level)]
        if over:  # one merge per step, the lowest level over its capacity
            lev = over[0]
            a, b = levels[lev].popleft(), levels[lev].popleft()
            if lev + 1 == len(levels):
                levels.append(collections.deque())
            levels[lev + 1].append(a)
            free.append(b)
            step.append((a, b))
        merges.append(step)
    scratch = n_used
    width = max(1, max(len(m) for m in merges))
    dst = np.full((n_steps + 1, width), scratch, np.int32)
    src = np.full((n_steps + 1, width), scratch, np.int32)
    for k, step in enumerate(merges[:-1]):  # applied at the start of the next step
        for i, (a, b) in enumerate(step):
            dst[k + 1, i], src[k + 1, i] = a, b
    return write, dst, src, n_used + 1


class SlotPast(Past):
    """The past as a compressed history reads it (:class:`CompressedHistory`): rows are
    slots, products are dense over them, and :meth:`merged` applies the schedule's merges of a
    step. The same interface as :class:`~dmft_jax._engine.past.Past` (whose ``slot(k)`` is ``k``
    and whose merges do nothing). Its static fields are the schedule's arguments (hashable);
    the tables come from :func:`slot_schedule`'s cache."""

    n_steps: int = eqx.field(static=True, default=0)
    window: int = eqx.field(static=True, default=32)
    per_level: int = eqx.field(static=True, default=4)

    compressed = True

    @property
    def tables(self):
        return slot_schedule(self.n_steps, self.window, self.per_level)

    @property
    def n_slots(self) -> int:
        return self.tables[3]

    def chunked(self, size: int) -> bool:
        return False

    def size(self, n_rows: int) -> int:
        return self.n_slots

    def slot(self, k):
        return jnp.asarray(self.tables[0])[k]

    def lag_mask(self, n, k):
        """Rows holding only steps ``< k - 1``: every slot but those of ``k - 1`` and ``k``
        (empty slots are zero)."""
        idx = jnp.arange(n)
        return (idx != self.slot(jnp.maximum(k - 1, 0))) & (idx != self.slot(k))

    def per_unit_time(self, row, dts):
        return row  # a slot's entry is the eta-weighted sum over its steps

    def eta_weighted(self, row, dts):
        return row

    def pair_rows(self, hist, k):
        """The rows the merges at the start of step ``k`` combine, ``(M, 2, ...)``: read at the
        end of step ``k - 1`` (after its writes) and carried, so that the merges write without
        reading the history in the same step (XLA copies a history read and then updated in one
        step; this way it updates it in place)."""
        _, dst_t, src_t, _ = self.tables
        idx = jnp.stack([jnp.asarray(dst_t)[k], jnp.asarray(src_t)[k]], axis=1)
        return jnp.take(hist, idx, axis=0)

    def merged(self, hist, k, how: str = "mean", axis: int = 0, rows=None):
        """``hist`` after the merges at the start of step ``k`` along ``axis``: ``mean`` for
        averages (histories, covariances), ``sum`` for sums (probe fields, sources of a
        response). ``rows``: :meth:`pair_rows` of the history read beforehand (axis 0)."""
        x = jnp.moveaxis(hist, axis, 0)
        if rows is None:
            rows = self.pair_rows(x, k)
        idx, vals = self._merges(k, rows, how)
        return jnp.moveaxis(x.at[idx].set(vals), 0, axis)

    def put(self, hist, slot, value, k, how: str = "mean", rows=None):
        """``hist`` after the merges at the start of step ``k`` with ``value`` written to row
        ``slot``, in one scatter whose values do not read ``hist`` (``rows`` carried from
        :meth:`pair_rows`): XLA then writes the history in place."""
        idx, vals = self._merges(k, rows, how)
        idx = jnp.concatenate([idx, jnp.asarray(slot, idx.dtype)[None]])
        return hist.at[idx].set(jnp.concatenate([vals, value[None].astype(hist.dtype)]))

    def _merges(self, k, rows, how):
        """The rows written by the merges at the start of step ``k`` and their values: each
        pair's first slot gets the mean (``sum``) of the pair, the second zero (the scratch
        slot's pairs write zero to it)."""
        _, dst_t, src_t, _ = self.tables
        w = 0.5 if how == "mean" else 1.0
        idx = jnp.concatenate([jnp.asarray(dst_t)[k], jnp.asarray(src_t)[k]])
        return idx, jnp.concatenate([w * (rows[:, 0] + rows[:, 1]), jnp.zeros_like(rows[:, 1])])
