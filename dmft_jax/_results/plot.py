"""The standard figure: generalisation error, training loss and training accuracy against
time, DMFT curves (a +-2 standard-error band where the solve has errors) over finite-``d``
simulation means with error bars, the problem's and algorithm's parameters in the title,
and, when both are given, a residual row ``(DMFT - simulation) / combined se``."""
from __future__ import annotations

import numpy as np

PANELS = (("eps_gen", "generalisation error", r"$\epsilon_{gen}(t)$"),
          ("train_loss", "training loss / d", r"$\mathcal{L}_{train}(t) / d$"),
          ("train_acc", "training accuracy", "fraction of training samples correct"))


def _value(x):
    """A parameter as a short number (``None`` when it is not a concrete scalar)."""
    try:
        a = np.asarray(x)
    except Exception:  # a tracer, a function
        return None
    return f"{float(a):.4g}" if a.ndim == 0 and a.dtype.kind in "fiu" else None


def describe(problem, algorithm) -> str:
    """``'TwoCluster(rho=0.5), Logistic: alpha=2 Delta=0.5 lambda=0 R0=0.01 | PersistentSGD:
    eta=0.2 b=0.3 tau=1.667'``: the parameters a figure of this solve must name."""
    parts = []
    single = getattr(problem, "problem", problem)  # a committee's problem
    if single is not None and hasattr(single, "alpha"):
        model = single.model
        fields = [f"{k}={_value(getattr(model, k))}" for k in getattr(model, "__dataclass_fields__", {})
                  if not k.startswith(("default", "unit")) and _value(getattr(model, k)) is not None]
        head = f"{type(model).__name__}({', '.join(fields)}), {type(single.loss).__name__}"
        if single is not problem:
            head += f", committee of K = {getattr(problem, 'K', '?')}"
        names = (("alpha", "alpha"), ("delta", "Delta"), ("lam", "lambda"), ("R0", "R0"))
        if getattr(model, "unit_delta", False):  # Delta is fixed at 1 (a teacher's inputs): not a parameter
            names = tuple(n for n in names if n[0] != "delta")
        parts.append(head + ": " + " ".join(f"{s}={_value(getattr(single, k))}" for k, s in names
                                             if _value(getattr(single, k, None)) is not None))
    if algorithm is not None:
        names = [k for k in ("eta", "b", "tau") if _value(getattr(algorithm, k, None)) is not None]
        eta = getattr(algorithm, "eta", None)
        text = " ".join(f"{k}={_value(getattr(algorithm, k))}" for k in names)
        if "eta" not in names and eta is not None:
            text = ("eta: " + type(eta).__name__ + " " + text).strip()  # a schedule
        parts.append(f"{type(algorithm).__name__}: {text}")
    return " | ".join(parts)


def compare(solution=None, simulation=None, *, axes=None, label=None, color=None, path=None, residuals=None,
            logx=False, title=None):
    """Draw ``solution`` (lines; with standard errors, a band of +-2 se around them) and/or
    ``simulation`` (points with 1-sigma error bars) in three panels.

    - ``axes``: three matplotlib axes to draw into (to overlay several solves); by default a
      new figure, titled with the problem's and algorithm's parameters (``title`` replaces it).
    - ``residuals``: a second row with ``(DMFT - simulation) / se`` at the simulation's times,
      ``se`` the two standard errors combined, with the +-2 lines: agreement is visible at
      any scale. Default: on when a new figure shows both a solution and a simulation.
    - ``logx``: a logarithmic time axis (linear near ``t = 0``), for long runs.
    - ``label``, ``color``: of this solve's curves; the simulation's points carry the same
      label, so overlays stay grouped by parameter.

    Returns the matplotlib figure; saves it to ``path`` when given (PNG, PDF, ...). In Jupyter
    a figure made here shows once, as the cell's value (or with ``display(fig)``).
    """
    _check_inputs(solution, simulation)
    made = axes is None
    if residuals is None:
        residuals = made and solution is not None and simulation is not None
    if residuals and (solution is None or simulation is None):
        raise ValueError("residuals: needs both a solution and a simulation")
    if made:
        import matplotlib.pyplot as plt

        rows = 2 if residuals else 1
        fig, grid = plt.subplots(rows, 3, figsize=(13, 3.8 + 1.6 * (rows - 1)), constrained_layout=True, squeeze=False,
                                 sharex="col", gridspec_kw={"height_ratios": [3, 1.2][:rows]})
        axes, res_axes = list(grid[0]), (list(grid[1]) if residuals else None)
    else:
        if residuals:
            raise ValueError("residuals: only on a figure compare makes itself (axes=None)")
        fig, res_axes = axes[0].figure, None
    for i, (ax, (name, panel, ylabel)) in enumerate(zip(axes, PANELS)):
        if solution is not None:
            _draw_solution(ax, solution, name, label, color)
        if simulation is not None:
            _draw_simulation(ax, simulation, name, label, color)
        ax.set_ylabel(ylabel)
        ax.set_title(panel)
        ax.grid(alpha=0.3)
        if res_axes is not None:
            _draw_residuals(res_axes[i], solution, simulation, name, color)
        bottom = res_axes[i] if res_axes is not None else ax
        bottom.set_xlabel(r"time $t = k\,\eta$")
        if logx:
            for a in (ax, bottom):
                a.set_xscale("symlog", linthresh=_first_step(solution, simulation))
                a.set_xlim(left=0.0)  # time starts at 0: no negative decades of the symlog axis
    axes[0].legend(fontsize=8)
    if made or title is not None:
        head = title if title is not None else describe(getattr(solution or simulation, "problem", None),
                                                        getattr(solution or simulation, "algorithm", None))
        if head:
            fig.suptitle(head, fontsize=10)
    if path is not None:
        fig.savefig(path, dpi=120)
    if made:
        _once_in_jupyter(fig)
    return fig


