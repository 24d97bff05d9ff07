"""Products over a history's past in fixed-width chunks: how the rolled causal sweep reads
only the steps it needs with shapes that never change from step to step.

A history has time as its leading axis, padded to ``S = n_chunks * width`` rows; at step
``k`` only the chunks ``c <= k // width`` can hold non-zero rows (rows ``> k`` are not yet
written, or are zero by causality). :class:`Past` forms the products over those chunks
alone, in a loop of ``n_chunks`` iterations whose body is compiled once and skips the
inactive chunks (``lax.cond`` on the step, which stays a branch under ``vmap`` over
hyperparameters). So the compiled program does not grow with ``T`` or the number of
chunks, and the memory traffic is triangular: about ``(j + 1) width`` rows at step ``k`` in
chunk ``j`` instead of ``S``. ``width=None`` is the plain whole-history product (the damped
iteration and the one-chunk sweep).
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax


class Past(eqx.Module):
    """How products over the past are taken: whole (``width=None``) or by chunks of
    ``width`` rows."""

    width: int | None = eqx.field(static=True, default=None)

    compressed = False  # a compressed history's past (dmft_jax._engine.history.SlotPast) is

    def chunked(self, size: int) -> bool:
        return self.width is not None and size > self.width

    def size(self, n_rows: int) -> int:
        """Rows of a history holding ``n_rows`` steps (padded to the chunks)."""
        return padded_size(n_rows, self.width)

    def slot(self, k):
        """The row step ``k`` is written to (here ``k`` itself)."""
        return k

    def lag_mask(self, n, k):
        """Rows ``< k - 1`` of a history of ``n`` rows (those older than the first lag)."""
        return jnp.arange(n) < jnp.maximum(k - 1, 0)

    def per_unit_time(self, row, dts):
        """A kernel row of eta-weighted entries ``eta_l M_R[k, l]`` as ``M_R[k, l]``."""
        return row / dts[:, None, None]

    def eta_weighted(self, row, dts):
        """``eta_l M_R[k, l]`` from a kernel row ``M_R[k, l]`` (the memory's weights)."""
        return row * dts[:, None, None]

    def merged(self, hist, k, how: str = "mean", axis: int = 0, rows=None):
        """``hist`` after the merges at the start of step ``k`` (none: every step stays)."""
        return hist

    def put(self, hist, slot, value, k, how: str = "mean", rows=None):
        """``hist`` with ``value`` written to row ``slot`` (after the merges at the start of step
        ``k``: none here)."""
        return hist.at[slot].set(value)

    def pair_rows(self, hist, k):
        """The rows the merges at the start of step ``k`` read (none)."""
        return None

    def rows(self, hist, k, f):
        """``f`` applied to the rows of ``hist`` (time leading) in the chunks up to ``k``'s:
        ``f`` maps a block of rows to the same rows of the output (e.g. a contraction with
        this step's vector); rows of later chunks are zero."""
        size = hist.shape[0]
        if not self.chunked(size):
            return f(hist)
        w = self.width
        j = k // w
        shape = jax.eval_shape(f, jax.ShapeDtypeStruct((w,) + hist.shape[1:], hist.dtype))

        def body(c, out):
            take = lambda o: lax.dynamic_update_slice_in_dim(o, f(lax.dynamic_slice_in_dim(hist, c * w, w)), c * w, 0)
            return lax.cond(c <= j, take, lambda o: o, out)

        return lax.fori_loop(0, size // w, body, jnp.zeros((size,) + shape.shape[1:], shape.dtype))

    def total(self, k, f, *hists):
        """``sum over chunks up to k's of f(*blocks)``, the blocks the chunk's rows of each of
        ``hists`` (time leading, equal lengths; rows past ``k`` are zero or unused)."""
        size = hists[0].shape[0]
        if not self.chunked(size):
            return f(*hists)
        w = self.width
        j = k // w
        shape = jax.eval_shape(f, *(jax.ShapeDtypeStruct((w,) + h.shape[1:], h.dtype) for h in hists))

        def body(c, acc):
            add = lambda a: a + f(*(lax.dynamic_slice_in_dim(h, c * w, w) for h in hists))
            return lax.cond(c <= j, add, lambda a: a, acc)

        return lax.fori_loop(0, size // w, body, jnp.zeros(shape.shape, shape.dtype))


def padded_size(size: int, width: int | None) -> int:
    """``size`` rounded up to a multiple of ``width``."""
    if width is None:
        return size
    return -(-size // width) * width
