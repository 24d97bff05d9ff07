"""Small array and conversion helpers shared by several modules (no physics here)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def pad_to(x, size: int, axes):
    """Zero-pad ``x`` at the end of each axis in ``axes`` to length ``size``."""
    pads = [(0, size - x.shape[a]) if a in axes else (0, 0) for a in range(x.ndim)]
    return jnp.pad(x, pads)


def cast_leaf(x, dtype):
    """Floating arrays and Python floats (e.g. set by ``eqx.tree_at``) to ``dtype``."""
    if isinstance(x, float) or (hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)):
        return jnp.asarray(x).astype(dtype)
    return x


def cast_tree(tree, dtype):
    """Every floating leaf of ``tree`` cast to ``dtype``."""
    return jax.tree_util.tree_map(lambda x: cast_leaf(x, dtype), tree)


def tolist(x):
    """A JSON-friendly copy of an array leaf."""
    return np.asarray(x).tolist()


def as_key(key):
    """A ``jax.random`` key from an ``int`` seed (a key passes through)."""
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(int(key))
    return key


def seed_of(key):
    """The integer seed recorded with a result (``-1`` when a key array was passed)."""
    return int(key) if isinstance(key, (int, np.integer)) else -1
