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

import dataclasses
import os
import stat
from pathlib import Path

import jax
import numpy as np


def default_cache_dir() -> Path:
    """Where :func:`enable_compilation_cache` keeps compiled programs by default."""
    if os.environ.get("DMFT_JAX_CACHE_DIR"):
        return Path(os.environ["DMFT_JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmft_jax" / "jax"


def enable_compilation_cache(path=None, *, min_compile_time_secs: float = 1.0, trace_cache: bool = True,
                             shared: bool = False) -> Path:
    """Turn on JAX's on-disk compilation cache in ``path`` (default :func:`default_cache_dir`)
    for programs that took at least ``min_compile_time_secs`` to compile; returns the folder.

    With ``trace_cache`` (default), the lowered programs of :func:`dmft_jax.solve` are kept
    too, in ``path / "exported"``, so that a new process skips tracing as well as compiling
    (section "The trace cache" of this module).

    The folder holds compiled programs (machine code, run as they are) and lowered programs:
    whoever can write it decides what a solve computes. A folder owned by another user, or
    writable by the group or by everyone, is refused (``ValueError``) unless ``shared=True``
    says that everyone who can write it is trusted (docs/equations.md, section 8.1)."""
    for name, flag in (("trace_cache", trace_cache), ("shared", shared)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False; got {flag!r}")
    path = Path(default_cache_dir() if path is None else path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # private whatever the umask
    except OSError as err:
        raise ValueError(f"path: cannot create the compilation cache folder {path} ({err})") from None
    if not shared:
        check_private(path)
    if not min_compile_time_secs >= 0:
        raise ValueError(f"min_compile_time_secs must be >= 0; got {min_compile_time_secs}")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if trace_cache:
        enable_trace_cache(path / "exported", shared=shared)
    else:
        disable_trace_cache()
    return path


def check_private(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` (a folder) is owned by this user and writable by
    no one else: a file planted there would be run by the next solve."""
    st = os.stat(path)
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ValueError(f"path: the cache folder {path} belongs to another user (uid {st.st_uid}); programs "
                         "planted there would run in your solves. Use a folder of your own, or shared=True if "
                         "everyone who can write it is trusted")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ValueError(f"path: the cache folder {path} is writable by other users (mode "
                         f"{stat.S_IMODE(st.st_mode):o}); programs planted there would run in your solves. "
                         "Use a private folder (chmod go-w), or shared=True if everyone who can write it is trusted")


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
#
# Trust model (docs/equations.md, section 8.1). Nothing read from the folder can run Python
# code: an entry is a fixed binary layout (magic, a JSON header, jax.export's own serialized
# bytes), never a pickle. Before use an entry must prove that it belongs where it lies: its
# header names its format, its key (equal to the file's name and to the key computed now) and
# the SHA-256 and size of its program; the program's custom calls must all be among those JAX
# guarantees stable (no host callbacks); the output's tree is rebuilt only from dmft_jax
# classes already imported, field by field. Only regular files of bounded size are opened (no
# FIFO, symbolic link or device). A file that fails any check is ignored with a
# CacheWarning naming it and the check, and replaced by a fresh entry. What a hash without a
# secret cannot prove is who wrote an entry: a person who can write the folder can plant a
# well-formed program that computes other numbers. Hence the folder-permission check of
# ``enable_compilation_cache`` (a folder writable by other users is refused unless
# ``shared=True``), which also guards JAX's own compiled programs (machine code) beside it.

import hashlib  # noqa: E402
import io as _io  # noqa: E402
import json  # noqa: E402
import pickle  # noqa: E402  (used to *describe* arguments for the key; nothing is unpickled)
import re  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import uuid  # noqa: E402
import warnings  # noqa: E402

import equinox as eqx  # noqa: E402

_TRACES = {"dir": None}
_MEMO: dict = {}  # key -> (jitted call of the exported program, output tree), or None: not exportable
_SAFE_ROOTS = {"dmft_jax", "jax", "jaxlib", "equinox", "numpy", "builtins", "math", "functools", "operator",
               "collections", "dataclasses", "enum", "typing", "abc"}
_UNKEYED_OPTIONS = ("jax_log_compiles", "jax_explain_cache_misses", "jax_compilation_cache_dir",
                    "jax_enable_compilation_cache", "jax_traceback_filtering", "jax_raise_persistent_cache_errors")
_FORMAT = 2
_MAGIC = b"DMFT-JAX trace cache\n"
_MAX_BYTES = 64 * 2**20  # an entry larger than this is not read (programs are tens of kB)
_MAX_HEADER = 2**20


class CacheWarning(UserWarning):
    """A file in the trace cache was ignored (it failed a check; the message names it)."""


class _Unkeyable(Exception):
    pass


class _Rejected(Exception):
    """A cache file that fails a check (the message says which)."""


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


# --- the entry's layout: magic, 4-byte header length, JSON header, payload ---------------------

def _pack(header: dict, payload: bytes) -> bytes:
    header = dict(header, format=_FORMAT, payload_sha256=hashlib.sha256(payload).hexdigest(),
                  payload_size=len(payload))
    text = json.dumps(header, sort_keys=True, allow_nan=False).encode()
    return _MAGIC + struct.pack("<I", len(text)) + text + payload


def _unpack(data: bytes, key: str, kind: str):
    """The header and payload of an entry, after every check that needs no parsing of the
    payload; raises :class:`_Rejected` naming the failed check."""
    if not data.startswith(_MAGIC):
        raise _Rejected("not a dmft-jax trace cache entry (no magic bytes; another version's or a foreign file)")
    at = len(_MAGIC)
    if len(data) < at + 4:
        raise _Rejected("truncated header")
    (size,) = struct.unpack("<I", data[at:at + 4])
    if size > _MAX_HEADER or len(data) < at + 4 + size:
        raise _Rejected("truncated or oversized header")
    try:
        header = json.loads(data[at + 4:at + 4 + size].decode())
    except (UnicodeDecodeError, ValueError):
        raise _Rejected("header is not JSON") from None
    except RecursionError:
        raise _Rejected("header nested too deeply") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise _Rejected(f"format {header.get('format') if isinstance(header, dict) else '?'!r}, "
                        f"this version reads format {_FORMAT}")
    if header.get("key") != key or header.get("kind") != kind:
        raise _Rejected(f"it belongs to another key or kind ({header.get('key')!r}, {header.get('kind')!r})")
    payload = data[at + 4 + size:]
    if header.get("payload_size") != len(payload) or \
            header.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        raise _Rejected("its content does not match the hash in its header (truncated or altered)")
    return header, payload


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of at most ``_MAX_BYTES`` (``None`` if it
    does not exist); a FIFO, link, device or oversized file raises :class:`_Rejected` without
    being opened for reading (so nothing blocks or balloons)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:  # the folder became unreadable, a file, ...
        raise _Rejected(f"cannot be examined ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _Rejected("not a regular file (a link, FIFO or device is never read)")
    if st.st_size > _MAX_BYTES:
        raise _Rejected(f"larger than {_MAX_BYTES} bytes")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise _Rejected(f"cannot be opened ({err.strerror})") from None
    try:
        st = os.fstat(fd)  # the file opened is the file checked (no swap in between)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_BYTES:
            raise _Rejected("not a regular file of bounded size")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(_MAX_BYTES)
    finally:
        os.close(fd)


def _ignored(path: Path, reason: str) -> None:
    warnings.warn(f"dmft-jax trace cache: ignored {path} ({reason}); not used",
                  CacheWarning, stacklevel=4)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name[:80]}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)  # readers see the whole file or none; a link or FIFO there is replaced
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is gone or unwritable: nothing was written
            pass


# --- the output's tree, as JSON: plain values and dmft_jax classes only -------------------------

class _Leaf:
    """A placeholder for an array of the output."""


_LEAF = _Leaf()
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _encode(obj):
    """A JSON description of ``obj`` (the output skeleton); raises ``TypeError`` for anything
    but plain values, containers and instances of dmft_jax's dataclass-like classes."""
    if obj is _LEAF:
        return {"leaf": 1}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and type(obj) in (int, float):
        return {"float": repr(obj)} if type(obj) is float else obj
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return {type(obj).__name__: [_encode(x) for x in obj]}
    if type(obj) is dict and all(isinstance(k, str) for k in obj):
        return {"dict": [[k, _encode(v)] for k, v in obj.items()]}
    cls = type(obj)
    if cls.__module__.split(".")[0] == "dmft_jax" and _NAME.match(cls.__qualname__) and \
            hasattr(cls, "__dataclass_fields__"):
        fields = [f.name for f in dataclasses.fields(obj)]
        return {"object": [cls.__module__, cls.__qualname__], "fields": [[n, _encode(getattr(obj, n))]
                                                                         for n in fields]}
    raise TypeError(f"{cls.__qualname__} cannot be written to the trace cache")


def _decode(obj):
    """The inverse of :func:`_encode`. A class is looked up among dmft_jax's modules already
    imported (nothing is imported, no attribute path is followed) and rebuilt field by field
    without running its ``__init__``; anything else raises :class:`_Rejected`."""
    if obj is None or isinstance(obj, (bool, str, int)) and not isinstance(obj, float):
        return obj
    if not isinstance(obj, dict) or len(obj) not in (1, 2):
        raise _Rejected("malformed output tree")
    if obj.get("leaf") == 1 and len(obj) == 1:
        return _LEAF
    if "float" in obj and isinstance(obj["float"], str):
        try:
            return float(obj["float"])
        except ValueError:
            raise _Rejected("malformed number in the output tree") from None
    for name, kind in (("list", list), ("tuple", tuple)):
        if name in obj and isinstance(obj[name], list):
            return kind(_decode(x) for x in obj[name])
    if "dict" in obj and isinstance(obj["dict"], list):
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in obj["dict"]):
            raise _Rejected("malformed output tree")
        return {k: _decode(v) for k, v in obj["dict"]}
    if "object" in obj and isinstance(obj.get("fields"), list):
        ref = obj["object"]
        if not (isinstance(ref, list) and len(ref) == 2 and all(isinstance(x, str) for x in ref)):
            raise _Rejected("malformed output tree")
        module, name = ref
        mod = sys.modules.get(module)
        if mod is None or module.split(".")[0] != "dmft_jax" or not _NAME.match(name):
            raise _Rejected(f"the output names {module}.{name}, which is not a dmft_jax class")
        cls = vars(mod).get(name)
        if not (isinstance(cls, type) and cls.__module__ == module and hasattr(cls, "__dataclass_fields__")):
            raise _Rejected(f"the output names {module}.{name}, which is not a dmft_jax class")
        names = [f.name for f in dataclasses.fields(cls)]
        pairs = obj["fields"]
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs) or [p[0] for p in pairs] != names:
            raise _Rejected(f"the fields of {name} do not match this version's")
        new = object.__new__(cls)
        for field, value in pairs:
            object.__setattr__(new, field, _decode(value))
        return new
    raise _Rejected("malformed output tree")


_STABLE_CALLS = None
_WHOLE = re.compile(rb"\d{1,9}\Z")


def _check_signature(payload: bytes) -> None:
    """Read the serialized program's flatbuffer before ``jax.export`` parses it: one device, and
    every abstract value a plain shape of whole numbers (a symbolic dimension such as
    ``a^1000000000`` makes the parser itself run for hours). Raises :class:`_Rejected`."""
    try:
        from jax._src.export import serialization_generated as fb

        root = fb.Exported.GetRootAsExported(bytearray(payload), 0)
        if root.NrDevices() != 1:
            raise _Rejected(f"the program is for {root.NrDevices()} devices, not one")
        avals = [root.UniqueAvals(i) for i in range(root.UniqueAvalsLength())]
        avals += [root.InAvals(i) for i in range(root.InAvalsLength())]
        avals += [root.OutAvals(i) for i in range(root.OutAvalsLength())]
        for aval in avals:
            if aval.ShapeLength() > 64 or not all(_WHOLE.match(aval.Shape(i) or b"x")
                                                    for i in range(aval.ShapeLength())):
                raise _Rejected("the program's shapes are not plain whole numbers")
    except _Rejected:
        raise
    except Exception:  # noqa: BLE001 (a malformed flatbuffer)
        raise _Rejected("the program's flatbuffer is malformed") from None


def _check_inputs(exported, leaves) -> None:
    want = [(tuple(x.shape), str(x.dtype)) for x in leaves]
    got = [(tuple(a.shape), str(a.dtype)) for a in exported.in_avals]
    if got != want:
        raise _Rejected("the program's inputs are not the shapes and dtypes of its key")


def _custom_calls_allowed(exported) -> None:
    """Raise :class:`_Rejected` unless every custom call of the program is one that JAX
    guarantees stable (no host callback can be reached from a planted program)."""
    global _STABLE_CALLS
    if _STABLE_CALLS is None:
        try:
            from jax._src.export._export import _CUSTOM_CALL_TARGETS_GUARANTEED_STABLE as stable
        except ImportError:  # an internal of JAX: without the list, no saved program is trusted
            stable = frozenset()
        _STABLE_CALLS = frozenset(stable)
    if exported.disabled_safety_checks:
        raise _Rejected("the program disables JAX's safety checks")
    try:
        text = exported.mlir_module()
    except Exception:  # noqa: BLE001 (bytes that are no StableHLO)
        raise _Rejected("the program's StableHLO cannot be read") from None
    targets = set(re.findall(r"custom_call\s*@([\w.$-]+)", text))
    targets |= set(re.findall(r'call_target_name\s*=\s*"([^"]*)"', text))
    bad = sorted(targets - _STABLE_CALLS)
    if bad:
        raise _Rejected(f"the program calls {', '.join(bad)}, which JAX does not guarantee safe")
    if tuple(exported.platforms) != (jax.default_backend(),):
        raise _Rejected(f"the program is for {exported.platforms}, not {jax.default_backend()}")


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
        data = _read_regular(path)
        if data is None:
            return None
        header, payload = _unpack(data, key, "program")
        _check_signature(payload)
        try:
            exported = jax.export.deserialize(bytearray(payload))
        except Exception:  # noqa: BLE001 (the hash matched, so this is another version's bytes)
            raise _Rejected("the program cannot be read by this JAX") from None
        _custom_calls_allowed(exported)
        _check_inputs(exported, leaves)
        out_tree = jax.tree_util.tree_structure(_decode(header.get("out_tree")),
                                                is_leaf=lambda x: x is _LEAF)
        if out_tree.num_leaves != len(exported.out_avals):
            raise _Rejected("the program's outputs do not match its output tree")
        return _jitted(exported, name), out_tree
    except _Rejected as err:
        _ignored(path, str(err))
        return None
    except RecursionError:
        _ignored(path, "output tree nested too deeply")
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
        skeleton = jax.tree_util.tree_unflatten(out_tree[0], [_LEAF] * out_tree[0].num_leaves)
        encoded = _encode(skeleton)
        # what is written must read back as the same tree (else it is not cached)
        if jax.tree_util.tree_structure(_decode(encoded), is_leaf=lambda x: x is _LEAF) != out_tree[0]:
            return None
        payload = bytes(exported.serialize())
    except Exception:  # host callbacks, extended dtypes, results outside the encoding: not cached
        return None
    _write_atomic(path, _pack({"key": key, "kind": "program", "function": fn.__name__,
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
                _ignored(path, f"it fails when run ({type(err).__name__})")
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
        data = _read_regular(path)
        if data is None:
            return False
        header, payload = _unpack(data, key, tag)
        if header.get("verdict") != "passed" or payload:
            raise _Rejected("it records no passed check")
        return True
    except _Rejected as err:
        _ignored(path, str(err))
        return False


def record(tag: str, obj) -> None:
    """Note in the trace cache that ``obj`` passed the check ``tag`` (no-op when it is off)."""
    folder = _TRACES["dir"]
    if folder is not None and not _has_arrays(obj):
        try:
            key = _key((tag, obj))
        except (_Unkeyable, pickle.PicklingError, TypeError, AttributeError):
            return
        _write_atomic(folder / f"{key}.{tag}", _pack({"key": key, "kind": tag, "verdict": "passed"}, b""))


def _has_arrays(obj) -> bool:
    return any(eqx.is_array(x) for x in jax.tree_util.tree_leaves(obj))
