"""Input validation that names the parameter and the valid range.

Concrete values are checked when objects are built (``ValueError`` naming the parameter).
Inside ``jit``/``vmap``/``grad`` the leaves are tracers: there the same checks are
*collected* instead (:func:`collect`), as traced predicates that the compiled solve turns
into a failed ``result`` per point, naming the first check that failed.
"""
from __future__ import annotations

import contextlib
import numbers
import threading

import jax
import jax.numpy as jnp
import numpy as np

class _Local(threading.local):
    def __init__(self):
        self.collectors = []


_STATE = _Local()  # per thread: traces in several threads do not mix their checks


def is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def checkable(*xs) -> bool:
    """True when checks on ``xs`` can run now: all concrete, or traced while collecting."""
    return bool(_STATE.collectors) or all(is_concrete(x) for x in xs)


@contextlib.contextmanager
def collect():
    """Within the block, checks of traced values append ``(description, predicate)`` to the
    yielded list instead of being skipped (concrete values still raise)."""
    found: list = []
    _STATE.collectors.append(found)
    try:
        yield found
    finally:
        _STATE.collectors.pop()


def _shown(x) -> str:
    """A value as a person reads it: ``0.1``, ``[0.3, 1.5]`` (not ``Array(0.1, dtype=...)``)."""
    try:
        arr = np.asarray(x)
    except Exception:
        return repr(x)
    if arr.dtype.kind in "fiub":
        if arr.ndim == 0:
            return f"{arr.item():g}" if arr.dtype.kind == "f" else repr(arr.item())
        vals = arr.ravel()[:8].tolist()
        return repr(vals)[:-1] + (", ...]" if arr.size > 8 else "]")
    return repr(x)


def check(name: str, value, ok, valid: str, shown=None):
    """Raise ``ValueError`` unless ``ok(value)`` holds elementwise and ``value`` is finite.

    ``ok`` maps an array to a boolean array; ``valid`` describes the valid range; ``shown``
    is the value quoted in the message (default ``value``; give the parameter itself when
    ``value`` is derived from it). A traced ``value`` is recorded in the active
    :func:`collect` block (or left alone outside one).
    """
    shown = value if shown is None else shown
    if not is_concrete(value):
        if _STATE.collectors:
            v = jnp.asarray(value)
            _STATE.collectors[-1].append((f"{name}: {valid}", jnp.all(jnp.isfinite(v)) & jnp.all(ok(v))))
        return
    if not _is_number(value):  # '1' converts to 1.0: a string must not pass for a number
        raise ValueError(f"{name} must be a real number ({valid}); got {shown!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number ({valid}); got {shown!r}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite ({valid}); got {_shown(shown)}")
    if not np.all(ok(arr)):
        raise ValueError(f"{name} must satisfy {valid}; got {_shown(shown)}")


def _is_number(value) -> bool:
    """A real number or an array of them (not a string, a flag, None, a complex number)."""
    if isinstance(value, (str, bytes, bool, np.bool_, complex)) or value is None:
        return False
    if isinstance(value, (numbers.Real, jax.Array)):
        return not (hasattr(value, "dtype") and (value.dtype == bool or jnp.iscomplexobj(value)))
    try:
        arr = np.asarray(value)
    except Exception:
        return False
    return np.issubdtype(arr.dtype, np.number) and not np.iscomplexobj(arr)


def numbers_only(obj) -> None:
    """Every numeric field of ``obj`` (a loss, model, read-out, schedule or algorithm: its
    dataclass fields that are neither static, ``None``, objects nor functions) holds a real
    number or an array of them: a string such as ``'1'``, a flag or ``None`` where a number
    belongs is refused by name when the object is built (it failed later inside the solve)."""
    import dataclasses

    import equinox as eqx

    for f in dataclasses.fields(obj):
        declared = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if f.metadata.get("static", False) or any(w in declared for w in ("str", "bool", "Callable")):
            continue  # an extension's field declared as text, a flag or a function is not a number
        value = getattr(obj, f.name, None)
        if value is None or isinstance(value, (eqx.Module, jax.core.Tracer)) \
                or (callable(value) and not hasattr(value, "dtype")):
            continue
        if not _is_number(value):
            raise ValueError(f"{f.name} must be a real number (or an array of them); got {value!r}")


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


def as_float_array(x, name: str = "value"):
    """Convert a number to a jax array with the default float dtype; anything that is not a
    real number (a string, None, a complex number) is refused with ``ValueError`` naming
    ``name``."""
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
        return x
    if isinstance(x, (str, bytes)) or x is None or isinstance(x, complex):
        raise ValueError(f"{name} must be a real number; got {x!r}")
    if isinstance(x, jax.core.Tracer):
        return x.astype(jnp.result_type(float)) if not jnp.issubdtype(x.dtype, jnp.floating) else x
    try:
        arr = np.asarray(x)
    except Exception:
        raise ValueError(f"{name} must be a real number; got {x!r}") from None
    if arr.dtype == bool:  # a flag is not a value: Problem(bias=False) would start a bias at 0
        raise ValueError(f"{name} must be a real number, not a flag; got {x!r}"
                         + (" (no bias is bias=None)" if name == "bias" else ""))
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be a real number; got {x!r}")
    return jnp.asarray(arr, dtype=jnp.result_type(float))


def scalar(name: str, value):
    """Refuse an array where a number is expected (outside ``vmap``)."""
    if is_concrete(value) and np.ndim(value) != 0:
        raise ValueError(f"{name} must be a single number (use jax.vmap or dmft_jax.solve_grid for several); "
                         f"got an array of shape {np.shape(value)}")


