"""Save and load results: arrays in ``<name>.npz`` with the parameters, configuration, seed and package
version inside it (member ``__meta__``), and the same metadata beside it as ``<name>.json`` for people to read.

Why one file is the unit: a save must never mix two results, whatever interrupts it. The
``.npz`` carries its own metadata, a save id and the SHA-256 of every array, so :func:`load`
trusts nothing it cannot check: an array edited or cut, a ``.json`` edited by hand (refused),
or a ``.json`` left from another save by an interrupted overwrite (ignored, with a warning:
the ``.npz`` is whole). Files are written to temporary names and then renamed (a new name is
created exclusively, so of two processes saving the same new name exactly one wins); the
temporaries of a save killed midway are removed by the next save of that name.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

FORMAT_VERSION = 2
_META = "__meta__"


def _arrays(result) -> dict:
    """The arrays saved of ``result``: its ``saved_arrays``, and the kept trajectories of a
    solution (``Trajectories(save=...)``) as ``trajectories_u``, ``trajectories_g``, ..."""
    out = {n: np.asarray(getattr(result, n)) for n in result.saved_arrays}
    kept = getattr(result, "trajectories", None)
    if isinstance(kept, dict):
        out.update({f"trajectories_{k}": np.asarray(v) for k, v in kept.items()})
    return out


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def metadata(result) -> dict:
    from .._version import __version__
    return {
        "format_version": FORMAT_VERSION,
        "kind": result.kind,
        "dmft_jax_version": __version__,
        "problem": result.problem.to_dict(),
        "algorithm": result.algorithm.to_dict(),
        "config": dict(result.config.to_dict(), seed=int(np.ravel(np.asarray(result.seed))[0])),
        "grid": ({n: np.asarray(v).tolist() for n, v in result.grid.items()}
                 if getattr(result, "grid", None) is not None else None),
    }


def pair_paths(path) -> tuple[Path, Path]:
    """The ``.npz`` and ``.json`` paths of a result named ``path``: the name is kept whole
    (``lam_0.05`` gives ``lam_0.05.npz``); a trailing ``.npz`` or ``.json`` is dropped."""
    if isinstance(path, (str, os.PathLike)) and os.fspath(path).strip():
        base = os.fspath(path)
    else:
        raise ValueError(f"path must be a non-empty file name; got {path!r}")
    for suffix in (".npz", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return Path(base + ".npz"), Path(base + ".json")


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing
    parent) accepts; 255, the common limit, where it does not say."""
    folder = Path(folder).absolute()
    for f in (folder, *folder.parents):
        try:
            return int(os.pathconf(f, "PC_NAME_MAX"))
        except (OSError, ValueError):
            continue
    return 255


def _too_long(path: Path) -> bool:
    return len(os.fsencode(path.name)) > _name_max(path.parent)


def _op(name, fn, *args):
    """Every file operation of a save goes through here (one place to count or fail them)."""
    return fn(*args)


def _prefix(path: Path) -> str:
    return "." + path.name[:120] + "."  # short enough for any legal name, whatever its length


