"""The trace cache: serialized programs, so that a warm process skips tracing and lowering.

JAX's compilation cache saves the XLA compile, but a new process still traces the sweep and
lowers it to StableHLO before it can look the compiled program up: about 0.45 s of a warm
first solve on a 2-core CPU. With the trace cache on, the first process also writes the
lowered program (``jax.export``, a few tens of kB) under a key that names everything the
program depends on; a later process with the same key reads it, and only the (cached)
compile remains. A key changes with any source file of dmft_jax, the versions of JAX,
jaxlib and equinox, JAX's configuration, the backend and its devices, and the static part
and array shapes/dtypes of the arguments. An argument holding a function or class defined
outside dmft_jax, JAX, equinox, NumPy or the standard library (a user's loss or teacher) is
not keyed on its code, so such solves bypass the trace cache.

Trust model (docs/equations.md, section 8.1). Nothing read from the folder can run Python
code: an entry is a fixed binary layout (magic, a JSON header, jax.export's own serialized
bytes), never a pickle. Before use an entry must prove that it belongs where it lies: its
header names its format, its key (equal to the file's name and to the key computed now) and
the SHA-256 and size of its program; the program's custom calls must all be among those JAX
guarantees stable (no host callbacks); the output's tree is rebuilt only from dmft_jax
classes already imported, field by field. Only regular files of bounded size are opened (no
FIFO, symbolic link or device). A file that fails any check is ignored with a
CacheWarning naming it and the check, and replaced by a fresh entry. What a hash without a
secret cannot prove is who wrote an entry: a person who can write the folder can plant a
well-formed program that computes other numbers. Hence the folder-permission check of
``enable_compilation_cache`` (a folder writable by other users is refused unless
``shared=True``), which also guards JAX's own compiled programs (machine code) beside it.
"""
from __future__ import annotations

import hashlib
import io as _io
import pickle  # used to *describe* arguments for the key; nothing is unpickled
import sys
import types
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from .entry import (FORMAT, LEAF, CacheWarning, Rejected, check_inputs, check_private, check_signature,
                          custom_calls_allowed, decode, encode, ignored, pack, read_regular, unpack, write_atomic)

__all__ = ["CacheWarning", "cached_call", "disable_trace_cache", "enable_trace_cache", "known", "record"]

_TRACES = {"dir": None}
_MEMO: dict = {}  # key -> (jitted call of the exported program, output tree), or None: not exportable
_SAFE_ROOTS = {"dmft_jax", "jax", "jaxlib", "equinox", "numpy", "builtins", "math", "functools", "operator",
               "collections", "dataclasses", "enum", "typing", "abc"}
_UNKEYED_OPTIONS = ("jax_log_compiles", "jax_explain_cache_misses", "jax_compilation_cache_dir",
                    "jax_enable_compilation_cache", "jax_traceback_filtering", "jax_raise_persistent_cache_errors")


class _Unkeyable(Exception):
    pass


class _KeyPickler(pickle.Pickler):
    """Pickles a description of the arguments, to hash it (it is never unpickled); refuses
    functions and classes from outside the libraries whose code the key covers (their code could
    change under the same name)."""

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
    from .._version import __version__

    return (FORMAT, _source_digest(), __version__, jax.__version__, jaxlib.__version__, eqx.__version__, sys.version_info[:2],
            options, devices)


def _mark(x):
    return ("array", tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)))


def _key(args, fn=None) -> str:
    marked = jax.tree_util.tree_map(lambda x: _mark(x) if eqx.is_array(x) else x, args)
    buf = _io.BytesIO()
    _KeyPickler(buf, protocol=4).dump((_environment(), fn, marked))
    return hashlib.sha256(buf.getvalue()).hexdigest()


def enable_trace_cache(path, *, shared: bool = False) -> None:
    """Keep the lowered programs of :func:`dmft_jax.solve` in ``path`` (the notes above);
    :func:`enable_compilation_cache` calls it by default. ``shared``: as there (a folder others
    can write is refused unless ``shared=True``)."""
    if not isinstance(shared, (bool, np.bool_)):
        raise ValueError(f"shared must be True or False; got {shared!r}")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise ValueError(f"path: cannot create the trace cache folder {path} ({err})") from None
    if not shared:
        check_private(path)
    try:  # calling a saved CPU program first loads the LAPACK kernels (0.1-0.15 s, scipy's
        # import); do it here, once, rather than inside the first solve
        from jax._src.lax import linalg as _linalg

        _linalg.initialize_lapack()
    except Exception:  # noqa: BLE001 (an internal of JAX: without it the first solve pays)
        pass
    _TRACES["dir"] = path


