"""The time grid: how many steps a solve takes, the step sizes' checks, and the time blocks
of the causal sweep (docs/equations.md, sections 1.4.1 and 2.6.1).

Step ``k`` advances time by ``eta_k`` (``dt_k = eta_k``); a constant ``eta`` gives
``T = floor(t_max / eta)`` steps, a schedule the first ``T`` whose steps add up to ``t_max``.
"""
from __future__ import annotations

import numpy as np

from . import _validate


def count_steps(algorithm, t_max=None, n_steps=None) -> int:
    """Number of steps ``T`` and the validation of every step against the algorithm's
    constraints (``algorithm.check_steps``).

    ``n_steps`` (an integer >= 1) wins over ``t_max``; otherwise ``T = floor(t_max / eta)`` for
    a constant ``eta`` and, for a schedule, the first ``T`` with ``sum_{k<T} eta_k >= t_max``
    (within 1e-9). Concrete step sizes are needed
    unless ``n_steps`` is given (inside ``jit``/``vmap``/``grad`` pass ``n_steps``).
    """
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1; got {n_steps!r}")
        T = int(n_steps)
        _checked_steps(algorithm, T)
        return T
    _validate.positive("t_max", t_max)
    from .schedules import Schedule

    if not isinstance(algorithm.eta, Schedule):
        # constant eta: T = floor(t_max / eta)
        if not _validate.is_concrete(algorithm.eta):
            raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
        eta = np.asarray(algorithm.eta, dtype=float)
        if eta.ndim:
            raise ValueError("eta is an array: pass n_steps explicitly for a batch of learning rates")
        _validate.check("t_max", t_max, lambda a: a >= eta * (1 - 1e-9), f"t_max >= eta = {float(eta):g}")
        T = int(np.floor(float(t_max) / float(eta) + 1e-9))
        _checked_steps(algorithm, T)
        return T
    n = 1024
    while True:  # a schedule: the first T whose steps add up to t_max (only those T are checked)
        steps = algorithm.step_sizes(n)
        if not _validate.is_concrete(steps):
            raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
        t = np.cumsum(np.maximum(np.asarray(steps, dtype=float), 0.0))
        hit = np.nonzero(t >= float(t_max) * (1 - 1e-9))[0]
        if hit.size:
            T = int(hit[0]) + 1
            _checked_steps(algorithm, T)
            return T
        if n > 2**22:
            raise ValueError(f"t_max: the schedule does not reach t_max = {t_max} within {n} steps")
        n *= 4


def _checked_steps(algorithm, n_steps):
    """Concrete step sizes ``eta_k`` (validated: positive, finite, within the algorithm's
    constraints), or ``None`` when they are traced."""
    steps = algorithm.step_sizes(n_steps)
    if not _validate.is_concrete(steps):
        return None
    steps = np.asarray(steps, dtype=float)
    _validate.check("eta", steps, lambda a: a > 0, "eta_k > 0 at every step")
    algorithm.check_steps(steps)
    return steps


def block_edges(T: int, n_blocks: int) -> list[int]:
    """Step boundaries ``0 = e_0 < ... < e_B = T`` of ``n_blocks`` near-equal time blocks."""
    return sorted(set(int(round(x)) for x in np.linspace(0, T, max(1, min(n_blocks, T)) + 1)))


def auto_time_blocks(T: int) -> int:
    """Blocks used by default: one for short horizons (compile time dominates), else about
    one per 32 steps, at most 8 (history traffic ~ (B+1)(2B+1)/(6B^2) of the unblocked, the
    response's ~(B+2)/(2B+2) of that). Each block compiles its own loop body, with one
    response product per column block: at T = 100 on 2 CPU cores, 3 blocks compile in ~8 s
    and 6 in ~12 s, for 0.76 s and 0.61 s per solve at N = N_chi = 4096 (and 68 ms against
    89 ms at N_chi = 256)."""
    return 1 if T < 64 else min(8, T // 32)
