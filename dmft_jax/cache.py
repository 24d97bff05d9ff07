"""JAX's persistent compilation cache for dmft-jax: a second process pays no compile for
sizes it has seen (the compiled sweep is looked up on disk instead of rebuilt).

On by default in the command line (``--no-cache`` turns it off); in Python one call,
:func:`enable_compilation_cache`, before the first solve. The cache lives in
``$DMFT_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/dmft_jax/jax``, else
``~/.cache/dmft_jax/jax``; it is safe to delete.
"""
from __future__ import annotations

import os
from pathlib import Path

import jax


def default_cache_dir() -> Path:
    """Where :func:`enable_compilation_cache` keeps compiled programs by default."""
    if os.environ.get("DMFT_JAX_CACHE_DIR"):
        return Path(os.environ["DMFT_JAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmft_jax" / "jax"


def enable_compilation_cache(path=None, *, min_compile_time_secs: float = 1.0) -> Path:
    """Turn on JAX's on-disk compilation cache in ``path`` (default :func:`default_cache_dir`)
    for programs that took at least ``min_compile_time_secs`` to compile; returns the folder."""
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
    return path


def disable_compilation_cache() -> None:
    """Turn the on-disk cache off again (programs already compiled in this process stay)."""
    jax.config.update("jax_compilation_cache_dir", None)
