"""JAX's persistent compilation cache for dmft-jax: a second process pays no compile for
sizes it has seen (the compiled sweep is looked up on disk instead of rebuilt).

On by default in the command line (``--no-cache`` turns it off); in Python one call,
:func:`enable_compilation_cache`, before the first solve. It also turns on the trace cache
(below): the lowered programs of :func:`dmft_jax.solve`, so that a new process neither traces
nor compiles a solve it has seen. The cache lives in
``$DMFT_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/dmft_jax/jax``, else
``~/.cache/dmft_jax/jax``; it is safe to delete.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np


def default_cache_dir() -> Path:
    """Where :func:`enable_compilation_cache` keeps compiled programs by default."""
    if os.environ.get("DMFT_JAX_CACHE_DIR"):
        return Path(os.environ["DMFT_JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmft_jax" / "jax"


def enable_compilation_cache(path=None, *, min_compile_time_secs: float = 1.0, trace_cache: bool = True) -> Path:
    """Turn on JAX's on-disk compilation cache in ``path`` (default :func:`default_cache_dir`)
    for programs that took at least ``min_compile_time_secs`` to compile; returns the folder.

    With ``trace_cache`` (default), the lowered programs of :func:`dmft_jax.solve` are kept
    too, in ``path / "exported"``, so that a new process skips tracing as well as compiling
    (section "The trace cache" of this module)."""
    if not isinstance(trace_cache, (bool, np.bool_)):
        raise ValueError(f"trace_cache must be True or False; got {trace_cache!r}")
    path = Path(default_cache_dir() if path is None else path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"path: cannot create the compilation cache folder {path} ({err})") from None
    if not min_compile_time_secs >= 0:
        raise ValueError(f"min_compile_time_secs must be >= 0; got {min_compile_time_secs}")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if trace_cache:
        enable_trace_cache(path / "exported")
    else:
        disable_trace_cache()
    return path


def disable_compilation_cache() -> None:
    """Turn the on-disk cache off again (programs already compiled in this process stay)."""
    jax.config.update("jax_compilation_cache_dir", None)
    disable_trace_cache()


# --- The trace cache: serialized programs, so that a warm process skips tracing and lowering -----
#
# JAX's compilation cache saves the XLA compile, but a new process still traces the sweep and
# lowers it to StableHLO before it can look the compiled program up: about 0.45 s of a warm
# first solve on a 2-core CPU. With the trace cache on, the first process also writes the
# lowered program (``jax.export``, a few tens of kB) under a key that names everything the
# program depends on; a later process with the same key reads it, and only the (cached)
# compile remains. A key changes with any source file of dmft_jax, the versions of JAX,
# jaxlib and equinox, JAX's configuration, the backend and its devices, and the static part
# and array shapes/dtypes of the arguments. An argument holding a function or class defined
# outside dmft_jax, JAX, equinox, NumPy or the standard library (a user's loss or teacher) is
# not keyed on its code, so such solves bypass the trace cache.

import hashlib  # noqa: E402
import io as _io  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import uuid  # noqa: E402

import equinox as eqx  # noqa: E402

_TRACES = {"dir": None}
_MEMO: dict = {}  # key -> (jitted call of the exported program, output tree), or None: not exportable
_SAFE_ROOTS = {"dmft_jax", "jax", "jaxlib", "equinox", "numpy", "builtins", "math", "functools", "operator",
               "collections", "dataclasses", "enum", "typing", "abc"}
_UNKEYED_OPTIONS = ("jax_log_compiles", "jax_explain_cache_misses", "jax_compilation_cache_dir",
                    "jax_enable_compilation_cache", "jax_traceback_filtering", "jax_raise_persistent_cache_errors")
_FORMAT = 1


class _Unkeyable(Exception):
    pass


class _SafeUnpickler(pickle.Unpickler):
    """Loads only classes and functions of the libraries the key covers (a file planted in a
    shared cache folder cannot name anything else to run)."""

    def find_class(self, module, name):
        if module.split(".")[0] not in _SAFE_ROOTS - {"builtins"} and not (
                module == "builtins" and name in ("tuple", "list", "dict", "set", "frozenset", "slice", "complex",
                                                  "bytearray", "range")):
            raise pickle.UnpicklingError(f"{module}.{name} is not loaded from the trace cache")
        return super().find_class(module, name)


class _KeyPickler(pickle.Pickler):
    """Pickles a description of the arguments; refuses functions and classes from outside the
    libraries whose code the key covers (their code could change under the same name)."""

    def reducer_override(self, obj):
        if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)) \
                or callable(obj) and hasattr(obj, "__module__") and not hasattr(obj, "__dataclass_fields__"):
            module = getattr(obj, "__module__", None) or ""
            if module.split(".")[0] not in _SAFE_ROOTS:
                raise _Unkeyable(f"{obj!r} is defined in {module or 'an unknown module'}")
        return NotImplemented


def _digest_sources():
    """The hash of every source file of the package, taken when it is imported (the code that
    runs), or ``None`` when there are no source files to hash (then nothing is cached)."""
    files = sorted(Path(__file__).parent.rglob("*.py"))
    if not files:
        return None
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(Path(__file__).parent)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


_SOURCES = _digest_sources()


def _source_digest():
    if _SOURCES is None:
        raise _Unkeyable("no source files of dmft_jax to key on")
    return _SOURCES


def _environment():
    import jaxlib

    options = sorted((k, repr(v)) for k, v in jax.config.values.items()
                     if k not in _UNKEYED_OPTIONS and not k.startswith("jax_persistent_cache"))
    devices = [(d.platform, d.device_kind, d.id) for d in jax.devices()]
    from . import __version__

    return (_FORMAT, _source_digest(), __version__, jax.__version__, jaxlib.__version__, eqx.__version__, sys.version_info[:2],
            options, devices)


def _mark(x):
    return ("array", tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)))


def _key(args, fn=None) -> str:
    marked = jax.tree_util.tree_map(lambda x: _mark(x) if eqx.is_array(x) else x, args)
    buf = _io.BytesIO()
    _KeyPickler(buf, protocol=4).dump((_environment(), fn, marked))
    return hashlib.sha256(buf.getvalue()).hexdigest()


def enable_trace_cache(path) -> None:
    """Keep the lowered programs of :func:`dmft_jax.solve` in ``path`` (the notes above);
    :func:`enable_compilation_cache` calls it by default."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"path: cannot create the trace cache folder {path} ({err})") from None
    try:  # calling a saved CPU program first loads the LAPACK kernels (0.1-0.15 s, scipy's
        # import); do it here, once, rather than inside the first solve
        from jax._src.lax import linalg as _linalg

        _linalg.initialize_lapack()
    except Exception:  # noqa: BLE001 (an internal of JAX: without it the first solve pays)
        pass
    _TRACES["dir"] = path