def _temporary(path: Path, write) -> str:
    """Write a temporary file beside ``path`` (readable as the umask allows, like any new file),
    named after ``path`` and this process (so that a later save can remove it if we die)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_prefix(path)}{os.getpid()}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _remove_stale(path: Path) -> None:
    """Remove the temporaries that a save of ``path`` killed midway left (its process is gone)."""
    prefix = _prefix(path)
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if name.startswith(prefix) and name.endswith(".tmp"):
            pid = name[len(prefix):].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                try:
                    entry.unlink()
                except OSError:
                    pass


def _place_new(tmp: str, target: Path) -> None:
    """Give ``tmp`` the name ``target`` only if no file has it (exclusive: of two processes,
    exactly one wins); ``FileExistsError`` otherwise."""
    try:
        _op("link", os.link, tmp, target)
    except FileExistsError:
        raise FileExistsError(f"{target} exists (another save took the name first): pass overwrite=True to "
                              "replace it, or another name") from None
    except OSError as err:  # a file system without hard links: check, then rename (not exclusive)
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK):
            raise
        if target.exists():
            raise FileExistsError(f"{target} exists: pass overwrite=True to replace it, or another name") from None
        _op("rename", os.replace, tmp, target)


class Saved(NamedTuple):
    """The two files of a save: ``npz`` (arrays and metadata: the unit that :func:`load` reads
    and checks) and ``json`` (the metadata, for people and other tools). It stands for the
    result wherever a path is taken (``os.fspath`` gives the ``.npz``):
    ``dj.load(dj.save(sol, "run"))``; it answers the ``.npz``'s path methods too."""

    npz: Path
    json: Path | None  # None: the file system refuses the .json's name (the .npz alone holds everything)

    def __fspath__(self) -> str:
        return os.fspath(self.npz)

    def __getattr__(self, name):  # the path methods of the .npz (exists, stat, with_suffix, ...)
        return getattr(self.npz, name)


def save(result, path, *, overwrite: bool = False) -> Saved:
    """Write ``<path>.npz`` (arrays and metadata) and ``<path>.json`` (the metadata, to read);
    returns both paths (:class:`Saved`, usable as the ``.npz`` path).

    The ``.npz`` is the unit (module docstring): it is written whole or not at all, and an
    exception at any point leaves the earlier files as they were. An existing result of that
    name is refused unless ``overwrite=True``; of two processes saving the same new name,
    exactly one succeeds and the other gets ``FileExistsError``.
    """
    if not hasattr(type(result), "saved_arrays") or not hasattr(type(result), "kind"):
        raise ValueError(f"result must be a dmft_jax Solution or Simulation; got {type(result).__name__}")
    if not isinstance(overwrite, (bool, np.bool_)):
        raise ValueError(f"overwrite must be True or False; got {overwrite!r}")
    npz, js = pair_paths(path)
    limit = _name_max(npz.parent)
    if _too_long(npz):
        raise ValueError(f"path: the file name {npz.name!r} is {len(os.fsencode(npz.name))} bytes, above the {limit} "
                         f"this file system allows; use a name of at most {limit - 4} bytes (before .npz)")
    if _too_long(js):  # a legal name whose readable copy's would not be: the .npz alone (it holds the metadata)
        warnings.warn(f"path: {js.name!r} would be {len(os.fsencode(js.name))} bytes, above the {limit} this file "
                      f"system allows in a name: only {npz.name} is written (it holds the metadata too, and "
                      "dmft_jax.load reads it alone)", UserWarning, stacklevel=2)
        js = None
    pair = (npz,) if js is None else (npz, js)
    if not overwrite and any(p.exists() for p in pair):
        raise FileExistsError(f"{' or '.join(str(p) for p in pair)} exists: pass overwrite=True to replace it, or "
                              "another name")
    for p in pair:
        if p.exists() and not p.is_file():
            raise ValueError(f"path: {p} exists and is not a file")
    arrays = _arrays(result)
    meta = metadata(result)
    meta["save_id"] = uuid.uuid4().hex
    meta["arrays"] = {n: {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _digest(a)}
                      for n, a in arrays.items()}
    text = json.dumps(meta, indent=2).encode()
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"path: cannot create the folder {npz.parent} ({err})") from None
    for p in pair:
        _remove_stale(p)
    payload = dict(arrays, **{_META: np.frombuffer(text, dtype=np.uint8)})
    tmp_npz = _op("write", _temporary, npz, lambda fh: np.savez(fh, **payload))
    try:
        tmp_js = None if js is None else _op("write", _temporary, js, lambda fh: fh.write(text))
    except BaseException:
        os.unlink(tmp_npz)
        raise
    try:
        (_place_pair if not overwrite else _replace_pair)(tmp_npz, tmp_js, npz, js)
    finally:
        for tmp in (tmp_npz, tmp_js):
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    return Saved(npz, js)


