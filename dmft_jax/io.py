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
        "config": dict(result.config.to_dict(), seed=int(np.asarray(result.seed))),
    }


def _atomic_write(path: Path, write):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(result, path) -> Path:
    """Write ``path`` (``.npz``, arrays) and ``path`` with suffix ``.json`` (metadata)."""
    path = Path(path).with_suffix(".npz")
    meta = metadata(result)
    _atomic_write(path, lambda fh: np.savez(fh, **_arrays(result)))
    _atomic_write(path.with_suffix(".json"), lambda fh: fh.write(json.dumps(meta, indent=2).encode()))
    return path


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


def load_arrays(path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` saved by :func:`save`."""
    path = Path(path).with_suffix(".npz")
    try:
        meta = json.loads(path.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path.with_suffix('.json')}: cannot read metadata ({err})") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {meta.get('format_version')} is not supported "
                         f"(this dmft_jax reads version {FORMAT_VERSION})")
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as err:  # zipfile/pickle errors on truncated files
        raise ValueError(f"{path}: cannot read arrays ({err})") from err
    return arrays, meta
