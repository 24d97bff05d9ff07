"""Progress meters: passed to :func:`dmft_jax.solve` as ``progress_meter=``.

A meter's ``step(k, T)`` is called inside the compiled sweep at every step ``k``; the
text meter reaches the host through ``jax.debug.callback``, so it works under ``jit`` and
``vmap`` (a batch reports its most advanced point). In library calls a solve estimated above
a few seconds on a CPU (:func:`dmft_jax.time_estimate`) shows a :class:`TqdmProgressMeter`
unless a meter is given (:class:`NoProgressMeter` silences it); shorter ones show nothing.
The command line always shows one; ``dmft_jax.tune`` counts its optimiser steps with its own.
"""
from __future__ import annotations

import abc
import contextlib
import functools
import sys

import equinox as eqx
import jax
import numpy as np

from .memory import long_run


class AbstractProgressMeter(eqx.Module):
    """Interface: ``step(k, T)``, traced, called once per time step of the sweep."""

    @abc.abstractmethod
    def step(self, k, T: int) -> None:
        """Report that step ``k`` of ``T`` is being computed."""


class NoProgressMeter(AbstractProgressMeter):
    """Reports nothing (the default)."""

    def step(self, k, T):
        return None


class TextProgressMeter(AbstractProgressMeter):
    """A bar on stderr, updated about 20 times per solve; ``label`` names what is counted.
    Also says when a first call compiles, and for how long. ``steps=False`` keeps only that
    notice: the bar is a host callback, and JAX does not put programs with host callbacks in
    its persistent compilation cache (:func:`dmft_jax.enable_compilation_cache`)."""

    label: str = eqx.field(static=True, default="sweep")
    unit: str = eqx.field(static=True, default="steps")
    steps: bool = eqx.field(static=True, default=True)

    def step(self, k, T):
        if self.steps:
            jax.debug.callback(functools.partial(_print_progress, label=self.label, unit=self.unit), k, T)


class TqdmProgressMeter(AbstractProgressMeter):
    """A `tqdm <https://tqdm.github.io>`_ bar on stderr, with rate and time left; ``label``
    names what is counted. The bar is driven by ``jax.debug.callback``, so it works under
    ``jit`` and ``vmap`` (a batch shows its most advanced point) and inside ``lax.scan``; like
    every host callback it keeps the program out of JAX's persistent compilation cache. Also
    says when a first call compiles, and for how long (as :class:`TextProgressMeter`)."""

    label: str = eqx.field(static=True, default="sweep")
    unit: str = eqx.field(static=True, default="steps")

    def step(self, k, T):
        jax.debug.callback(functools.partial(_tqdm_progress, label=self.label, unit=self.unit), k, T)


_BARS: dict = {}  # label -> the open tqdm bar of a running solve


def _tqdm_progress(k, total, label="sweep", unit="steps"):
    from tqdm.auto import tqdm  # a well-kept bar (rate, ETA, notebook widgets) rather than our own

    k, total = int(np.max(np.asarray(k))), int(np.max(np.asarray(total)))
    bar = _BARS.get(label)
    if bar is None or k == 0 or bar.total != total:
        if bar is not None:
            bar.close()
        bar = _BARS[label] = tqdm(total=total, desc=f"[dmft-jax] {label}", unit=f" {unit}", file=sys.stderr,
                                  leave=True, dynamic_ncols=True)
    if k + 1 > bar.n:
        bar.update(k + 1 - bar.n)
    if k == total - 1:
        bar.close()
        _BARS.pop(label, None)


def _print_progress(k, total, label="sweep", unit="steps"):
    k = int(np.max(np.asarray(k)))
    every = max(1, total // 20)
    if k % every == 0 or k == total - 1:
        done = (k + 1) / total
        bar = "#" * int(30 * done)
        end = "\n" if k == total - 1 else ""
        print(f"\r[dmft-jax] {label} {bar:<30} {k + 1}/{total} {unit}", end=end, file=sys.stderr, flush=True)


_TRACE = "/jax/core/compile/jaxpr_trace_duration"
_COMPILE = "/jax/core/compile/backend_compile_duration"
_HIT = "/jax/compilation_cache/cache_hits"


@contextlib.contextmanager
def compile_notice(meter, what: str):
    """With a :class:`TextProgressMeter` or :class:`TqdmProgressMeter`, say on stderr when ``what`` starts compiling (the
    first call with new sizes traces, then compiles: most of the wait on a CPU) and how long
    the compile took; silent when the compiled program is reused."""
    if not isinstance(meter, (TextProgressMeter, TqdmProgressMeter)):
        yield
        return
    state = {"traced": False, "compiled": 0.0, "hits": 0}

    def on_hit(event, **kwargs):
        if event == _HIT:
            state["hits"] += 1

    def on_event(event, duration, **kwargs):
        if event == _TRACE and not state["traced"]:
            state["traced"] = True
            print(f"[dmft-jax] compiling {what} (first call with these sizes; later calls reuse it) ...",
                  file=sys.stderr, flush=True)
        elif event == _COMPILE:
            state["compiled"] += duration

    jax.monitoring.register_event_duration_secs_listener(on_event)
    jax.monitoring.register_event_listener(on_hit)
    try:
        yield
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
        jax.monitoring.unregister_event_listener(on_hit)
        if state["traced"]:
            how = (f"taken from the compilation cache ({state['compiled']:.1f} s compiling the rest)" if state["hits"]
                   else f"compiled in {state['compiled']:.1f} s")
            print(f"[dmft-jax] {what}: {how}", file=sys.stderr, flush=True)


def steps_meter(meter, steps, config):
    """The meter of tune's optimiser steps: ``meter``, or by default a tqdm bar when the run
    (about three solves' worth per step) is estimated above a few seconds on a CPU."""
    if meter is not None:
        if not isinstance(meter, AbstractProgressMeter):
            raise ValueError(f"progress_meter must be a dmft_jax progress meter (e.g. dj.TqdmProgressMeter()); "
                             f"got {meter!r}")
        return meter
    long = long_run(config.n_steps, config.n_traj, config.response, config.dtype, config.K, 3 * steps)
    return TqdmProgressMeter("tune", "steps") if long else NoProgressMeter()
