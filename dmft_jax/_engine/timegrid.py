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


class StepBudget:
    """How many steps fit: ``bytes_of(T)``, the bytes a run of ``T`` steps needs (``what`` says
    which arrays), against 90% of the device's memory. :func:`count_steps` checks ``T``
    against it before any per-step table is built (``GD(1e-9)`` to ``t_max = 5`` is five
    billion steps: its step sizes alone were 37 GiB, allocated before any size check), and stops
    a schedule's search for ``T`` where more steps could not fit."""

    def __init__(self, bytes_of, what: str, other: str | None = None):
        self.bytes_of, self.what, self.other = bytes_of, what, other  # other: the sizes besides T, by name

    def _avail(self):
        from .._util import device_bytes

        avail = device_bytes()
        return None if avail is None else 0.9 * avail

    def limit(self) -> int | None:
        """The largest ``T`` that fits (``None``: the memory is unknown)."""
        avail = self._avail()
        if avail is None:
            return None
        lo, hi = 0, 1
        while self.bytes_of(hi) <= avail and hi < 2**62:
            lo, hi = hi, 2 * hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.bytes_of(mid) <= avail else (lo, mid)
        return lo

    def check_floor(self) -> None:
        """``ValueError`` naming the other sizes when not even one step fits (the number of steps
        is then not what to change)."""
        avail = self._avail()
        need = self.bytes_of(1)
        if avail is not None and self.other is not None and need > avail:
            raise ValueError(f"{self.other}: even a single step needs about {_gib(need)} ({self.what}) but the "
                             f"device has {_gib(avail / 0.9)}; reduce it")

    def check(self, T: int, source: str) -> None:
        """``ValueError`` when ``T`` steps do not fit, naming ``source`` (where ``T`` came from,
        e.g. ``t_max = 5 at eta = 1e-09``), the memory they need and the device's."""
        avail = self._avail()
        need = self.bytes_of(T)
        if avail is not None and need > avail:
            raise ValueError(f"{source} is T = {T} steps: {self.what} need about {_gib(need)} but the device has "
                             f"{_gib(avail / 0.9)} (at most T = {self.limit()} fit); raise eta, lower t_max or "
                             "pass a smaller n_steps")


def _gib(n) -> str:
    return f"{n / 2**30:.3g} GiB"


# the per-step tables of a run (step sizes, times, selection probabilities): what every caller
# builds; a solve passes its own budget (solve/memory.step_budget), with its T^2 kernels
TABLES = StepBudget(lambda T: 8 * 8 * (T + 1), "its per-step tables (step sizes, times, selection: 8 (T+1) numbers "
                                               "of 8 bytes)")
SCHEDULE_SEARCH_MAX = 2**24  # steps of a schedule evaluated at most to find T


def describe_schedule(schedule) -> str:
    """A schedule as a person reads it: ``ExponentialDecay(init=0.2, rate=0.5, floor=0)``, or
    the name of a user function."""
    fn = getattr(schedule, "fn", None)
    if fn is not None:
        return f"{getattr(fn, '__qualname__', repr(fn))} (a schedule function)"
    fields = {k: v for k, v in schedule.to_dict().items() if k != "schedule"}
    return f"{type(schedule).__name__}({', '.join(f'{k}={_validate._shown(v)}' for k, v in fields.items())})"


def count_steps(algorithm, t_max=None, n_steps=None, budget: StepBudget | None = None) -> int:
    """Number of steps ``T`` and the validation of every step against the algorithm's
    constraints (``algorithm.check_steps``).

    ``n_steps`` (an integer >= 1) wins over ``t_max``; otherwise ``T = floor(t_max / eta)`` for
    a constant ``eta`` and, for a schedule, the first ``T`` with ``sum_{k<T} eta_k >= t_max``
    (within 1e-9). Concrete step sizes are needed unless ``n_steps`` is given (inside
    ``jit``/``vmap``/``grad`` pass ``n_steps``). ``T`` is checked against ``budget`` (default:
    the per-step tables, :data:`TABLES`) before anything of its size is built; a schedule is
    evaluated in growing chunks, and one that turns non-positive or NaN before adding up to
    ``t_max`` is refused there, naming the schedule, the step and its value.
    """
    budget = TABLES if budget is None else budget
    budget.check_floor()
    if n_steps is not None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1; got {n_steps!r}")
        T = int(n_steps)
        budget.check(T, f"n_steps = {T}")
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
        ratio = float(t_max) / float(eta)
        T = int(np.floor(ratio + min(tol * ratio, 0.5)))  # a rounding below a whole step counts, never a step more
        budget.check(T, f"t_max = {float(t_max):g} at eta = {float(eta):g}")
        _checked_steps(algorithm, T)
        return T
    return _schedule_steps(algorithm, float(t_max), budget)


def _schedule_steps(algorithm, t_max: float, budget: StepBudget) -> int:
    """The first ``T`` whose steps add up to ``t_max``, evaluating the schedule in chunks of
    1024, 4096, ... steps, at most as many as fit (``budget``) and :data:`SCHEDULE_SEARCH_MAX`."""
    schedule = algorithm.eta
    fit = budget.limit()
    most = SCHEDULE_SEARCH_MAX if fit is None else max(1, min(SCHEDULE_SEARCH_MAX, fit))
    n = min(1024, most)
    while True:
        steps = algorithm.step_sizes(n)
        if not _validate.is_concrete(steps):
            raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
        tol = _rounding(steps)
        steps = np.asarray(steps, dtype=float)
        bad = np.nonzero(~(np.isfinite(steps) & (steps > 0)))[0]
        good = steps[: bad[0]] if bad.size else steps
        t = np.cumsum(good)
        hit = np.nonzero(t >= t_max * (1 - tol))[0]
        if hit.size:
            T = int(hit[0]) + 1
            budget.check(T, f"t_max = {t_max:g} with the schedule {describe_schedule(schedule)}")
            _checked_steps(algorithm, T)
            return T
        if bad.size:
            k = int(bad[0])
            raise ValueError(f"eta: the schedule {describe_schedule(schedule)} gives eta_k = {steps[k]:g} at step "
                             f"k = {k} (t = {(t[-1] if k else 0.0):.6g}), before its steps add up to t_max = "
                             f"{t_max:g}; a learning rate must be positive and finite at every step of the run "
                             "(lower t_max, or fix the schedule)")
        if n >= most:
            why = (f"more steps would not fit: {budget.what} for T = {most + 1} steps exceed 90% of the device's "
                   "memory" if fit is not None and most == fit else f"searched up to {n} steps")
            raise ValueError(f"t_max: the schedule {describe_schedule(schedule)} adds up to only {t[-1]:.6g} in {n} "
                             f"steps, short of t_max = {t_max:g} ({why}); lower t_max, or use a schedule with larger "
                             "steps (a floor)")
        n = min(4 * n, most)


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
