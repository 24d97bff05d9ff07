"""The trace cache's files (docs/equations.md, section 8.1): their fixed layout (magic bytes, a
4-byte length, a JSON header, a payload), how they are read (regular files of bounded size only)
and written (atomically), the output tree as JSON (plain values and dmft_jax classes only), and the
checks a saved program must pass before JAX may run it. Nothing here unpickles or imports.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import stat
import struct
import sys
import uuid
import warnings
from pathlib import Path

import jax

FORMAT = 2
MAGIC = b"DMFT-JAX trace cache\n"
MAX_BYTES = 64 * 2**20  # an entry larger than this is not read (programs are tens of kB)
_MAX_HEADER = 2**20


class CacheWarning(UserWarning):
    """A file in the trace cache was ignored (it failed a check; the message names it)."""


class Rejected(Exception):
    """A cache file that fails a check (the message says which)."""


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



def pack(header: dict, payload: bytes) -> bytes:
    header = dict(header, format=FORMAT, payload_sha256=hashlib.sha256(payload).hexdigest(),
                  payload_size=len(payload))
    text = json.dumps(header, sort_keys=True, allow_nan=False).encode()
    return MAGIC + struct.pack("<I", len(text)) + text + payload


def unpack(data: bytes, key: str, kind: str):
    """The header and payload of an entry, after every check that needs no parsing of the
    payload; raises :class:`Rejected` naming the failed check."""
    if not data.startswith(MAGIC):
        raise Rejected("not a dmft-jax trace cache entry (no magic bytes; another version's or a foreign file)")
    at = len(MAGIC)
    if len(data) < at + 4:
        raise Rejected("truncated header")
    (size,) = struct.unpack("<I", data[at:at + 4])
    if size > _MAX_HEADER or len(data) < at + 4 + size:
        raise Rejected("truncated or oversized header")
    try:
        header = json.loads(data[at + 4:at + 4 + size].decode())
    except (UnicodeDecodeError, ValueError):
        raise Rejected("header is not JSON") from None
    except RecursionError:
        raise Rejected("header nested too deeply") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise Rejected(f"format {header.get('format') if isinstance(header, dict) else '?'!r}, "
                        f"this version reads format {FORMAT}")
    if header.get("key") != key or header.get("kind") != kind:
        raise Rejected(f"it belongs to another key or kind ({header.get('key')!r}, {header.get('kind')!r})")
    payload = data[at + 4 + size:]
    if header.get("payload_size") != len(payload) or \
            header.get("payload_sha256") != hashlib.sha256(payload).hexdigest():
        raise Rejected("its content does not match the hash in its header (truncated or altered)")
    return header, payload


def read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of at most ``MAX_BYTES`` (``None`` if it
    does not exist); a FIFO, link, device or oversized file raises :class:`Rejected` without
    being opened for reading (so nothing blocks or balloons)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:  # the folder became unreadable, a file, ...
        raise Rejected(f"cannot be examined ({err.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise Rejected("not a regular file (a link, FIFO or device is never read)")
    if st.st_size > MAX_BYTES:
        raise Rejected(f"larger than {MAX_BYTES} bytes")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise Rejected(f"cannot be opened ({err.strerror})") from None
    try:
        st = os.fstat(fd)  # the file opened is the file checked (no swap in between)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_BYTES:
            raise Rejected("not a regular file of bounded size")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_BYTES)
    finally:
        os.close(fd)


def ignored(path: Path, reason: str) -> None:
    warnings.warn(f"dmft-jax trace cache: ignored {path} ({reason}); not used",
                  CacheWarning, stacklevel=4)


def write_atomic(path: Path, data: bytes) -> None:
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


LEAF = _Leaf()
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def encode(obj):
    """A JSON description of ``obj`` (the output skeleton); raises ``TypeError`` for anything
    but plain values, containers and instances of dmft_jax's dataclass-like classes."""
    if obj is LEAF:
        return {"leaf": 1}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and type(obj) in (int, float):
        return {"float": repr(obj)} if type(obj) is float else obj
    if isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
        return {type(obj).__name__: [encode(x) for x in obj]}
    if type(obj) is dict and all(isinstance(k, str) for k in obj):
        return {"dict": [[k, encode(v)] for k, v in obj.items()]}
    cls = type(obj)
    if cls.__module__.split(".")[0] == "dmft_jax" and _NAME.match(cls.__qualname__) and \
            hasattr(cls, "__dataclass_fields__"):
        fields = [f.name for f in dataclasses.fields(obj)]
        return {"object": [cls.__module__, cls.__qualname__], "fields": [[n, encode(getattr(obj, n))]
                                                                         for n in fields]}
    raise TypeError(f"{cls.__qualname__} cannot be written to the trace cache")