def _place_pair(tmp_npz, tmp_js, npz, js):
    """A new name: both files placed exclusively; on any failure nothing of this save stays."""
    placed = []
    try:
        _place_new(tmp_npz, npz)
        placed.append(npz)
        if js is not None:
            _place_new(tmp_js, js)
    except BaseException:
        for p in placed:  # ours only (a name another save took first is not touched)
            p.unlink()
        raise


def _replace_pair(tmp_npz, tmp_js, npz, js):
    """An overwrite: the earlier files are kept under temporary names (hard links, no copy) until
    the new ones are in place; an exception puts them back. A kill between the two renames leaves
    the new .npz (whole) beside the earlier .json, which load recognises and ignores."""
    backups, placed = {}, []
    try:
        for p in (npz, js):
            if p is not None and p.exists():
                backup = f"{p.parent / _prefix(p)}{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
                _op("link", os.link, p, backup)
                backups[p] = backup
        _op("rename", os.replace, tmp_npz, npz)
        placed.append(npz)
        if js is not None:
            _op("rename", os.replace, tmp_js, js)
            placed.append(js)
    except BaseException:
        for p in placed:  # undo: the earlier file back, or no new file
            if p in backups:
                os.replace(backups.pop(p), p)
            else:
                p.unlink()
        for b in backups.values():  # files not replaced were never touched
            os.unlink(b)
        raise
    for b in backups.values():
        os.unlink(b)


class Loaded:
    """A saved result: every array as an attribute (``t``, ``m``, ``eps_gen``, ``*_se``, ...), ``meta``
    (parameters, algorithm, config, seed, version), ``config``; plotted like the original result."""

    # the squares a compressed history's solution has not and the gains of observables not corrected (saved ones replace them)
    C = C_perp = R = P = cv_gain_m = cv_gain_q = cv_gain_eps_gen = cv_gain_train_loss = None

    def __init__(self, arrays: dict, meta: dict):
        self.__dict__.update(arrays)
        if "q" in arrays and "Q" not in arrays:  # the names a result answers to (Q is q)
            self.__dict__.update(Q=arrays["q"], **({"Q_se": arrays["q_se"]} if "q_se" in arrays else {}))
        self.arrays = arrays
        self.meta = meta
        self.config = meta.get("config", {})
        self.kind = meta.get("kind")
        self.K = self.config.get("K", 1) if isinstance(self.config, dict) else 1

    def __getitem__(self, name: str):
        """``loaded["q"]`` is ``loaded.q`` (as for a result)."""
        return getattr(self, name)

    def __repr__(self):
        return f"Loaded({self.kind}, arrays={sorted(self.arrays)})"


def load(path) -> Loaded:
    """Load a result saved by :func:`save`; raises ``ValueError`` for a file of another
    format version or a corrupt/partial file."""
    arrays, meta = load_arrays(path)
    return Loaded(arrays, meta)


REQUIRED = {"solution": ("t", "m", "q", "eps_gen", "train_loss", "train_acc", "status"),
            "simulation": ("t", "m", "q", "test_error", "train_loss", "train_acc", "status"),
            "committee_simulation": ("t", "m", "Q", "test_error", "train_loss", "train_acc", "status"),
            "committee_solution": ("t", "m", "Q", "eps_gen", "train_loss", "train_acc", "status")}


