"""Memory of a solve: the documented peak formula (docs/memory.md) and the refusal of a
request that cannot fit, before anything is allocated."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from .. import _validate
from .._util import device_bytes, warn_user
from .._response.response import AbstractResponse, ExactResponse, as_response
from .._engine.past import padded_size
from .._engine.timegrid import StepBudget, auto_time_blocks, chunk_width


def memory_estimate(n_steps: int, n_traj: int, n_chi=None, dtype="float64", response=None,
                    time_blocks=None, K: int = 1, quadrature: int = 0, history=None) -> int:
    """Peak bytes of one forward sweep (see docs/memory.md), with ``S = T + 1``, ``b`` the
    bytes per number (8 in float64, 4 in float32):

    ``b (R + 6 S N K + 12 (S K)^2 + 16 N + 2 Q (K + 4))``

    where ``S`` is padded to a multiple of the sweep's chunk width and ``R`` is the response
    estimator's peak in numbers (``peak_numbers``): for :class:`~dmft_jax.ExactResponse`
    the stored lower triangle of ``chi`` in ``n (n + 1) / 2`` tiles of ``w^2 n_chi`` for
    ``n`` chunks of width ``w`` (``S (S - 1) n_chi`` for one chunk, about ``0.58 S^2 n_chi``
    for six); for :class:`~dmft_jax.ProbeResponse` on ``n`` trajectories
    ``2 (2 n_probes S n + n)``.
    ``6 S N`` are the histories of ``u``, ``g``, ``zeta``, ``s`` and the transients of drawing
    them; ``12 S^2`` the kernels, ``R``, ``C`` and the noise factor. Compared with XLA's own
    buffer analysis it is within a factor 0.7-2 (tests/test_scale.py). ``n_chi`` alone means
    ``ExactResponse(n_chi)``; ``time_blocks`` (the number of chunks) defaults to the sweep's
    (:func:`~dmft_jax._engine.timegrid.auto_time_blocks`). A ``vmap`` over ``B`` points needs ``B``
    times this. ``K``: units of a committee (every history ``K`` times, every kernel ``K^2``
    times); ``quadrature``: the points of its test error's quadrature (``Q``, ``K + 4`` numbers
    each, two rules).

    ``history``: a :class:`~dmft_jax.CompressedHistory` replaces ``S`` by its ``n`` slots in
    every history and kernel (``b (R + (3 n + 8) N K + 2 S n K^2 + 12 (n K)^2 + ...)``: the random
    numbers are drawn at their step), the response's ``R`` over ``n`` rows."""
    n_steps = _validate.integer("n_steps", n_steps, 1)
    n_traj = _validate.integer("n_traj", n_traj, 1)
    K = _validate.integer("K", K, 1)
    quadrature = _validate.integer("quadrature", quadrature, 0)
    if time_blocks is not None:
        time_blocks = _validate.integer("time_blocks", time_blocks, 1)
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (jnp.dtype("float32"), jnp.dtype("float64")):
        raise ValueError(f"dtype must be float32 or float64; got {dtype!r}")
    item = dt.itemsize
    from .._engine.history import AbstractHistory
    from .._response.probes import ProbeResponse

    if response is None and n_chi is None and isinstance(history, AbstractHistory) and history.compressed:
        response = ProbeResponse()  # a compressed solve's default response, as dj.solve takes it
    est = as_response(response, n_chi).resolve(n_steps, n_traj, item, K)
    history = checked_history(history, est)
    size = n_steps + 1
    if getattr(history, "compressed", False):
        n = history.n_slots(n_steps)
        hist = (3 * n + 8) * n_traj * K  # u, g, xi over the slots; a step's draws and selection chains
        kernels = 2 * size * n * K * K + 12 * (n * K) ** 2
        return int(item * (est.peak_numbers(n, None, K) + hist + kernels + 16 * n_traj + 2 * quadrature * (K + 4)))
    blocks = auto_time_blocks(n_steps) if time_blocks is None else time_blocks
    width = chunk_width(n_steps, blocks)
    padded = padded_size(size, width)
    hist = 6 * padded * n_traj * K
    kernels = 12 * (padded * K) ** 2
    return int(item * (est.peak_numbers(size, width, K) + hist + kernels + 16 * n_traj + 2 * quadrature * (K + 4)))


