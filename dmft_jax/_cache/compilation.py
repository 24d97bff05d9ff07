"""JAX's persistent compilation cache for dmft-jax: a second process pays no compile for
sizes it has seen (the compiled sweep is looked up on disk instead of rebuilt).

On by default in the command line (``--no-cache`` turns it off); in Python one call,
:func:`enable_compilation_cache`, before the first solve. It also turns on the trace cache
(below): the lowered programs of :func:`dmft_jax.solve`, so that a new process neither traces
nor compiles a solve it has seen (:mod:`dmft_jax._cache.trace`; the files' layout and checks are
:mod:`dmft_jax._cache.entry`). The cache lives in
``$DMFT_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/dmft_jax/jax``, else
``~/.cache/dmft_jax/jax``; it is safe to delete.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np

from .entry import check_private
from .trace import disable_trace_cache, enable_trace_cache


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


def disable_compilation_cache() -> None:
    """Turn the on-disk cache off again (programs already compiled in this process stay)."""
    jax.config.update("jax_compilation_cache_dir", None)
    disable_trace_cache()