def disable_trace_cache() -> None:
    _TRACES["dir"] = None


def _jitted(exported, name: str):
    def run(*leaves):
        return exported.call(*leaves)

    run.__name__ = run.__qualname__ = f"{name}_saved"  # what count_compilations and logs show
    return jax.jit(run)


def _load(path: Path, key: str, name: str, leaves):
    """The saved program of ``key`` (a jitted call and the output tree), ``None`` when there is
    none, or ``None`` with a :class:`CacheWarning` when the file fails a check. ``leaves``: the
    arrays the program will be called with."""
    try:
        data = read_regular(path)
        if data is None:
            return None
        header, payload = unpack(data, key, "program")
        check_signature(payload)
        try:
            exported = jax.export.deserialize(bytearray(payload))
        except Exception:  # noqa: BLE001 (the hash matched, so this is another version's bytes)
            raise Rejected("the program cannot be read by this JAX") from None
        custom_calls_allowed(exported)
        check_inputs(exported, leaves)
        out_tree = jax.tree_util.tree_structure(decode(header.get("out_tree")),
                                                is_leaf=lambda x: x is LEAF)
        if out_tree.num_leaves != len(exported.out_avals):
            raise Rejected("the program's outputs do not match its output tree")
        return _jitted(exported, name), out_tree
    except Rejected as err:
        ignored(path, str(err))
        return None
    except RecursionError:
        ignored(path, "output tree nested too deeply")
        return None


def _export(fn, args, path: Path, key: str):
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
        skeleton = jax.tree_util.tree_unflatten(out_tree[0], [LEAF] * out_tree[0].num_leaves)
        encoded = encode(skeleton)
        # what is written must read back as the same tree (else it is not cached)
        if jax.tree_util.tree_structure(decode(encoded), is_leaf=lambda x: x is LEAF) != out_tree[0]:
            return None
        payload = bytes(exported.serialize())
    except Exception:  # host callbacks, extended dtypes, results outside the encoding: not cached
        return None
    write_atomic(path, pack({"key": key, "kind": "program", "function": fn.__name__,
                               "out_tree": encoded}, payload))
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
    arrays = [x for x in leaves if eqx.is_array(x)]
    path = folder / f"{key}.exported"
    if key not in _MEMO:
        loaded = _load(path, key, fn.__name__, arrays)
        if loaded is not None:  # a first call proves the program runs and fits its tree
            try:
                return _remember(key, loaded, arrays)
            except Exception as err:  # noqa: BLE001 (a forged entry; the numbers come from a fresh trace)
                ignored(path, f"it fails when run ({type(err).__name__})")
        _MEMO[key] = _export(fn, args, path, key)
    if _MEMO[key] is None:
        return jitted(*args)
    call, out_tree = _MEMO[key]
    return jax.tree_util.tree_unflatten(out_tree, call(*arrays))


def _remember(key, loaded, arrays):
    call, out_tree = loaded
    out = jax.tree_util.tree_unflatten(out_tree, call(*arrays))
    _MEMO[key] = loaded
    return out


def known(tag: str, obj) -> bool:
    """Whether :func:`record` noted ``obj`` under ``tag`` in the trace cache (a check that
    passed in an earlier process with the same key); ``False`` when the cache is off. A marker
    must name its key, its tag and the check's verdict (an empty or foreign file is ignored
    with a :class:`CacheWarning`)."""
    folder = _TRACES["dir"]
    if folder is None or _has_arrays(obj):  # the key holds an array's shape, not its values
        return False
    try:
        key = _key((tag, obj))
    except (_Unkeyable, pickle.PicklingError, TypeError, AttributeError):
        return False
    path = folder / f"{key}.{tag}"
    try:
        data = read_regular(path)
        if data is None:
            return False
        header, payload = unpack(data, key, tag)
        if header.get("verdict") != "passed" or payload:
            raise Rejected("it records no passed check")
        return True
    except Rejected as err:
        ignored(path, str(err))
        return False


def record(tag: str, obj) -> None:
    """Note in the trace cache that ``obj`` passed the check ``tag`` (no-op when it is off)."""
    folder = _TRACES["dir"]
    if folder is not None and not _has_arrays(obj):
        try:
            key = _key((tag, obj))
        except (_Unkeyable, pickle.PicklingError, TypeError, AttributeError):
            return
        write_atomic(folder / f"{key}.{tag}", pack({"key": key, "kind": tag, "verdict": "passed"}, b""))


def _has_arrays(obj) -> bool:
    return any(eqx.is_array(x) for x in jax.tree_util.tree_leaves(obj))