def decode(obj):
    """The inverse of :func:`encode`. A class is looked up among dmft_jax's modules already
    imported (nothing is imported, no attribute path is followed) and rebuilt field by field
    without running its ``__init__``; anything else raises :class:`Rejected`."""
    if obj is None or isinstance(obj, (bool, str, int)) and not isinstance(obj, float):
        return obj
    if not isinstance(obj, dict) or len(obj) not in (1, 2):
        raise Rejected("malformed output tree")
    if obj.get("leaf") == 1 and len(obj) == 1:
        return LEAF
    if "float" in obj and isinstance(obj["float"], str):
        try:
            return float(obj["float"])
        except ValueError:
            raise Rejected("malformed number in the output tree") from None
    for name, kind in (("list", list), ("tuple", tuple)):
        if name in obj and isinstance(obj[name], list):
            return kind(decode(x) for x in obj[name])
    if "dict" in obj and isinstance(obj["dict"], list):
        if not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in obj["dict"]):
            raise Rejected("malformed output tree")
        return {k: decode(v) for k, v in obj["dict"]}
    if "object" in obj and isinstance(obj.get("fields"), list):
        ref = obj["object"]
        if not (isinstance(ref, list) and len(ref) == 2 and all(isinstance(x, str) for x in ref)):
            raise Rejected("malformed output tree")
        module, name = ref
        mod = sys.modules.get(module)
        if mod is None or module.split(".")[0] != "dmft_jax" or not _NAME.match(name):
            raise Rejected(f"the output names {module}.{name}, which is not a dmft_jax class")
        cls = vars(mod).get(name)
        if not (isinstance(cls, type) and cls.__module__ == module and hasattr(cls, "__dataclass_fields__")):
            raise Rejected(f"the output names {module}.{name}, which is not a dmft_jax class")
        names = [f.name for f in dataclasses.fields(cls)]
        pairs = obj["fields"]
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs) or [p[0] for p in pairs] != names:
            raise Rejected(f"the fields of {name} do not match this version's")
        new = object.__new__(cls)
        for field, value in pairs:
            object.__setattr__(new, field, decode(value))
        return new
    raise Rejected("malformed output tree")


_STABLE_CALLS = None
_WHOLE = re.compile(rb"\d{1,9}\Z")


def check_signature(payload: bytes) -> None:
    """Read the serialized program's flatbuffer before ``jax.export`` parses it: one device, and
    every abstract value a plain shape of whole numbers (a symbolic dimension such as
    ``a^1000000000`` makes the parser itself run for hours). Raises :class:`Rejected`."""
    try:
        from jax._src.export import serialization_generated as fb

        root = fb.Exported.GetRootAsExported(bytearray(payload), 0)
        if root.NrDevices() != 1:
            raise Rejected(f"the program is for {root.NrDevices()} devices, not one")
        avals = [root.UniqueAvals(i) for i in range(root.UniqueAvalsLength())]
        avals += [root.InAvals(i) for i in range(root.InAvalsLength())]
        avals += [root.OutAvals(i) for i in range(root.OutAvalsLength())]
        for aval in avals:
            if aval.ShapeLength() > 64 or not all(_WHOLE.match(aval.Shape(i) or b"x")
                                                    for i in range(aval.ShapeLength())):
                raise Rejected("the program's shapes are not plain whole numbers")
    except Rejected:
        raise
    except Exception:  # noqa: BLE001 (a malformed flatbuffer)
        raise Rejected("the program's flatbuffer is malformed") from None


def check_inputs(exported, leaves) -> None:
    want = [(tuple(x.shape), str(x.dtype)) for x in leaves]
    got = [(tuple(a.shape), str(a.dtype)) for a in exported.in_avals]
    if got != want:
        raise Rejected("the program's inputs are not the shapes and dtypes of its key")


def custom_calls_allowed(exported) -> None:
    """Raise :class:`Rejected` unless every custom call of the program is one that JAX
    guarantees stable (no host callback can be reached from a planted program)."""
    global _STABLE_CALLS
    if _STABLE_CALLS is None:
        try:
            from jax._src.export._export import _CUSTOM_CALL_TARGETS_GUARANTEED_STABLE as stable
        except ImportError:  # an internal of JAX: without the list, no saved program is trusted
            stable = frozenset()
        _STABLE_CALLS = frozenset(stable)
    if exported.disabled_safety_checks:
        raise Rejected("the program disables JAX's safety checks")
    try:
        text = exported.mlir_module()
    except Exception:  # noqa: BLE001 (bytes that are no StableHLO)
        raise Rejected("the program's StableHLO cannot be read") from None
    targets = set(re.findall(r"custom_call\s*@([\w.$-]+)", text))
    targets |= set(re.findall(r'call_target_name\s*=\s*"([^"]*)"', text))
    bad = sorted(targets - _STABLE_CALLS)
    if bad:
        raise Rejected(f"the program calls {', '.join(bad)}, which JAX does not guarantee safe")
    if tuple(exported.platforms) != (jax.default_backend(),):
        raise Rejected(f"the program is for {exported.platforms}, not {jax.default_backend()}")
