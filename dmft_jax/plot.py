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

    if axes is None:
        matplotlib.use(matplotlib.get_backend())
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
    else:
        fig = axes[0].figure
    panels = [("eps_gen", "generalisation error"), ("train_loss", "training loss / d"),
              ("train_acc", "training accuracy")]
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
            ax.errorbar(t[::step], np.asarray(getattr(simulation, name))[::step],
                        yerr=np.asarray(getattr(simulation, name + "_se"))[::step], fmt="o", ms=3,
                        color=color, alpha=0.8, label=f"simulation d={d}")
        ax.set_xlabel("t")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
