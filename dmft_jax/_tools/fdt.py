"""The fluctuation-dissipation relation between the weights' correlation and response, and
the effective temperature of SGD (docs/equations.md, section 5.5).

In equilibrium at temperature ``T`` (Langevin dynamics sampling ``exp(-E / T)``) the connected
correlation ``C(t, t') = (1/d) <(w(t) - <w(t)>) . (w(t') - <w(t')>)>`` and the response
``R(t, t')`` to a field applied at ``t'`` obey ``T R(t, t') = d C(t, t') / dt'`` for ``t > t'``.
The ratio ``T_eff(t, t') = (d C / dt') / R`` defines an effective temperature out of equilibrium
(Cugliandolo-Kurchan-Peliti): SGD's selection noise heats the weights although no bath is there.

In discrete time (step ``eta``) the derivative is the centred difference
``(C[k, l+1] - C[k, l-1]) / (eta_{l-1} + eta_l)``: for a linear update ``w_{k+1} = A w_k +
sqrt(2 eta T) xi_k`` it gives ``T R[k, l]`` exactly (a one-sided difference would be off by a
factor ``1 / (1 - eta H / 2)``).
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from .. import _validate


class FDT(eqx.Module):
    """The fluctuation-dissipation analysis of a :class:`~dmft_jax.Solution` (NumPy arrays;
    ``k`` indexes the later time ``t``, ``l`` the earlier ``t'``).

    - ``C``: the connected correlation ``C_perp = C - m m^T``; ``R``: the response;
    - ``chi[k, l] = sum_{l <= j < k} eta_j R[k, j]``: the integrated response, the change of
      ``w(t)`` per unit of a constant field switched on at ``t'``;
    - ``temperature_map[k, l] = (C[k, l+1] - C[k, l-1]) / ((eta_{l-1} + eta_l) R[k, l])``, for
      ``1 <= l < k`` (NaN elsewhere); ``ratio = 1 / temperature_map``, the fluctuation-dissipation
      ratio ``X(t, t')`` in units of temperature;
    - ``temperature``: the effective temperature of the stationary regime, measured at the last
      time over the earlier times ``t' >= t_min``: ``sum_l dC / sum_l R`` over that window
      (a ratio of sums: exact for the linear case, and robust where ``R`` is small);
    - ``t_min``: the start of that window.
    """

    t: Any
    C: Any
    R: Any
    chi: Any
    temperature_map: Any
    ratio: Any
    temperature: Any
    t_min: Any

    def parametric(self, k: int = -1):
        """``(C[k, l], chi[k, l])`` for ``l = 0..k``: the parametric plot of the integrated
        response against the correlation at the later time ``t_k``. In equilibrium it is the
        straight line ``chi = (C[k, k] - C[k, l]) / T``, up to a discretisation factor
        ``1 - eta H / 2`` of its slope (``H`` the curvature; the sums are one-sided): the
        temperature itself is measured by centred differences, which have no such bias."""
        k = k % len(self.t)
        return self.C[k, : k + 1], self.chi[k, : k + 1]


def fdt(solution, t_min: float | None = None) -> FDT:
    """Fluctuation-dissipation analysis of one ``solution`` (not a batch: index a grid first).

    ``t_min``: the start of the stationary window for ``temperature`` (default: half of the
    horizon); it needs at least two steps before the last time.
    """
    if hasattr(solution, "C") and (solution.C is None or solution.R is None):
        raise ValueError("solution: a CompressedHistory solve keeps no two-time C and R (docs/equations.md, section "
                         "2.10); solve with CausalSweep(history=dj.FullHistory()) for an FDT analysis")
    if not hasattr(solution, "C") or not hasattr(solution, "R"):
        raise ValueError(f"solution: fdt analyses a DMFT solution (dj.solve: its correlation C and response R); got "
                         f"{type(solution).__name__}")
    t = np.asarray(solution.t, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"solution: fdt takes one solution; this one has a batch of shape {t.shape[:-1]} "
                         "(index it first, e.g. jax.tree_util.tree_map(lambda a: a[0], grid))")
    m = np.asarray(solution.m, dtype=float)
    if m.ndim != 1:
        raise ValueError(f"solution: fdt analyses a single unit (a dj.Problem); this is a committee's solution "
                         f"(K = {m.shape[-1]} units: its C and R are K x K blocks)")
    ok = getattr(solution, "ok", True)
    if not np.all(np.asarray(ok)):  # a failed solve's kernels are no dynamics to analyse
        raise ValueError(f"solution: fdt of a failed solve ({solution.message}); no FDT analysis")
    C = np.asarray(solution.C, dtype=float) - np.outer(m, m)
    R = np.asarray(solution.R, dtype=float)
    if not (np.all(np.isfinite(C)) and np.all(np.isfinite(R))):
        raise ValueError(f"solution: its C or R is not finite ({solution.message}); no FDT analysis")
    size = len(t)
    if size < 4:
        raise ValueError(f"solution: fdt needs at least 3 steps; got {size - 1}")
    dts = np.diff(t)
    if t_min is None:
        t_min = 0.5 * t[-1]
    _validate.check("t_min", t_min, lambda a: a == a, f"a time in [{t[1]:g}, {t[-3]:g}]")  # a number, finite
    t_min = float(t_min)
    if not t[1] <= t_min <= t[-3]:
        raise ValueError(f"t_min must be in [{t[1]:g}, {t[-3]:g}] (at least two steps before the last time); "
                         f"got {t_min:g}")
    # integrated response: chi[k, l] = sum_{j = l}^{k-1} eta_j R[k, j]
    Rw = np.tril(R, -1) * np.append(dts, 0.0)[None, :]
    chi = np.cumsum(Rw[:, ::-1], axis=1)[:, ::-1]
    chi = np.tril(chi)
    # centred derivative in the earlier time, at l = 1 .. size-2
    dC = np.full_like(C, np.nan)
    dC[:, 1:-1] = (C[:, 2:] - C[:, :-2]) / (dts[:-1] + dts[1:])[None, :]
    k_idx, l_idx = np.indices(C.shape)
    valid = (l_idx >= 1) & (l_idx < k_idx)
    with np.errstate(divide="ignore", invalid="ignore"):
        temp_map = np.where(valid, dC / R, np.nan)
        ratio = np.where(valid, R / dC, np.nan)
    k = size - 1
    window = np.arange(1, k)
    window = window[t[window] >= t_min]
    temperature = float(np.sum(dC[k, window]) / np.sum(R[k, window]))
    return FDT(t=t, C=C, R=R, chi=chi, temperature_map=temp_map, ratio=ratio, temperature=temperature,
               t_min=t_min)
