"""Counter-based random grids: every entry a function of its own (row, column) counter under a
key, so that the first rows and columns of a larger grid are the smaller grid (the
trajectories' ``zeta`` and the probes' fields: a solve over more steps or trajectories starts
with the same numbers, and a step's row can be drawn at its step)."""
from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
from jax import lax


def grid_bits(key, n_rows: int, n_cols: int, row0=0):
    """32 random bits for every ``(row, column)``, ``(n_rows, n_cols)`` uint32: the Threefry
    hash of the counter ``(row, column)`` under ``key``, so an entry depends on its own row and
    column only (the first rows and columns of a larger grid are the smaller grid). ``row0``
    (may be traced): the rows ``row0 .. row0 + n_rows - 1`` of the same grid."""
    data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = data.reshape(-1)
    if data.shape[0] != 2:  # not a Threefry key: hash its words down to one
        data = jax.random.key_data(jax.random.PRNGKey(0)).at[1].set(jnp.sum(data, dtype=jnp.uint32))
    rows = jnp.arange(n_rows, dtype=jnp.uint32) + jnp.asarray(row0).astype(jnp.uint32)
    rows = jnp.broadcast_to(rows[:, None], (n_rows, n_cols)).reshape(-1)
    cols = jnp.broadcast_to(jnp.arange(n_cols, dtype=jnp.uint32)[None, :], (n_rows, n_cols)).reshape(-1)
    # threefry_2x32 hashes the pairs (first half, second half) of its counts
    bits = jax.extend.random.threefry_2x32((data[0], data[1]), jnp.concatenate([rows, cols]))
    return bits[: n_rows * n_cols].reshape(n_rows, n_cols)


def grid_normal(key, n_rows: int, n_cols: int, row0=0):
    """Standard normals (float32) on a ``(row, column)`` grid, from :func:`grid_bits` (``row0``:
    its rows ``row0 ..``)."""
    u = lax.bitcast_convert_type((grid_bits(key, n_rows, n_cols, row0) >> 9) | jnp.uint32(0x3F800000),
                                 jnp.float32) - 1.0  # uniform in [0, 1)
    v = jnp.maximum(2.0 * u - 1.0, jnp.nextafter(jnp.float32(-1.0), jnp.float32(0.0)))  # in (-1, 1)
    return jnp.sqrt(jnp.float32(2.0)) * lax.erf_inv(v)
