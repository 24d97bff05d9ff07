"""Estimators of the memory kernel ``M_R[k, l] = alpha Delta E[s_k Lambda''_k chi[k, l]] / eta_l``.

``chi[k, l]`` is the linear response of a trajectory's ``u[k]`` to a field at step ``l``
(``K x K`` per trajectory for ``K`` units, ``H = s Hess_r Lambda``); it obeys
(docs/equations.md, sections 2.3 and 6.2; the estimators are section 2.7)

    chi[k+1, l] = (I - eta_k (lam I + lam_hat_k + Delta H_k)) chi[k, l]
                  + eta_k sum_j eta_j M_R[k, j] chi[j, l] + [l = k] eta_k Delta H_k.

One estimator serves every ``K`` (a single unit is ``K = 1``); states keep the unit axes
before the trajectory axis, which is last.

Two estimators, passed to :func:`dmft_jax.solve` as ``response=``:

- :class:`ExactResponse` ``(n_chi)``: propagate the whole matrix ``chi[k, l]`` on ``n_chi``
  trajectories: ``O(n_chi T^3)`` time, ``O(n_chi T^2)`` memory, Monte Carlo error
  ``O(1/sqrt(n_chi))``. ``max_memory`` bounds the bytes of ``chi``: ``n_chi`` is then the
  largest that fits (or a clear error when an explicit ``n_chi`` does not).
- :class:`ProbeResponse` ``(n_probes)`` (:mod:`dmft_jax._response.probes`): randomized probing. Each trajectory propagates
  ``v_p[k] = sum_l chi[k, l] eps_p[l]`` for ``n_probes`` independent Rademacher fields
  ``eps_p[l] = +-1`` (the same recursion with the source ``eta_k Delta s Lambda'' eps_p[k]``),
  and ``E[s Lambda''_k chi[k, l]] = E[s Lambda''_k v_p[k] eps_p[l]]`` since
  ``E[eps_p[j] eps_p[l]] = delta_jl`` and ``eps`` is independent of the trajectory.
  Unbiased; ``O(n_probes N T^2)`` time, ``O(n_probes N T)`` memory. The price is variance:
  the other lags ``j != l`` add noise ``sum_j chi[k, j]^2`` (about the number of steps the
  response remembers times ``chi[k, l]^2``), paid back by using all ``N`` trajectories
  instead of ``n_chi``. The first lag ``chi[k, k-1] = b0 eta_{k-1} Delta H_{k-1}`` (``b0 = 1``
  but for a two-step update, :mod:`dmft_jax._algorithms.updates`) is known exactly; it is taken out of ``v`` and its kernel entry computed directly (the largest
  single noise term removed at no cost).

Where the balance lies is measured by ``benchmarks/work_precision.py``.
"""
from __future__ import annotations

import abc
import numbers
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, Float

from .._engine.past import Past, padded_size


def is_whole(v) -> bool:
    """Whether ``v`` is a whole number (an integer, or a float equal to one; not NaN, not a
    boolean, not a string): the sizes' checks then compare it and name it, where ``int(nan)``
    had raised an error that named nothing."""
    if not isinstance(v, numbers.Real) or isinstance(v, (bool, np.bool_)) or not np.isfinite(v):
        return False
    return float(v) == int(v)


