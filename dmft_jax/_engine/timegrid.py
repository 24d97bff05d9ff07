"""The time grid: how many steps a solve takes, the step sizes' checks, and the time chunks
of the causal sweep (docs/equations.md, sections 1.4.1 and 2.6.1).

Step ``k`` advances time by ``eta_k`` (``dt_k = eta_k``); a constant ``eta`` gives
``T = floor(t_max / eta)`` steps, a schedule the first ``T`` whose steps add up to ``t_max``.
"""
from __future__ import annotations

import numpy as np

from .. import _validate


def _rounding(x) -> float:
    """The relative tolerance of a step count: ``1e-9``, or a few roundings of ``x``'s dtype when
    that is coarser (``eta = 0.2`` in float32 is 0.2000000030: ``t_max = 20`` is still 100 steps,
    as in float64, so that both dtypes take the same number of steps)."""
    dtype = np.asarray(x).dtype
    eps = float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 0.0
    return max(1e-9, 8 * eps)


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
    from .._algorithms.schedules import Schedule

    if not isinstance(algorithm.eta, Schedule):
        # constant eta: T = floor(t_max / eta)
        if not _validate.is_concrete(algorithm.eta):
            raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
        tol = _rounding(algorithm.eta)
        eta = np.asarray(algorithm.eta, dtype=float)
        if eta.ndim:
            raise ValueError("eta is an array: pass n_steps explicitly for a batch of learning rates")
        _validate.check("t_max", t_max, lambda a: a >= eta * (1 - tol), f"t_max >= eta = {float(eta):g}")
        T = int(np.floor(float(t_max) / float(eta) * (1 + tol)))
        _checked_steps(algorithm, T)
        return T
    n = 1024
    while True:  # a schedule: the first T whose steps add up to t_max (only those T are checked)
        steps = algorithm.step_sizes(n)
        if not _validate.is_concrete(steps):
            raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
        t = np.cumsum(np.maximum(np.asarray(steps, dtype=float), 0.0))
        hit = np.nonzero(t >= float(t_max) * (1 - _rounding(steps)))[0]
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
    """Chunks of the rolled sweep used by default: one for short horizons (``T < 32``), else
    about one per 16 steps, between 2 and 8. The loop body is compiled once whatever the
    number; more chunks read less of the past per step (the exact response's traffic is
    about ``(n + 1) (n + 2) / (6 n^2)`` of the square's for ``n`` chunks) but loop over more of them.
    Measured at T = 100 on 2 CPU cores (benchmarks/latency.py): 6 chunks solve in 0.06 s at
    N = 4096, N_chi = 256 and in 0.51 s at N = 32768, N_chi = 2048 (one chunk: 0.12 s and
    0.79 s)."""
    return 1 if T < 32 else min(8, max(2, T // 16))


def chunk_width(T: int, n_chunks: int) -> int | None:
    """Width of the chunks of a sweep over ``T`` steps in ``n_chunks`` chunks (``None``: one)."""
    n = max(1, min(n_chunks, T + 1))
    return None if n == 1 else -(-(T + 1) // n)


def bucket_steps(T: int) -> int:
    """The shape bucket of ``T`` steps: the smallest ``m 2^e >= T`` with ``m`` in 4..7 (4..7,
    8, 10, 12, 14, 16, 20, ..., 96, 112, 128, 160, ...), at most 25% more steps. A solve of
    ``T`` steps runs in arrays sized for the bucket, so that every ``T`` of a bucket shares one
    compiled program (changing ``t_max`` while exploring does not recompile)."""
    if T <= 7:
        return max(1, int(T))
    e = int(T).bit_length() - 3  # T in [4 * 2^e, 8 * 2^e)
    return -(-int(T) // 2**e) * 2**e
