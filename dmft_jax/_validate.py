"""Input validation that names the parameter and the valid range.

Checks run only on concrete values: inside ``jit``/``vmap``/``grad`` the leaves are
tracers and are left alone (validate before transforming, e.g. by building the
``Problem`` outside the transformed function).
"""
from __future__ import annotations

import numpy as np
import jax


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check(name: str, value, ok, valid: str):
    """Raise ``ValueError`` unless ``ok(value)`` holds elementwise and ``value`` is finite.

    ``ok`` maps a numpy array to a boolean array; ``valid`` describes the valid range.
    """
    if not is_concrete(value):
        return
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite ({valid}); got {value!r}")
    if not np.all(ok(arr)):
        raise ValueError(f"{name} must satisfy {valid}; got {value!r}")


def positive(name, value):
    check(name, value, lambda a: a > 0, f"{name} > 0")


def nonnegative(name, value):
    check(name, value, lambda a: a >= 0, f"{name} >= 0")


def in_unit_interval(name, value, *, open_left=True, open_right=False):
    lo = "<" if open_left else "<="
    hi = "<" if open_right else "<="
    def ok(a):
        left = a > 0 if open_left else a >= 0
        right = a < 1 if open_right else a <= 1
        return left & right
    check(name, value, ok, f"0 {lo} {name} {hi} 1")


def as_float_array(x):
    """Convert a Python/numpy scalar to a jax array with the default float dtype."""
    import jax.numpy as jnp
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
        return x
    return jnp.asarray(x, dtype=jnp.result_type(float))