def _check_inputs(solution, simulation):
    for name, res in (("solution", solution), ("simulation", simulation)):
        if res is None:
            continue
        if not hasattr(res, "t") or getattr(res, "kind", None) not in (name, "committee_" + name):
            raise ValueError(f"{name}: compare takes a solution (dj.solve) first and a simulation (dj.simulate) second; "
                             f"got {type(res).__name__} as the {name}")
        if np.ndim(res.t) != 1:
            raise ValueError(f"{name}: compare draws one result; this one has a batch of shape {np.shape(res.t)[:-1]} "
                             "(index a grid first, e.g. jax.tree_util.tree_map(lambda a: a[i], grid))")


def _draw_solution(ax, solution, name, label, color):
    t, v = np.asarray(solution.t), np.asarray(getattr(solution, name))
    line, = ax.plot(t, v, color=color, label=label or "DMFT")
    se = getattr(solution, name + "_se", None)
    if se is not None:
        se = 2 * np.asarray(se)
        ax.fill_between(t, v - se, v + se, color=line.get_color(), alpha=0.3, lw=0,
                        label="DMFT ± 2 se" if label is None else None)


def _simulated(simulation, name):
    """The simulation's curve and its se for a panel (a committee's simulation has no
    closed-form eps_gen: its held-out test error)."""
    shown = "test_error" if name == "eps_gen" and getattr(simulation, name, None) is None else name
    return np.asarray(getattr(simulation, shown)), np.asarray(getattr(simulation, shown + "_se"))


