"""The standard three-panel figure: generalisation error, training loss and training
accuracy against time, DMFT curves over finite-``d`` simulation means with error bars."""
from __future__ import annotations

import numpy as np


def compare(solution=None, simulation=None, *, axes=None, label=None, color=None, path=None):
    """Draw ``solution`` (lines; with standard errors, a band of +-2 se around them) and/or
    ``simulation`` (points with 1-sigma error bars).

    Returns the matplotlib figure; saves it to ``path`` when given (PNG, PDF, ...).
    """
    import matplotlib

    for name, res in (("solution", solution), ("simulation", simulation)):
        if res is None:
            continue
        if not hasattr(res, "t") or getattr(res, "kind", None) not in (name, "committee_" + name):
            raise ValueError(f"{name}: compare takes a solution (dj.solve) first and a simulation (dj.simulate) second; "
                             f"got {type(res).__name__} as the {name}")
        if np.ndim(res.t) != 1:
            raise ValueError(f"{name}: compare draws one result; this one has a batch of shape {np.shape(res.t)[:-1]} "
                             "(index a grid first, e.g. jax.tree_util.tree_map(lambda a: a[i], grid))")
    if axes is None:
        matplotlib.use(matplotlib.get_backend())
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    else:
        fig = axes[0].figure
    panels = [("eps_gen", "generalisation error"), ("train_loss", "training loss / d"),
              ("train_acc", "training accuracy")]
    ylabels = {"eps_gen": r"$\epsilon_{gen}(t)$", "train_loss": r"$\mathcal{L}_{train}(t) / d$",
               "train_acc": "fraction of training samples correct"}
    for ax, (name, title) in zip(axes, panels):
        if solution is not None:
            t, v = np.asarray(solution.t), np.asarray(getattr(solution, name))
            line, = ax.plot(t, v, color=color, label=label or "DMFT")
            se = getattr(solution, name + "_se", None)
            if se is not None:
                se = 2 * np.asarray(se)
                ax.fill_between(t, v - se, v + se, color=line.get_color(), alpha=0.25, lw=0,
                                label="DMFT ± 2 se" if label is None else None)
        if simulation is not None:
            t = np.asarray(simulation.t)
            step = max(1, len(t) // 40)
            d = simulation.config["d"]
            # a committee's simulation has no closed-form eps_gen: its held-out test error
            shown = "test_error" if name == "eps_gen" and getattr(simulation, name, None) is None else name
            ax.errorbar(t[::step], np.asarray(getattr(simulation, shown))[::step],
                        yerr=np.asarray(getattr(simulation, shown + "_se"))[::step], fmt="o", ms=3,
                        color=color, alpha=0.8, label=f"simulation d={d}")
        ax.set_xlabel("time t = k eta")
        ax.set_ylabel(ylabels[name])
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def fdt(analysis, *, times=None, ax=None, path=None):
    """The parametric fluctuation-dissipation plot of an :class:`~dmft_jax.FDT` analysis: the
    integrated response ``chi(t, t')`` against the correlation ``C(t, t')`` at the later times
    ``times`` (default: the last), with the equilibrium line of slope ``-1 / T_eff`` through
    ``(C(t, t), 0)`` for the measured effective temperature. Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 3.8), constrained_layout=True)
    else:
        fig = ax.figure
    t = np.asarray(analysis.t)
    ks = [len(t) - 1] if times is None else [int(np.argmin(np.abs(t - s))) for s in times]
    for k in ks:
        C, chi = analysis.parametric(k)
        ax.plot(C, chi, "o-", ms=2, label=f"t = {t[k]:.3g}")
    C, _ = analysis.parametric(-1)
    T = float(analysis.temperature)
    if T > 0:
        c = np.linspace(C.min(), C[-1], 50)
        ax.plot(c, (C[-1] - c) / T, "k--", lw=1, label=f"slope -1/T_eff, T_eff = {T:.3g}")
    ax.set_xlabel("C(t, t')")
    ax.set_ylabel("chi(t, t')")
    ax.legend(fontsize=8)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
