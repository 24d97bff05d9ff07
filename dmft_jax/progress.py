"""Progress meters: passed to :func:`dmft_jax.solve` as ``progress_meter=``.

A meter's ``step(k, T)`` is called inside the compiled sweep at every step ``k``; the
text meter reaches the host through ``jax.debug.callback``, so it works under ``jit`` and
``vmap`` (a batch reports its most advanced point). Off by default in library calls, on in
the command line.
"""
from __future__ import annotations

import abc
import functools
import sys

import equinox as eqx
import jax
import numpy as np


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
    """A bar on stderr, updated about 20 times per solve; ``label`` names what is counted."""

    label: str = eqx.field(static=True, default="sweep")
    unit: str = eqx.field(static=True, default="steps")

    def step(self, k, T):
        jax.debug.callback(functools.partial(_print_progress, label=self.label, unit=self.unit), k, T)


def _print_progress(k, total, label="sweep", unit="steps"):
    k = int(np.max(np.asarray(k)))
    every = max(1, total // 20)
    if k % every == 0 or k == total - 1:
        done = (k + 1) / total
        bar = "#" * int(30 * done)
        end = "\n" if k == total - 1 else ""
        print(f"\r[dmft-jax] {label} {bar:<30} {k + 1}/{total} {unit}", end=end, file=sys.stderr, flush=True)