def step_budget(n_traj: int, dtype, K: int = 1, batch: int = 1, history=None) -> StepBudget:
    """The steps a solve of ``n_traj`` trajectories can hold, checked before anything of size
    ``T`` is built (the step sizes, the tables, the sweep): the part of
    :func:`memory_estimate` that grows with ``T`` whatever the response, its kernels
    ``12 ((T+1) K)^2`` and histories ``6 (T+1) N K`` numbers, for ``batch`` points (a
    compressed ``history``: its kernel rows over at most ``256`` slots and its observables,
    and a floor of its slot histories; its random numbers are drawn at their step)."""
    item = jnp.dtype(dtype).itemsize
    if getattr(history, "compressed", False):
        return StepBudget(lambda T: batch * item * ((T + 1) * (512 * K * K + 32) + 128 * n_traj * K),
                          f"its kernel rows and slot histories, (512 K^2 + 32) (T+1) + "
                          f"128 N K numbers of {item} bytes "
                          f"(memory_estimate){f', for {batch} points' if batch > 1 else ''}",
                          f"n_traj = {n_traj}" + (f" (with K = {K} units)" if K > 1 else "")
                          + (f" for {batch} points" if batch > 1 else ""))
    return StepBudget(lambda T: batch * item * (12 * ((T + 1) * K) ** 2 + 6 * (T + 1) * n_traj * K),
                      f"its kernels and histories alone, 12 ((T+1) K)^2 + 6 (T+1) N K numbers of {item} bytes "
                      f"(memory_estimate){f', for {batch} points' if batch > 1 else ''}",
                      f"n_traj = {n_traj}" + (f" (with K = {K} units)" if K > 1 else "")
                      + (f" for {batch} points" if batch > 1 else ""))


def checked_history(history, est):
    """``history`` of an estimate (``None``: the full history) as a history strategy, refused by
    name otherwise, and refused with an exact response when compressed (as ``dj.solve`` refuses
    it)."""
    from .._engine.history import as_history

    history = as_history(history)
    if history.compressed and isinstance(est, ExactResponse):
        raise ValueError("response: a CompressedHistory needs ProbeResponse(n_probes); the exact response stores chi "
                         "over every pair of steps, O(T^2) by nature")
    return history


class SizeWarning(UserWarning):
    """A solve is about to run for minutes or to take more than half the free memory
    (``dj.solve`` says so before it starts; ``warnings.simplefilter("ignore", dj.SizeWarning)``
    silences it)."""


#: seconds per unit of work on one core of a 2-core x86_64 CPU in float64, fitted to
#: benchmarks/solve_speed.py and the long-horizon timings of issue 25 (within ~2x there):
#: history contractions per trajectory and step pair, the exact response per trajectory and
#: step triple, the noise factor's substitution per step triple
_SECONDS = {"history": 2.4e-9, "response": 3.0e-10, "factor": 1.0e-9, "slots": 4.0e-10}
LONG_RUN_S = 180.0  # the warning's threshold: "a few minutes"


def time_estimate(n_steps: int, n_traj: int, est, dtype="float64", batch: int = 1, K: int = 1,
                  history=None) -> float:
    """A rough wall time (seconds) of a solve on a laptop-class CPU: its ``T^2 N`` history
    sums (times ``1 + 0.6 P`` with ``P`` probes), ``T^3 n_chi`` exact response and ``T^3``
    noise factor, with the constants measured on a 2-core machine (``_SECONDS``); a GPU is
    usually much faster. With a compressed ``history`` the work is ``T n N (3 + 2 P)`` over its
    ``n`` slots. Only for the warning before long runs: not a benchmark."""
    T = float(_validate.integer("n_steps", n_steps, 1))
    n_traj = _validate.integer("n_traj", n_traj, 1)
    batch, K = _validate.integer("batch", batch, 1), _validate.integer("K", K, 1)
    if not isinstance(est, AbstractResponse):
        raise ValueError(f"est: a response estimator (dj.ExactResponse(n_chi) or dj.ProbeResponse(n_probes)); "
                         f"got {est!r}")
    try:
        kind, item = jnp.dtype(dtype).kind, jnp.dtype(dtype).itemsize / 8
    except TypeError:
        kind = None
    if kind != "f":
        raise ValueError(f"dtype must be a floating dtype such as 'float32' or 'float64'; got {dtype!r}")
    history = checked_history(history, est)
    probes = getattr(est, "n_probes", 0) or 0
    n_chi = getattr(est, "n_chi", 0) or 0
    if getattr(history, "compressed", False):  # n slots read every step: linear in T
        n = history.n_slots(int(T))
        return batch * item * _SECONDS["slots"] * T * n * n_traj * K ** 2 * (3 + 2 * probes)
    # the probes' weight measured at T = 500, 1000, N = 2048, P = 4 (benchmarks/long_times.py: 2.0 s, 8.2 s)
    work = (_SECONDS["history"] * T ** 2 / 2 * n_traj * K ** 2 * (1 + 0.6 * probes)
            + _SECONDS["response"] * T ** 3 / 3 * n_chi * K ** 2 + _SECONDS["factor"] * T ** 3 / 3 * K ** 3)
    return batch * item * work


AUTO_PROGRESS_S = 10.0  # a solve estimated longer than this shows a progress bar unless told otherwise