def modules(*roots):
    """``(path, module)`` for every equinox Module of ``roots`` and, depth first, of their
    non-static fields (a problem's model and loss, a committee's read-out, an algorithm's
    schedules): the objects whose construction checks and numeric fields a solve checks again
    (``path`` is ``""`` for a root, else the dotted field names and a final dot)."""
    import dataclasses

    import equinox as eqx

    seen, out = set(), []

    def walk(obj, path):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        out.append((path, obj))
        for f in dataclasses.fields(obj):
            if not f.metadata.get("static", False):
                value = getattr(obj, f.name, None)
                if isinstance(value, eqx.Module):
                    walk(value, f"{path}{f.name}.")

    for root in roots:
        walk(root, "")
    return out


def numeric_fields(obj) -> list:
    """``(name, value)`` of ``obj``'s numeric fields: dataclass fields (not class variables),
    not static, holding a number or an array (not a flag, an object or a function)."""
    import dataclasses

    import equinox as eqx

    out = []
    for f in dataclasses.fields(obj):
        if f.metadata.get("static", False):
            continue
        value = getattr(obj, f.name, None)
        if value is None or isinstance(value, (eqx.Module, bool, np.bool_, str, bytes)) \
                or (callable(value) and not hasattr(value, "dtype")) or not eqx.is_array_like(value):
            continue
        out.append((f.name, value))
    return out


def scalar_fields(*roots) -> None:
    """Every numeric field of ``roots`` and their sub-objects (:func:`modules`) is a single
    number outside ``vmap``, save those a class lists in its ``vector_fields`` (a committee's
    ``m0``, a piecewise schedule's ``values``): an array where a number belongs is refused by
    name, pointing to ``jax.vmap`` and ``dmft_jax.solve_grid`` for batches (it failed with a
    broadcasting error inside the solve)."""
    for path, obj in modules(*roots):
        vector = getattr(type(obj), "vector_fields", ())
        for name, value in numeric_fields(obj):
            if name not in vector:
                scalar(path + name, value)


def flag(name: str, value) -> bool:
    """``value`` as a bool: only ``True`` or ``False`` (a string such as ``'no'`` is truthy and
    would switch the option on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def integer(name: str, value, lo: int):
    """``value`` as an ``int >= lo`` (a float like 2.5 or a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    return int(value)


def function_of(name: str, fn, arity: int, what: str) -> None:
    """Refuse ``fn`` unless it is a function that can be called with ``arity`` positional
    arguments (``what`` says which, e.g. "one argument, the teacher field nu"): a wrong
    signature is named as such, not as a tracing failure. Functions whose signature Python
    cannot read (some built-ins) pass here and are tried by their callers."""
    import inspect

    if not callable(fn):
        raise ValueError(f"{name} must be a function of {what}; got {fn!r}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*range(arity))
    except TypeError as err:
        label = getattr(fn, "__name__", type(fn).__name__)
        raise ValueError(f"{name} must be a function of {what}; {label}{sig} cannot be called that way ({err})") \
            from None


def float_field(name: str, **kwargs):
    """An ``eqx.field`` converting its value by :func:`as_float_array` (errors name ``name``)."""
    import equinox as eqx

    return eqx.field(converter=lambda x: as_float_array(x, name), **kwargs)


def run_checks(obj):
    """Every ``__check_init__`` of ``obj``'s classes, as equinox runs them at construction.
    Inside a trace, a check written with plain Python comparisons (not
    :func:`dmft_jax.check_parameter`) cannot run on traced values: it is skipped there (it ran
    when the object was built)."""
    for cls in type(obj).__mro__:
        if "__check_init__" in vars(cls):
            try:
                vars(cls)["__check_init__"](obj)
            except (jax.errors.TracerBoolConversionError, jax.errors.ConcretizationTypeError,
                    jax.errors.TracerArrayConversionError, jax.errors.TracerIntegerConversionError):
                pass


def poison(valid, x):
    """``x`` where ``valid``, else NaN, and NaN in every derivative of it too (``jnp.where`` would
    give an invalid point a zero gradient, which an optimiser reads as a stationary point)."""
    return x * jnp.where(valid, 1.0, jnp.nan).astype(x.dtype)


def recheck(*roots) -> None:
    """The construction checks of every object of ``roots`` (:func:`modules`) run again now:
    a value set by ``eqx.tree_at`` (which skips them), such as ``lam = NaN``, is refused by
    name here when it is concrete; traced values are left to :func:`object_checks`."""
    for _, obj in modules(*roots):
        run_checks(obj)


def object_checks(*roots):
    """The construction checks of every object of ``roots`` as traced predicates (their traced
    twins): ``(descriptions, all hold, index of the first that fails or -1)``."""
    with collect() as found:
        for _, obj in modules(*roots):
            run_checks(obj)
    return _verdict(found)


def _verdict(found):
    if not found:
        return (), jnp.asarray(True), jnp.asarray(-1)
    ok = jnp.stack([p for _, p in found])
    first_bad = jnp.where(jnp.all(ok), -1, jnp.argmin(ok))
    return tuple(d for d, _ in found), jnp.all(ok), first_bad


def traced_checks(problem, algorithm, n_steps):
    """The parameter checks of ``problem`` (a problem or a committee) and ``algorithm`` and of
    every object inside them (:func:`modules`: the model, the loss, a read-out, schedules), each
    construction check's traced twin, as traced predicates (inside the
    compiled program, where values set by ``vmap`` or ``eqx.tree_at`` were never checked).
    Returns the checks' descriptions (static), whether all hold, and the index of the first
    that fails (-1 if none)."""
    with collect() as found:
        for _, obj in modules(problem, algorithm):  # the read-out, the loss, schedules: every object
            run_checks(obj)
        steps = algorithm.step_sizes(n_steps)
        check("eta", steps, lambda a: a > 0, "eta_k > 0 at every step")
        algorithm.check_steps(steps)
    return _verdict(found)