class AbstractResponse(eqx.Module):
    """Interface of an ``M_R`` estimator. Options are static fields; the per-solve state is
    a pytree (an ``eqx.Module``) whose array leaves have the trajectory axis last.

    A solve calls ``resolve`` once (fix sizes from ``T``, ``N`` and the number of units
    ``K``; validate), then ``init`` (state over ``S = T + 1`` steps; the causal sweep calls
    ``init_rolled``, over its padded size), and at every step ``k`` ``row`` (kernel row
    ``M_R[k, :]`` ``(S, K, K)`` up to the factor ``alpha Delta``, as long as the state's time
    axis) and ``advance`` (state ``k -> k + 1`` given the memory weights
    ``K_k[l] = eta_l M_R[k, l]``). ``peak_numbers`` feeds the memory formula."""

    @abc.abstractmethod
    def resolve(self, n_steps: int, n_traj: int, itemsize: int, K: int = 1) -> "AbstractResponse":
        """A copy with every size fixed (``n_traj`` is ``N``, ``K`` the units); raise
        ``ValueError`` for bad options."""

    @abc.abstractmethod
    def init(self, key, n_steps: int, n_traj: int, dtype, K: int = 1) -> eqx.Module:
        """The state before step 0, sized for ``n_steps + 1`` steps and ``K`` units."""

    @abc.abstractmethod
    def row(self, state, k, w, H, dts, delta):
        """``E_w[H_k chi[k, l]] / eta_l`` ``(S, K, K)`` for ``l = 0..S-1`` (zero for
        ``l >= k``): ``w`` likelihood-ratio weights (value 1), ``H`` ``(K, K, N)`` the
        trajectories' ``s_k Hess_r Lambda``."""

    @abc.abstractmethod
    def advance(self, state, k, K_k, dt, decay, delta, H, update=None):
        """The state at ``k + 1``: ``chi[k+1] = chi[k] + incr[k]`` with the increment
        ``incr[k] = (decay - I - dt Delta H) chi[k] + dt sum_l K_k[l] chi[l]``
        (``decay = I - dt (lam I + lam_hat_k)`` ``(K, K)``, products of ``K x K`` blocks) plus the
        source ``dt Delta H`` at column ``k``. With momentum (``update`` a
        :class:`~dmft_jax._algorithms.updates.TwoStep`; docs/equations.md, section 5.1) the row is
        ``update.step(chi[k], chi[k-1], incr[k], incr[k-1])``: ``chi`` is linear in the weights and
        takes their update. ``update`` is passed only when the algorithm has momentum, so an
        estimator without the keyword works for every other solve."""

    def begin(self, state, k):
        """The state at the start of step ``k``, before ``row`` reads it: where an estimator writes
        what the previous step left pending (writes before reads keep XLA's updates in place) and
        applies a compressed history's merges. By default the state itself."""
        return state

    def init_rolled(self, key, n_steps: int, n_traj: int, dtype, past: Past, K: int = 1):
        """The state for the rolled causal sweep, whose histories have ``padded_size(n_steps +
        1, past.width)`` rows; by default :meth:`init` for that many rows (``row`` and
        ``advance`` then read the whole padded state). Estimators that store a triangle
        override it to read only the past (``past``'s chunks)."""
        return self.init(key, padded_size(n_steps + 1, past.width) - 1, n_traj, dtype, K)

    def to_column_blocks(self, state, size: int):
        """The state as :class:`ExactState` column blocks over ``size`` steps (what
        :class:`~dmft_jax.SweepAdjoint` reads); only estimators with an exact ``chi`` have it."""
        raise NotImplementedError(f"{type(self).__name__} has no column blocks of chi")

    @abc.abstractmethod
    def peak_numbers(self, size: int, width: int | None, K: int = 1) -> int:
        """Numbers held at the peak of a rolled sweep over ``size = T + 1`` steps in chunks of
        ``width`` (``None``: one chunk) with ``K`` units."""

    def per_group(self, groups: int) -> "AbstractResponse":
        """The (unresolved) estimator of one of ``groups`` replicas on ``N / groups``
        trajectories (:class:`~dmft_jax.GroupErrors`); by default the same options."""
        return self

    def to_dict(self) -> dict:
        out = {"estimator": type(self).__name__}
        out.update({f: getattr(self, f) for f in self.__dataclass_fields__})
        return out


