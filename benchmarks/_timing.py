"""Timing helpers shared by the benchmark scripts."""
from __future__ import annotations

import time

import jax


def timed(f):
    """Wall time of one call of ``f`` until its result is ready."""
    t0 = time.perf_counter()
    jax.block_until_ready(f())
    return time.perf_counter() - t0


def best_interleaved(fs: dict, repeat: int) -> dict:
    """Best time of each function over ``repeat`` rounds in which they take turns. This shared
    2-core machine's speed drifts by 10-20% over minutes; timing one function after the other
    puts that drift into their ratios."""
    ts = {name: [] for name in fs}
    for _ in range(repeat):
        for name, f in fs.items():
            ts[name].append(timed(f))
    return {name: min(t) for name, t in ts.items()}
