"""Save and load solutions and simulations: arrays in ``.npz`` plus a JSON sidecar with
the parameters, configuration, seed and package version. Writes are atomic (temporary
file + ``os.replace``), so an interrupted write never leaves a half-written file."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1


def _arrays(result) -> dict:
    return {n: np.asarray(getattr(result, n)) for n in result.saved_arrays}


def metadata(result) -> dict:
    from . import __version__

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
    if isinstance(path, (str, os.PathLike)) and str(path).strip():
        base = str(path)
    else:
        raise ValueError(f"path must be a non-empty file name; got {path!r}")
    for suffix in (".npz", ".json"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return Path(base + ".npz"), Path(base + ".json")


def _temporary(path: Path, write) -> str:
    """Write a temporary file beside ``path`` (readable as the umask allows, like any new file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name, suffix=".tmp")
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


def save(result, path, *, overwrite: bool = False) -> Path:
    """Write the pair ``<path>.npz`` (arrays) and ``<path>.json`` (parameters, configuration,
    seed, package version); returns the ``.npz`` path.

    The pair is written whole or not at all: both files are first written to temporary
    files and then renamed, and a failure at any point leaves the earlier files as they
    were. An existing result of that name is refused unless ``overwrite=True``.
    """
    if not hasattr(type(result), "saved_arrays"):
        raise ValueError(f"result must be a dmft_jax Solution or Simulation; got {type(result).__name__}")
    npz, js = pair_paths(path)
    if not overwrite and (npz.exists() or js.exists()):
        raise FileExistsError(f"{npz} or {js} exists: pass overwrite=True to replace it, or another name")
    for p in (npz, js):
        if p.exists() and not p.is_file():
            raise ValueError(f"path: {p} exists and is not a file")
    meta = json.dumps(metadata(result), indent=2).encode()
    arrays = _arrays(result)
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"path: cannot create the folder {npz.parent} ({err})") from None
    tmp_npz = _temporary(npz, lambda fh: np.savez(fh, **arrays))
    try:
        tmp_js = _temporary(js, lambda fh: fh.write(meta))
    except BaseException:
        os.unlink(tmp_npz)
        raise
    backups, placed = {}, []
    try:
        for p in (npz, js):  # an overwritten pair is kept aside until the new one is in place
            if p.exists():
                backups[p] = _temporary(p, lambda fh, p=p: fh.write(p.read_bytes()))
        os.replace(tmp_npz, npz)
        placed.append(npz)
        os.replace(tmp_js, js)
        placed.append(js)
    except BaseException:
        for tmp in (tmp_npz, tmp_js):
            if os.path.exists(tmp):
                os.unlink(tmp)
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
    return npz


class Loaded:
    """A saved result: every array as an attribute (``t``, ``m``, ``eps_gen``, ``*_se``, ...),
    ``meta`` (parameters, algorithm, config with seed, package version) and ``config``; it
    can be passed to :func:`dmft_jax.plot.compare` like the original result."""

    def __init__(self, arrays: dict, meta: dict):
        self.__dict__.update(arrays)
        self.arrays = arrays
        self.meta = meta
        self.config = meta.get("config", {})
        self.kind = meta.get("kind")

    def __repr__(self):
        return f"Loaded({self.kind}, arrays={sorted(self.arrays)})"


def load(path) -> Loaded:
    """Load a result saved by :func:`save`; raises ``ValueError`` for a file of another
    format version or a corrupt/partial file."""
    arrays, meta = load_arrays(path)
    return Loaded(arrays, meta)


REQUIRED = {"solution": ("t", "m", "q", "eps_gen", "train_loss", "train_acc", "status"),
            "simulation": ("t", "m", "q", "eps_gen", "eps_gen_se", "train_loss", "train_acc", "status"),
            "committee_simulation": ("t", "m", "Q", "test_error", "train_loss", "train_acc", "status"),
            "committee_solution": ("t", "m", "Q", "eps_gen", "train_loss", "train_acc", "status")}


def load_arrays(path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` saved by :func:`save`."""
    npz, js = pair_paths(path)
    try:
        meta = json.loads(js.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{js}: cannot read metadata ({err})") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{js}: not dmft_jax metadata (a JSON object is expected)")
    version = meta.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"{js}: format_version {version!r} is not supported (this dmft_jax reads the "
                         f"integer {FORMAT_VERSION})")
    kind = meta.get("kind")
    if kind not in REQUIRED:
        raise ValueError(f"{js}: kind {kind!r} is not one of {sorted(REQUIRED)}")
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile/pickle errors on truncated files
        raise ValueError(f"{npz}: cannot read arrays ({err})") from err
    missing = [n for n in REQUIRED[kind] if n not in arrays]
    if missing:
        raise ValueError(f"{npz}: not a saved dmft_jax {kind}: missing arrays {missing}")
    return arrays, meta