class ExactState(eqx.Module):
    """``chi`` as a tuple of column blocks: block ``c`` holds the columns ``[e_c, e_c + w_c)``
    and the rows ``[e_c, S)`` of ``chi[j, a, l, b, n]`` (rows ``j <= l`` are zero by
    causality): rows are the flattened (time, unit) pairs ``(j, a)``, columns ``(l, b)``, so
    that the memory's block products are one matrix product."""

    chi: tuple  # of Float[Array, "rows K cols K n_chi"]
    incr: Any = None  # the last row's increment per block, (K, cols, K, n_chi) (for a two-step update)

    def column_blocks(self):
        """``(e_c, block_c)`` pairs and the size ``S``."""
        size = self.chi[0].shape[0]
        return [(size - c.shape[0], c) for c in self.chi], size


def default_n_chi(n_traj: int, K: int = 1) -> int:
    """The default number of trajectories carrying the exact response, for every ``K`` (one
    rule for single units and committees): ``min(N, max(4096 // K^2, 1024))``. ``chi`` holds
    ``K^2`` numbers per trajectory and pair of times, so up to ``K = 2`` this keeps a single
    unit's memory; beyond, at least 1024 trajectories keep the estimate's noise in bounds."""
    return min(int(n_traj), max(4096 // (K * K), 1024))


class ExactResponse(AbstractResponse):
    """Exact per-trajectory response on ``n_chi`` trajectories (default
    :func:`default_n_chi`: ``min(N, 4096)`` for a single unit, ``min(N, max(4096 / K^2, 1024))``
    for ``K`` units).

    ``max_memory`` (bytes, optional): upper bound on the memory of ``chi``
    (``(T+1)^2 n_chi K^2`` numbers). With ``n_chi=None`` the largest ``n_chi`` up to the default
    within the bound is used; an explicit ``n_chi`` that exceeds it is refused.
    """

    n_chi: int | None = eqx.field(static=True, default=None)
    max_memory: float | None = eqx.field(static=True, default=None)

    def resolve(self, n_steps: int, n_traj: int, itemsize: int, K: int = 1) -> "ExactResponse":
        size = n_steps + 1
        n_chi = self.n_chi
        one = size * size * K * K * itemsize  # bytes of one trajectory's chi
        if self.max_memory is not None:
            if not self.max_memory > 0:
                raise ValueError(f"max_memory must be > 0 bytes; got {self.max_memory}")
            fit = int(self.max_memory // one)
            if n_chi is None:
                n_chi = min(default_n_chi(n_traj, K), fit)
                if n_chi < 1:
                    raise ValueError(
                        f"max_memory: {self.max_memory:.3g} bytes cannot hold the response of one "
                        f"trajectory over T = {n_steps} steps with K = {K} units ({one} bytes); "
                        "raise max_memory or use ProbeResponse (memory O(n_probes N T K))")
            elif n_chi > fit:
                raise ValueError(
                    f"n_chi = {n_chi} needs {n_chi * one / 2**20:.1f} MiB for the "
                    f"response, above max_memory = {self.max_memory / 2**20:.1f} MiB; at most "
                    f"n_chi = {fit} fits")
        if n_chi is None:
            n_chi = default_n_chi(n_traj, K)
        if not is_whole(n_chi) or not 1 <= n_chi <= n_traj:
            raise ValueError(f"n_chi must be an integer with 1 <= n_chi <= n_traj = {n_traj}; got {n_chi}")
        return ExactResponse(int(n_chi), self.max_memory)

    def per_group(self, groups):
        """``n_chi / groups`` trajectories per replica (the same total)."""
        if self.n_chi is not None and self.n_chi < groups:
            raise ValueError(f"n_chi = {self.n_chi} is below GroupErrors.groups = {groups}: each replica needs at "
                             "least one response trajectory; raise n_chi or lower groups")
        return ExactResponse(None if self.n_chi is None else self.n_chi // groups)

    def peak_numbers(self, size, width, K=1):
        """Numbers of ``chi``: the square ``S (S - 1) n_chi K^2`` in one chunk, else the lower
        triangle's ``n (n + 1) / 2`` tiles of ``width^2 n_chi K^2`` (``n`` chunks)."""
        if width is None or width >= size:
            return self.n_chi * size * (size - 1) * K * K
        n = padded_size(size, width) // width
        return self.n_chi * (n * (n + 1) // 2) * width * width * K * K

    # Two layouts. ExactState (the damped iteration, a one-chunk sweep and the adjoint's
    # input): column blocks of the lower triangle. TiledState (the rolled sweep): square
    # tiles of the lower triangle; a step reads the tiles of rows up to its own and writes
    # one row, so the memory traffic over a solve is about a sixth of the square's T^3.

    def init(self, key, n_steps, n_traj, dtype, K=1):
        size = n_steps + 1
        return ExactState(chi=(jnp.zeros((size, K, size - 1, K, self.n_chi), dtype),),
                          incr=(jnp.zeros((K, size - 1, K, self.n_chi), dtype),))

    def init_rolled(self, key, n_steps, n_traj, dtype, past, K=1):
        size = n_steps + 1
        if not past.chunked(size):
            return self.init(key, n_steps, n_traj, dtype, K)
        n = padded_size(size, past.width) // past.width
        w = past.width
        return TiledState(tiles=jnp.zeros((n * (n + 1) // 2, w, K, w, K, self.n_chi), dtype), n_chunks=n,
                          incr=jnp.zeros((n, K, w, K, self.n_chi), dtype))

    def source_weights(self, w, H):
        """``w H / sum(w)`` ``(K, K, n_chi)`` on the response trajectories: ``M_R[k, l]`` is
        ``alpha Delta source_weights . chi[k, l] / eta_l`` (block product, sum over them)."""
        w_chi = w[: self.n_chi]
        return w_chi * H[..., : self.n_chi] / jnp.sum(w_chi)

    def row(self, st, k, w, H, dts, delta):
        sw = self.source_weights(w, H)
        if isinstance(st, TiledState):
            return st.row(k, sw) / dts[:, None, None]
        blocks, _ = st.column_blocks()
        parts = [chi_row(sw, lax.dynamic_index_in_dim(c, k - e, 0, keepdims=False)) for e, c in blocks]
        K = sw.shape[0]
        return jnp.concatenate(parts + [jnp.zeros((1, K, K), sw.dtype)]) / dts[:, None, None]

    def advance(self, st, k, K_k, dt, decay, delta, H, update=None):
        H = H[..., : self.n_chi]
        if isinstance(st, TiledState):
            return st.advance(k, K_k, lambda chi_k, mem, offset, chi_prev, incr_prev: chi_step(
                chi_k, mem, k, dt, decay, delta, H, offset=offset, chi_prev=chi_prev, incr_prev=incr_prev,
                update=update), with_previous=update is not None)
        blocks, _ = st.column_blocks()
        if update is not None and st.incr is None:  # column blocks made elsewhere (to_column_blocks): no step taken yet
            st = ExactState(chi=st.chi, incr=tuple(jnp.zeros(c.shape[1:], c.dtype) for _, c in blocks))
        new, incrs = [], []
        for i, (e, c) in enumerate(blocks):  # the rows of block c start at e <= k
            # row k - 1 < e of the block's columns is zero by causality, as is its row e (clamped index)
            prev = None if update is None else lax.dynamic_index_in_dim(c, jnp.maximum(k - 1 - e, 0), 0,
                                                                        keepdims=False)
            chi_next, incr = chi_step(lax.dynamic_index_in_dim(c, k - e, 0, keepdims=False), chi_memory(K_k[e:], c), k,
                                      dt, decay, delta, H, offset=e, chi_prev=prev,
                                      incr_prev=None if update is None else st.incr[i], update=update)
            new.append(lax.dynamic_update_index_in_dim(c, chi_next, k + 1 - e, 0))
            incrs.append(incr)
        return ExactState(chi=tuple(new), incr=st.incr if update is None else tuple(incrs))

    def to_column_blocks(self, st, size):
        """One column block per chunk: block ``c`` holds rows ``[c w, S)`` and columns
        ``[c w, c w + w)`` (the last cut at ``S - 1``)."""
        if isinstance(st, ExactState):
            return st
        return st.column_blocks(size)


class TiledState(eqx.Module):
    """``chi``'s lower triangle in square tiles of ``w`` rows and columns (the chunks): tile
    ``(r, c)``, ``c <= r``, at index ``r (r + 1) / 2 + c``, holds
    ``chi[r w + i, a, c w + j, b, n]``. Rows past ``T`` are padding."""

    tiles: Float[Array, "tiles w K w K n_chi"]
    n_chunks: int = eqx.field(static=True)
    incr: Any = None  # the last row's increment per column chunk, (n_chunks, K, w, K, n_chi) (two-step update)

    def _tile_rows(self):
        """Static tables: the row and column chunk of every tile."""
        rc = [(r, c) for r in range(self.n_chunks) for c in range(r + 1)]
        return jnp.asarray([r for r, _ in rc]), jnp.asarray([c for _, c in rc])

    def _row_of(self, tiles, t, i):
        """Row ``i`` of tile ``t``: ``(K, w, K, n_chi)``."""
        shape = tiles.shape[2:]
        return lax.dynamic_slice(tiles, (t, i) + (0,) * len(shape), (1, 1) + shape)[0, 0]

    def row(self, k, sw):
        """``sw . chi[k, l]`` (:func:`chi_row`) for every column ``l`` (the padded length)."""
        w, K = self.tiles.shape[1], self.tiles.shape[2]
        j, i = k // w, k % w

        def body(c, out):
            part = chi_row(sw, self._row_of(self.tiles, j * (j + 1) // 2 + c, i))
            take = lambda o: lax.dynamic_update_slice_in_dim(o, part, c * w, 0)
            return lax.cond(c <= j, take, lambda o: o, out)

        return lax.fori_loop(0, self.n_chunks, body, jnp.zeros((self.n_chunks * w, K, K), sw.dtype))

    def advance(self, k, K_k, step, with_previous: bool = False):
        """Row ``k + 1`` written from row ``k`` and the memory ``sum_l K_k[l] chi[l]``:
        ``step(chi[k, chunk c], memory of chunk c, c w, chi[k - 1, chunk c], incr[k - 1, chunk c])``
        gives the new row's chunk ``c`` and its increment (the last two arguments ``None`` unless
        ``with_previous``: a two-step update)."""
        tiles = self.tiles
        n_tiles, w = tiles.shape[:2]
        j, i = k // w, k % w
        j1, i1 = (k + 1) // w, (k + 1) % w
        r_of, c_of = self._tile_rows()

        def add(t, mem):
            r, c = r_of[t], c_of[t]

            def plus(mem):
                part = chi_memory(lax.dynamic_slice_in_dim(K_k, r * w, w),
                                  lax.dynamic_index_in_dim(tiles, t, 0, keepdims=False))
                return lax.dynamic_update_index_in_dim(mem, lax.dynamic_index_in_dim(mem, c, 0, False) + part, c, 0)

            return lax.cond(r <= j, plus, lambda m: m, mem)

        # the memory of every column chunk first (all reads), then the writes of row k + 1
        mem = lax.fori_loop(0, n_tiles, add, jnp.zeros((self.n_chunks,) + tiles.shape[2:], tiles.dtype))

        jm, im = jnp.maximum(k - 1, 0) // w, jnp.maximum(k - 1, 0) % w

        def previous(c):
            """Chunk ``c`` of row ``k - 1`` (zero where it is before the chunk: causality)."""
            row = self._row_of(tiles, jm * (jm + 1) // 2 + jnp.minimum(c, jm), im)
            return jnp.where((c <= jm) & (k > 0), row, jnp.zeros_like(row))

        def write(c, carry):
            def put(carry):
                tiles, incr = carry
                prev, incr_prev = (previous(c), incr[c]) if with_previous else (None, None)
                new, incr_c = step(self._row_of(tiles, j * (j + 1) // 2 + c, i), mem[c], c * w, prev, incr_prev)
                tiles = lax.dynamic_update_slice(tiles, new[None, None], (j1 * (j1 + 1) // 2 + c, i1, 0, 0, 0, 0))
                return tiles, (incr.at[c].set(incr_c) if with_previous else incr)

            return lax.cond(c <= j, put, lambda t: t, carry)

        tiles, incr = lax.fori_loop(0, self.n_chunks, write, (tiles, self.incr))
        return TiledState(tiles=tiles, n_chunks=self.n_chunks, incr=incr)

    def column_blocks(self, size):
        """:class:`ExactState` over ``size`` steps, one column block per chunk."""
        w = self.tiles.shape[1]
        blocks = []
        for c in range(self.n_chunks):
            e = c * w
            if e >= size - 1:
                break
            col = jnp.concatenate([self.tiles[r * (r + 1) // 2 + c] for r in range(c, self.n_chunks)])
            blocks.append(col[: size - e, :, : min(w, size - 1 - e)])
        return ExactState(chi=tuple(blocks))


def chi_row(sw, chi_k):
    """``sum_n sw[n] chi[k, l][n]`` as blocks: ``(cols, K, K)`` from the source weights ``sw``
    ``(K, K, n)`` and the row ``chi_k`` ``(K, cols, K, n)``."""
    return jnp.einsum("abn,blcn->lac", sw, chi_k)


def chi_memory(K_k, chi):
    """``sum_j K_k[j] chi[j]`` (block products) ``(K, cols, K, n)`` from rows ``chi``
    ``(rows, K, cols, K, n)`` and the weights ``K_k`` ``(rows, K, K)``: one matrix product over
    the flattened (time, unit) index of the rows."""
    return jnp.tensordot(K_k, chi, axes=((0, 2), (0, 1)))


def chi_step(chi_k, chi_memory, k, dt, decay, delta, H, offset=0, chi_prev=None, incr_prev=None, update=None):
    """Row ``chi[k+1, :]`` ``(K, cols, K, n)`` from row ``k`` and the memory term
    ``sum_j eta_j M_R[k, j] chi[j]`` (for the columns ``offset, offset + 1, ...``; the source
    ``eta_k Delta H_k`` enters column ``k`` if present). ``decay``: ``I - eta_k (lam I +
    lam_hat_k)``. Returns the row and its increment ``chi[k+1] - chi[k]`` of the plain step;
    with a two-step ``update`` (section 5.1) the row is ``update.step(chi[k], chi[k-1],
    increment, incr_prev)`` (the increment ``None`` without one)."""
    A = decay[:, :, None] - dt * delta * H
    cols = jnp.arange(chi_k.shape[1]) + offset
    new = jnp.sum(A[:, :, None, None] * chi_k[None], axis=1) + dt * chi_memory  # A chi_k, per trajectory
    new = jnp.where((cols == k)[None, :, None, None], (dt * delta * H)[:, None], new)
    if update is None:
        return new, None
    incr = new - chi_k
    return update.step(chi_k, chi_prev, incr, incr_prev), incr


def as_response(response, n_chi=None) -> AbstractResponse:
    """The estimator selected by ``solve(response=..., n_chi=...)``."""
    if response is None:
        return ExactResponse(n_chi)
    if not isinstance(response, AbstractResponse):
        raise ValueError(f"response must be an M_R estimator (dmft_jax.ExactResponse, dmft_jax.ProbeResponse "
                         f"or a subclass of dmft_jax.AbstractResponse); got {response!r}")
    if n_chi is not None:
        if not isinstance(response, ExactResponse):
            raise ValueError("n_chi applies to ExactResponse only; ProbeResponse uses n_probes (and n_traj)")
        if response.n_chi is not None and response.n_chi != n_chi:
            raise ValueError(f"n_chi = {n_chi} conflicts with response.n_chi = {response.n_chi}")
        return ExactResponse(n_chi, response.max_memory)
    return response