def _draw_simulation(ax, simulation, name, label, color):
    t = np.asarray(simulation.t)
    step = max(1, len(t) // 40)
    v, se = _simulated(simulation, name)
    d = simulation.config["d"]
    ax.errorbar(t[::step], v[::step], yerr=se[::step], fmt="o", ms=3, color=color, alpha=0.8, capsize=2,
                label=f"simulation d={d}" if label is None else f"{label}: simulation d={d}")


def _draw_residuals(ax, solution, simulation, name, color):
    t = np.asarray(simulation.t)
    v, se = _simulated(simulation, name)
    dmft = np.interp(t, np.asarray(solution.t), np.asarray(getattr(solution, name)))
    se_dmft = getattr(solution, name + "_se", None)
    var = se ** 2 + (0 if se_dmft is None else np.interp(t, np.asarray(solution.t), np.asarray(se_dmft)) ** 2)
    ok = var > 0
    z = np.where(ok, (dmft - v) / np.sqrt(np.where(ok, var, 1)), np.nan)
    step = max(1, len(t) // 40)
    ax.plot(t[::step], z[::step], "o", ms=3, color=color)
    for y in (-2, 2):
        ax.axhline(y, color="k", ls="--", lw=0.8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("(DMFT - sim) / se")
    ax.grid(alpha=0.3)


def _first_step(solution, simulation):
    t = np.asarray((solution if solution is not None else simulation).t)
    return float(t[1]) if len(t) > 1 and t[1] > 0 else 1.0


def _once_in_jupyter(fig):
    """With Jupyter's inline backend, pyplot would draw the figure at the end of the cell and
    Jupyter again as the cell's value: hand it over to the caller instead."""
    import matplotlib
    import matplotlib.pyplot as plt

    if "inline" in matplotlib.get_backend():
        plt.close(fig)


def grid(solution, observable="eps_gen", *, time=-1, ax=None, path=None, cmap="viridis"):
    """A heat map of ``observable`` at ``time`` (an index into ``t``; default the last) over
    a two-parameter grid of :func:`dmft_jax.solve_grid` (``product=True``), the parameters on
    the axes, points that failed left blank. A one-parameter grid is drawn as a curve with
    its +-2 se band when the grid has errors. Returns the figure."""
    import matplotlib.pyplot as plt

    points = getattr(solution, "grid", None)
    if not isinstance(points, dict) or not points:
        raise ValueError("solution: grid takes the result of dmft_jax.solve_grid; this one has no grid")
    names = list(points)
    value = np.asarray(getattr(solution, observable))
    if value.ndim != len(names) + 1:
        raise ValueError(f"observable: {observable!r} is not a curve per grid point (shape {value.shape})")
    ok = np.asarray(solution.result.code) == 0
    v = np.where(ok, value[..., time], np.nan)
    fig = (plt.subplots(figsize=(5.2, 4.0), constrained_layout=True)[1] if ax is None else ax).figure
    ax = ax if ax is not None else fig.axes[0]
    t = float(np.asarray(solution.t).reshape(-1, np.shape(solution.t)[-1])[0, time])
    if len(names) == 1:
        x = np.asarray(points[names[0]])
        ax.plot(x, v, "o-", label=observable)
        se = getattr(solution, observable + "_se", None)
        if se is not None:
            e = 2 * np.asarray(se)[..., time]
            ax.fill_between(x, v - e, v + e, alpha=0.3, lw=0, label="± 2 se")
        ax.set_xlabel(names[0])
        ax.set_ylabel(f"{observable}(t = {t:.4g})")
        ax.legend(fontsize=8)
    elif len(names) == 2:
        # the grid's axes follow the order of solve_grid's params (its dict here may be sorted):
        # the parameter constant along axis 1 indexes the rows
        names.sort(key=lambda n: not np.allclose(points[n], np.asarray(points[n])[:, :1]))
        x, y = (np.asarray(points[n]) for n in names)
        mesh = ax.pcolormesh(y[0, :], x[:, 0], v, shading="nearest", cmap=cmap)
        fig.colorbar(mesh, ax=ax, label=f"{observable}(t = {t:.4g})")
        ax.set_xlabel(names[1])
        ax.set_ylabel(names[0])
    else:
        raise ValueError(f"solution: grid draws one or two parameters; this grid has {names}")
    ax.set_title(describe(getattr(solution, "problem", None), getattr(solution, "algorithm", None)), fontsize=7)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def tune(result, *, path=None):
    """The history of a :func:`dmft_jax.tune` run: the objective per step and each tuned
    parameter per step, with the objective's start and end (and the improvement's standard
    error when the run had errors) in the title. Returns the figure."""
    import matplotlib.pyplot as plt

    history = getattr(result, "history", None)
    if not isinstance(history, dict) or "objective" not in history:
        raise ValueError(f"result: tune takes the result of dmft_jax.tune; got {type(result).__name__}")
    params = [n for n in history if n != "objective"]
    fig, axes = plt.subplots(1, 1 + len(params), figsize=(4.2 * (1 + len(params)), 3.4), constrained_layout=True,
                             squeeze=False)
    axes = axes[0]
    obj = np.asarray(history["objective"], dtype=float)
    axes[0].plot(np.arange(len(obj)), obj, "o-", ms=3)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("objective")
    for ax, n in zip(axes[1:], params):
        vals = np.asarray(history[n], dtype=float).reshape(len(history[n]), -1)
        ax.plot(np.arange(len(vals)), vals, "o-", ms=3)
        ax.set_xlabel("step")
        ax.set_ylabel(n)
    for ax in axes:
        ax.grid(alpha=0.3)
    head = f"objective {obj[0]:.5g} -> {obj[-1]:.5g}"
    if getattr(result, "improvement_se", None) is not None:
        head += f" (improvement {float(result.improvement):.3g} ± {float(result.improvement_se):.2g})"
    fig.suptitle(head, fontsize=10)
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