def load_arrays(path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` saved by :func:`save`, after checking that they belong together
    (module docstring); ``ValueError`` naming the file and the check otherwise."""
    npz, js = pair_paths(path)
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile/pickle errors on truncated files
        raise ValueError(f"{npz}: cannot read arrays ({err})") from err
    no_sidecar = _too_long(js)  # a name whose .json the file system refuses: saved as the .npz alone
    sidecar = None if no_sidecar and _META in arrays else _read_json(js, required=_META not in arrays)
    if _META not in arrays and sidecar.get("format_version") == FORMAT_VERSION:
        raise ValueError(f"{npz}: not a saved dmft_jax result: missing arrays ['{_META}'] (the metadata that the "
                         ".json beside it was saved with)")
    if _META not in arrays:  # format 1: the metadata only in the .json (nothing to check it by)
        meta = sidecar
        _check_version(js, meta, 1)
        warnings.warn(f"{npz}: a format-1 save, whose arrays carry no hashes: its .json is trusted as it is",
                      UserWarning, stacklevel=3)
    else:
        try:
            meta = json.loads(arrays.pop(_META).tobytes().decode())
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{npz}: cannot read the metadata inside ({err})") from err
        if not isinstance(meta, dict):
            raise ValueError(f"{npz}: not dmft_jax metadata (a JSON object is expected)")
        _check_version(npz, meta, FORMAT_VERSION)
        _check_arrays(npz, arrays, meta)
        if not no_sidecar:
            _check_sidecar(js, sidecar, meta)
    kind = meta.get("kind")
    if kind not in REQUIRED:
        raise ValueError(f"{npz}: kind {kind!r} is not one of {sorted(REQUIRED)}")
    missing = [n for n in REQUIRED[kind] if n not in arrays]
    if missing:
        raise ValueError(f"{npz}: not a saved dmft_jax {kind}: missing arrays {missing}")
    return arrays, meta


def _read_json(js: Path, required: bool):
    try:
        meta = json.loads(js.read_text())
    except FileNotFoundError:
        if required:
            raise ValueError(f"{js}: cannot read metadata (no such file)") from None
        return None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        if required:
            raise ValueError(f"{js}: cannot read metadata ({err})") from err
        return {"unreadable": str(err)}
    if not isinstance(meta, dict):
        if required:
            raise ValueError(f"{js}: not dmft_jax metadata (a JSON object is expected)")
        return {"unreadable": "not a JSON object"}
    return meta


def _check_version(where, meta, want):
    version = meta.get("format_version")
    if type(version) is not int or version != want:
        raise ValueError(f"{where}: format_version {version!r} is not supported here (this dmft_jax reads the "
                         f"integer {FORMAT_VERSION}, and 1 from .json files)")


def _check_arrays(npz, arrays, meta):
    listed = meta.get("arrays")
    if not isinstance(listed, dict) or set(listed) != set(arrays):
        raise ValueError(f"{npz}: its arrays are not those its metadata lists (edited or mixed files)")
    for name, a in arrays.items():
        entry = listed[name]
        if not isinstance(entry, dict) or entry.get("shape") != list(a.shape) or entry.get("dtype") != str(a.dtype) \
                or entry.get("sha256") != _digest(a):
            raise ValueError(f"{npz}: array {name!r} is not the one saved (its shape, dtype or SHA-256 differs: "
                             "edited or damaged)")


def _check_sidecar(js, sidecar, meta):
    """The ``.json`` must be the copy of the metadata inside the ``.npz``: one from another save
    (an interrupted overwrite, or no ``.json`` at all) is ignored with a warning; one edited by
    hand is refused."""
    if sidecar == meta:
        return
    if sidecar is None or sidecar.get("save_id") != meta.get("save_id"):
        what = "missing" if sidecar is None else "from another save (an interrupted overwrite?)"
        warnings.warn(f"{js}: {what}; the metadata inside the .npz is used (it is whole)", UserWarning, stacklevel=4)
        return
    keys = sorted(k for k in set(sidecar) | set(meta) if sidecar.get(k) != meta.get(k))
    shown = ", ".join(f"{k} {sidecar.get(k)!r} (saved: {meta.get(k)!r})" for k in keys[:3])
    raise ValueError(f"{js}: edited after the save: {shown}; the .npz holds the saved metadata (delete the .json "
                     "or restore it)")
