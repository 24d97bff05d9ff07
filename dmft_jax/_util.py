"""Small array and conversion helpers shared by several modules (no physics here)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def pad_to(x, size: int, axes, value=0.0):
    """Pad ``x`` with ``value`` (default zero) at the end of each axis in ``axes`` to length ``size``."""
    pads = [(0, size - x.shape[a]) if a in axes else (0, 0) for a in range(x.ndim)]
    return jnp.pad(x, pads, constant_values=value)


def cast_leaf(x, dtype):
    """Floating arrays and Python floats (e.g. set by ``eqx.tree_at``) to ``dtype``."""
    if isinstance(x, float):  # through NumPy: no conversion program to compile
        return jax.device_put(np.asarray(x, dtype=dtype))
    if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.asarray(x).astype(dtype)
    return x


def cast_tree(tree, dtype):
    """Every floating leaf of ``tree`` cast to ``dtype``."""
    return jax.tree_util.tree_map(lambda x: cast_leaf(x, dtype), tree)


def tolist(x):
    """A JSON-friendly copy of an array leaf."""
    return np.asarray(x).tolist()


def as_key(key):
    """A ``jax.random`` key from an ``int`` seed in ``[0, 2**63)`` (a key array passes through);
    anything else is refused with ``ValueError`` naming ``key``."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if not 0 <= int(key) < 2**63:
            raise ValueError(f"key must be an integer seed in [0, 2**63) or a jax.random key; got {key!r}")
        if int(key) < 2**31 and jax.config.jax_default_prng_impl == "threefry2x32":
            # what PRNGKey(seed) holds for threefry, built without compiling its seeding
            return jax.device_put(np.array([0, int(key)], dtype=np.uint32))
        return jax.random.PRNGKey(int(key))
    if isinstance(key, jax.Array) or isinstance(key, jax.core.Tracer):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or (key.dtype == jnp.uint32 and key.shape == (2,)):
            return key
    raise ValueError(f"key must be an integer seed in [0, 2**63) or a jax.random key "
                     f"(jax.random.PRNGKey(0) or jax.random.key(0)); got {key!r}")


def as_dtype(dtype):
    """The working dtype: ``None`` (JAX's default float), float32 or float64."""
    if dtype is None:
        return jnp.dtype(jnp.result_type(float))
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}") from None
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype: float64 needs jax.config.update('jax_enable_x64', True) first")
    return dt


def seed_of(key):
    """The integer seed recorded with a result (``-1`` when a key array was passed); an
    int64 array leaf (int32 without x64, where seeds >= 2**31 are recorded as -1)."""
    seed = int(key) if isinstance(key, (int, np.integer)) and not isinstance(key, bool) else -1
    if not jax.config.jax_enable_x64 and seed >= 2**31:
        seed = -1
    return seed


def normal_nodes(n: int):
    """Gauss-Hermite nodes and weights (NumPy) of ``E[f(z)]``, ``z ~ N(0, 1)``."""
    x, w = np.polynomial.hermite.hermgauss(n)
    return np.sqrt(2.0) * x, w / np.sqrt(np.pi)


def half_normal_nodes(n: int, upper: float = 10.0):
    """Gauss-Legendre nodes on ``[0, upper]`` with the standard normal density in the weights
    (``int_0^upper phi(t) f(t) dt``; the tail beyond 10 is below 1e-22)."""
    x, w = np.polynomial.legendre.leggauss(n)
    t = 0.5 * upper * (x + 1.0)
    return t, 0.5 * upper * w * np.exp(-0.5 * t * t) / np.sqrt(2 * np.pi)


def device_bytes():
    """Memory of the first device (physical memory on CPU), or ``None`` if unknown."""
    import os

    try:
        dev = jax.devices()[0]
        stats = dev.memory_stats() if dev.platform != "cpu" else None
        return stats["bytes_limit"] if stats else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, KeyError, AttributeError, TypeError):
        return None


def warn_user(message: str, category=DeprecationWarning) -> None:
    """``warnings.warn`` attributed to the first frame outside this package (the user's call),
    however deep inside dmft_jax it is raised (``solve``, ``solve_grid`` and ``tune`` reach the
    same check at different depths)."""
    import os
    import sys
    import warnings

    here = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 2  # stacklevel 2 is the caller of warn_user
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(here + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _shown(x, short: int = 8):
    """A leaf as it should read in a repr: a concrete scalar as its number, a short concrete
    array as its list, anything else (long arrays, tracers) as it is."""
    if isinstance(x, (jax.Array, np.ndarray, np.generic)) and not isinstance(x, jax.core.Tracer):
        a = np.asarray(x)
        if a.size > short:
            return x
        # numpy's shortest repr of each number (a float32 0.01 reads 0.01, not 0.009999999776)
        exact = lambda v: float(str(v)) if a.dtype.kind == "f" else v.item()
        return exact(a[()]) if a.ndim == 0 else np.array([exact(v) for v in a.ravel()], dtype=object).reshape(a.shape).tolist()
    return x


class _Text:
    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def value_repr(module) -> str:
    """``Problem(model=TwoCluster(rho=0.5), loss=Logistic(), alpha=2.0, ...)``: an equinox
    module's repr with the values of its scalars and short arrays (equinox's own repr shows
    ``f32[]``); long arrays and traced values keep their shape summary."""
    import equinox as eqx

    compact = lambda x: getattr(type(x), "compact_repr", False)  # e.g. a Result: its own short repr
    leaf = lambda x: _Text(repr(x)) if compact(x) else _shown(x)
    try:
        shown = jax.tree_util.tree_map(leaf, module, is_leaf=compact)
    except Exception:  # a leaf that cannot be read (a deleted buffer): equinox's own repr
        return eqx.tree_pformat(module)
    return eqx.tree_pformat(shown, short_arrays=True)