def disable_trace_cache() -> None:
    _TRACES["dir"] = None


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)  # readers see the whole file or none
    except OSError:
        tmp.unlink(missing_ok=True)


def _jitted(exported, name: str):
    def run(*leaves):
        return exported.call(*leaves)

    run.__name__ = run.__qualname__ = f"{name}_saved"  # what count_compilations and logs show
    return jax.jit(run)


def _load(path: Path, name: str):
    try:
        blob = _SafeUnpickler(_io.BytesIO(path.read_bytes())).load()
        exported = jax.export.deserialize(bytearray(blob["exported"]))
        return _jitted(exported, name), jax.tree_util.tree_structure(blob["skeleton"])
    except Exception:  # a damaged or foreign file is a miss: it is rewritten below
        return None


def _export(fn, args, path: Path):
    dyn, static = eqx.partition(args, eqx.is_array)
    flat, tree = jax.tree_util.tree_flatten(dyn)
    out_tree = []

    def core(*leaves):
        out = fn(*eqx.combine(jax.tree_util.tree_unflatten(tree, leaves), static))
        out_leaves, treedef = jax.tree_util.tree_flatten(out)
        out_tree.append(treedef)
        return out_leaves

    try:
        exported = jax.export.export(jax.jit(core))(*flat)
        skeleton = jax.tree_util.tree_unflatten(out_tree[0], list(range(out_tree[0].num_leaves)))
        buf = _io.BytesIO()
        _KeyPickler(buf, protocol=4).dump({"exported": bytes(exported.serialize()), "skeleton": skeleton})
    except Exception:  # host callbacks, extended dtypes, unpicklable results: not cached
        return None
    _write_atomic(path, buf.getvalue())
    return _jitted(exported, fn.__name__), out_tree[0]


def cached_call(fn, jitted, args):
    """``jitted(*args)``, through the trace cache when it is on and every array in ``args`` is
    concrete; ``fn`` is the un-jitted function of the same arguments."""
    folder = _TRACES["dir"]
    leaves = jax.tree_util.tree_leaves(args)
    if folder is None or jax.config.jax_disable_jit or any(isinstance(x, jax.core.Tracer) for x in leaves):
        return jitted(*args)
    try:
        key = _key(args, fn)
    except (_Unkeyable, pickle.PicklingError, TypeError, AttributeError):
        return jitted(*args)
    if key not in _MEMO:
        path = folder / f"{key}.exported"
        _MEMO[key] = (_load(path, fn.__name__) if path.exists() else None) or _export(fn, args, path)
    if _MEMO[key] is None:
        return jitted(*args)
    call, out_tree = _MEMO[key]
    return jax.tree_util.tree_unflatten(out_tree, call(*[x for x in leaves if eqx.is_array(x)]))


def known(tag: str, obj) -> bool:
    """Whether :func:`record` noted ``obj`` under ``tag`` in the trace cache (a check that
    passed in an earlier process with the same key); ``False`` when the cache is off."""
    folder = _TRACES["dir"]
    if folder is None or _has_arrays(obj):  # the key holds an array's shape, not its values
        return False
    try:
        return (folder / f"{_key((tag, obj))}.{tag}").exists()
    except (_Unkeyable, pickle.PicklingError, TypeError, AttributeError):
        return False


def record(tag: str, obj) -> None:
    """Note in the trace cache that ``obj`` passed the check ``tag`` (no-op when it is off)."""
    folder = _TRACES["dir"]
    if folder is not None and not _has_arrays(obj):
        try:
            _write_atomic(folder / f"{_key((tag, obj))}.{tag}", b"")
        except (_Unkeyable, pickle.PicklingError, TypeError, AttributeError):
            pass


def _has_arrays(obj) -> bool:
    return any(eqx.is_array(x) for x in jax.tree_util.tree_leaves(obj))
