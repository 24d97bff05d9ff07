"""Figures that explain themselves (dmft_jax.plot.compare): the parameters in the title,
labelled axes, a residual row in units of the combined standard error whose values are the
right ones, a log time axis on request, and one display in Jupyter."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import dmft_jax as dj  # noqa: E402

P = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01)
A = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)


@pytest.fixture(scope="module")
def pair():
    sol = dj.solve(P, A, t_max=2.0, n_traj=1024, key=0, errors=dj.GroupErrors(8))
    sim = dj.simulate(P, A, t_max=2.0, d=100, n_seeds=3, key=1)
    return sol, sim


def test_title_labels_and_residuals(pair):
    sol, sim = pair
    fig = dj.plot.compare(sol, sim)
    title = fig._suptitle.get_text()
    for part in ("TwoCluster(rho=0.5)", "Logistic", "alpha=2", "Delta=0.5", "lambda=0.05", "R0=0.01",
                 "PersistentSGD", "eta=0.2", "b=0.3", "tau=1.667"):
        assert part in title, (part, title)
    top, bottom = fig.axes[:3], fig.axes[3:6]
    assert all(ax.get_ylabel() for ax in top) and all(ax.get_xlabel() for ax in bottom)
    # the residual points of eps_gen are (DMFT - simulation) / sqrt(se_dmft^2 + se_sim^2)
    x, z = bottom[0].lines[0].get_data()
    k = [int(np.argmin(np.abs(np.asarray(sim.t) - s))) for s in x]
    expect = (np.asarray(sol.eps_gen)[k] - np.asarray(sim.eps_gen)[k]) / np.sqrt(
        np.asarray(sol.eps_gen_se)[k] ** 2 + np.asarray(sim.eps_gen_se)[k] ** 2)
    live = np.isfinite(expect)
    assert live.sum() >= 5
    np.testing.assert_allclose(z[live], expect[live], rtol=1e-6)
    # and a DMFT that agrees with the simulation stays mostly inside +-3 combined se
    assert np.mean(np.abs(z[live]) < 3) > 0.8
    plt.close(fig)


def test_overlays_group_by_label_and_log_axis(pair):
    sol, sim = pair
    fig, axes = plt.subplots(1, 3)
    dj.plot.compare(sol, sim, axes=axes, label="b=0.3", color="C1", logx=True)
    labels = axes[0].get_legend_handles_labels()[1]
    assert "b=0.3" in labels and "b=0.3: simulation d=100" in labels
    assert axes[0].get_xscale() == "symlog" and axes[0].get_xlim()[0] == 0.0  # no negative times
    with pytest.raises(ValueError, match="residuals"):
        dj.plot.compare(sol, sim, axes=axes, residuals=True)
    with pytest.raises(ValueError, match="residuals"):
        dj.plot.compare(sol, residuals=True)
    plt.close(fig)


def test_one_display_in_jupyter(pair, monkeypatch):
    """Under the inline backend the figure is handed to the caller (shown once, as the cell's
    value), not left in pyplot to be drawn a second time at the end of the cell."""
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "module://matplotlib_inline.backend_inline")
    fig = dj.plot.compare(pair[0])
    assert fig.number not in plt.get_fignums()
    monkeypatch.undo()
    fig = dj.plot.compare(pair[0])
    assert fig.number in plt.get_fignums()
    plt.close(fig)


def test_grid_heat_map_and_curve():
    g = dj.solve_grid(P, A, {"lam": [0.0, 0.1], "b": [0.2, 0.3, 0.5]}, t_max=0.4, n_traj=128, key=0)
    fig = dj.plot.grid(g)
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("b", "lam")
    drawn = ax.collections[0].get_array().reshape(2, 3)
    np.testing.assert_allclose(drawn, np.asarray(g.eps_gen)[..., -1])  # each cell its point's value
    plt.close(fig)
    g1 = dj.solve_grid(P, A, {"lam": [0.0, 0.1, 0.2]}, t_max=0.4, n_traj=128, key=0, errors=dj.GroupErrors(4))
    fig = dj.plot.grid(g1, "q")
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.asarray(g1.q)[:, -1])
    plt.close(fig)
    with pytest.raises(ValueError, match="solution"):
        dj.plot.grid(dj.solve(P, A, t_max=0.4, n_traj=128, key=0))


@pytest.mark.slow  # compiles the adjoint
def test_tune_history():
    res = dj.tune(P, A, ["lam"], t_max=0.4, n_traj=128, steps=2, key=0)
    fig = dj.plot.tune(res)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), res.history["objective"])
    assert fig.axes[1].get_ylabel() == "lam"
    plt.close(fig)
    with pytest.raises(ValueError, match="result"):
        dj.plot.tune(res.solution)


def test_title_of_teacher_data_names_no_delta():
    """A teacher's inputs have Delta = 1 fixed: the title does not list it as a parameter."""
    from dmft_jax._results.plot import describe

    P2 = dj.Problem(dj.TeacherStudent(), "logistic", alpha=2.0, lam=0.05)
    text = describe(P2, dj.GD(0.2))
    assert "Delta" not in text and "alpha=2" in text and "GD: eta=0.2" in text
