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
import jax.numpy as jnp
from jax import lax


class Past(eqx.Module):
    """How products over the past are taken: whole (``width=None``) or by chunks of
    ``width`` rows."""

    width: int | None = eqx.field(static=True, default=None)

    def chunked(self, size: int) -> bool:
        return self.width is not None and size > self.width

    def matvec(self, hist, x, k):
        """``out[l] = hist[l] . x`` (contracting every axis but time) for the rows of the
        chunks up to ``k``'s; zero beyond."""
        size = hist.shape[0]
        flat, xf = hist.reshape(size, -1), x.reshape(-1)
        if not self.chunked(size):
            return flat @ xf
        w = self.width
        j = k // w

        def body(c, out):
            take = lambda o: lax.dynamic_update_slice_in_dim(o, lax.dynamic_slice_in_dim(flat, c * w, w) @ xf,
                                                             c * w, 0)
            return lax.cond(c <= j, take, lambda o: o, out)

        return lax.fori_loop(0, size // w, body, jnp.zeros(size, jnp.result_type(flat, xf)))

    def vecmat(self, v, hist, k):
        """``sum_l v[l] hist[l]`` over the rows of the chunks up to ``k``'s (``v`` is zero
        beyond ``k``)."""
        size = hist.shape[0]
        flat = hist.reshape(size, -1)
        if not self.chunked(size):
            return (v @ flat).reshape(hist.shape[1:])
        w = self.width
        j = k // w

        def body(c, acc):
            add = lambda a: a + lax.dynamic_slice_in_dim(v, c * w, w) @ lax.dynamic_slice_in_dim(flat, c * w, w)
            return lax.cond(c <= j, add, lambda a: a, acc)

        acc = lax.fori_loop(0, size // w, body, jnp.zeros(flat.shape[1], jnp.result_type(v, flat)))
        return acc.reshape(hist.shape[1:])


def padded_size(size: int, width: int | None) -> int:
    """``size`` rounded up to a multiple of ``width``."""
    if width is None:
        return size
    return -(-size // width) * width