def long_run(n_steps, n_traj, est, dtype, K=1, repeats: float = 1.0, history=None) -> bool:
    """Whether ``repeats`` solves are estimated above :data:`AUTO_PROGRESS_S` on this CPU (a
    GPU: never; its runs are far shorter than the estimate), so that they show their
    progress by default."""
    seconds = time_estimate(n_steps, n_traj, est, dtype, 1, K, history) * repeats
    return seconds > AUTO_PROGRESS_S and jax.devices()[0].platform == "cpu"


def free_bytes():
    """Memory free for a new solve: ``bytes_limit - bytes_in_use`` on an accelerator, the
    kernel's ``MemAvailable`` on a Linux CPU; ``None`` if unknown."""
    try:
        dev = jax.devices()[0]
        if dev.platform != "cpu":
            stats = dev.memory_stats()
            return stats["bytes_limit"] - stats.get("bytes_in_use", 0) if stats else None
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (ValueError, OSError, KeyError, AttributeError, TypeError, IndexError):
        return None
    return None


def warn_size(need: float, seconds: float, what: str = "this solve") -> None:
    """The warning before a run above :data:`LONG_RUN_S` seconds (on a CPU) or above half the
    free memory, naming the sizes to change."""
    notes = []
    free = free_bytes()
    if free is not None and need > 0.5 * free:
        notes.append(f"needs about {need / 2**30:.1f} GiB, more than half the {free / 2**30:.1f} GiB free")
    if seconds > LONG_RUN_S and jax.devices()[0].platform == "cpu":
        notes.append(f"may take about {seconds / 60:.0f} minutes on a 2-core CPU")
    if notes:
        warn_user(f"{what} {' and '.join(notes)} (t_max/eta = T steps, n_traj = N, the response's n_chi or "
                  "n_probes set its size: see docs/choosing-sizes.md)", SizeWarning)


def check_memory(n_steps, n_traj, est, dtype, batch=1, time_blocks=None, replicas=None, K=1, quadrature=0,
                 history=None):
    """Refuse (``ValueError``) a solve of ``batch`` points that needs more than 90% of the
    device's memory, and warn (:class:`SizeWarning`) before one above half the free memory
    or a few minutes; ``replicas = (G, estimator)``: the solve also runs ``G`` replicas on
    ``N / G`` trajectories each (:class:`~dmft_jax.GroupErrors`)."""
    sizes = dict(dtype=dtype, time_blocks=time_blocks, K=K, quadrature=quadrature, history=history)
    need = memory_estimate(n_steps, n_traj, response=est, **sizes)
    if replicas is not None:
        g, small = replicas
        need += g * memory_estimate(n_steps, n_traj // g, response=small, **sizes)
    need *= batch
    avail = device_bytes()
    if avail is not None and need > 0.9 * avail:
        raise ValueError(
            f"n_chi/n_traj: this solve{f' ({batch} points)' if batch > 1 else ''} needs about "
            f"{need / 2**30:.1f} GiB (memory_estimate) but the device has {avail / 2**30:.1f} GiB; "
            "reduce n_chi (response memory (T+1)^2 n_chi), use ProbeResponse (memory n_probes (T+1) N), "
            "or reduce n_traj or t_max/eta"
        )
    seconds = time_estimate(n_steps, n_traj, est, dtype, batch, K, history) * (2 if replicas is not None else 1)
    warn_size(need, seconds, f"this solve{f' ({batch} points)' if batch > 1 else ''}")


def memory_per_seed(d: int, n: int, n_test: int, n_steps: int, itemsize: int) -> int:
    """Bytes of one seed in flight: the training and test inputs and a copy of them (XLA
    keeps ``X`` and its transpose for the two products), the selection chains (stepped in the
    loop), the weights and observables."""
    return itemsize * (2 * (n + n_test) * d + 4 * n + 8 * d + 16 * (n_steps + 1))


def fit_batch(batch_size, n_seeds, per_seed):
    """Seeds per vmapped chunk: ``batch_size`` if given (checked), else as many as fit in 40%
    of the device's memory; refuse what cannot fit."""
    avail = device_bytes()
    if batch_size is not None:
        batch_size = min(_validate.integer("batch_size", batch_size, 1), n_seeds)
        if avail is not None and batch_size * per_seed > 0.9 * avail:
            raise ValueError(f"batch_size: {batch_size} seeds at once need about {batch_size * per_seed / 2**30:.1f} "
                             f"GiB but the device has {avail / 2**30:.1f} GiB; use a smaller batch_size (one seed "
                             f"needs {per_seed / 2**30:.2f} GiB)")
        return batch_size
    if avail is None:
        return n_seeds
    if per_seed > 0.9 * avail:
        raise ValueError(f"d: one seed needs about {per_seed / 2**30:.1f} GiB (inputs (alpha d + n_test) x d) but "
                         f"the device has {avail / 2**30:.1f} GiB; reduce d or n_test")
    return max(1, min(n_seeds, int(0.4 * avail // per_seed)))
