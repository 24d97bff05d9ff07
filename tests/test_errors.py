"""Standard errors of a solve (``errors=dj.GroupErrors``, docs/equations.md section 2.9):
they match the spread of the values over independent keys, leave the values unchanged,
reach grids, saved files, the plot and tune. The coverage test over many keys is slow;
``benchmarks/error_bars.py`` runs it at full size."""
import warnings

import jax
import matplotlib
import numpy as np
import optax
import pytest

import dmft_jax as dj

matplotlib.use("Agg")

TWO = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
THREE = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.0, R0=1.0, m0=0.05)
PSGD = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
# one size for the default tests, so that they share one compiled program
SIZE = dict(t_max=3.0, n_traj=1024)


def _keys(problem, algo, keys, steps, t_max, n_traj, groups, names=("m", "q", "eps_gen", "train_loss")):
    vals, ses = [], []
    for k in keys:
        s = dj.solve(problem, algo, t_max, n_traj, key=k, errors=dj.GroupErrors(groups))
        vals.append([np.asarray(getattr(s, n))[list(steps)] for n in names])
        ses.append([np.asarray(getattr(s, n + "_se"))[list(steps)] for n in names])
    return np.array(vals), np.array(ses)


def test_standard_errors_match_the_spread_over_keys():
    # 24 keys: the spread's own relative error is about 15%; a standard error that forgot the
    # sqrt(groups) (a factor 2.8) or the kernels' feedback fails
    vals, ses = _keys(TWO, PSGD, range(24), (5, 15), SIZE["t_max"], SIZE["n_traj"], 8)
    ratio = np.std(vals, axis=0, ddof=1) / np.mean(ses, axis=0)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


def test_values_unchanged():
    plain = dj.solve(TWO, PSGD, **SIZE, key=3)
    with_se = dj.solve(TWO, PSGD, **SIZE, key=3, errors=dj.GroupErrors(8))
    for n in ("m", "q", "eps_gen", "train_loss", "C", "M_R"):
        np.testing.assert_array_equal(np.asarray(getattr(plain, n)), np.asarray(getattr(with_se, n)))
    assert plain.se is None and plain.eps_gen_se is None
    assert with_se.eps_gen_se.shape == with_se.eps_gen.shape and with_se.C_se.shape == with_se.C.shape
    assert float(with_se.eps_gen_se[0]) == 0.0 and np.all(np.asarray(with_se.eps_gen_se[1:]) > 0)
    assert int(with_se.stats["n_groups_failed"]) == 0


@pytest.mark.slow
def test_errors_carry_no_gradient():
    def f(lam, errors):
        p = TWO.astype(np.float64)
        p = type(p)(p.model, p.loss, p.alpha, p.delta, lam, p.R0, p.m0)
        return dj.solve(p, dj.GD(0.2), n_steps=5, n_traj=256, key=0, errors=errors).eps_gen[-1]

    g0 = jax.grad(f)(0.1, None)
    g1 = jax.grad(f)(0.1, dj.GroupErrors(4))
    assert float(g0) == pytest.approx(float(g1), rel=1e-12)


@pytest.mark.slow
def test_grid_returns_errors_per_point():
    g = dj.solve_grid(TWO, PSGD, {"lam": [0.0, 0.1]}, t_max=1.0, n_traj=256, errors=dj.GroupErrors(4))
    assert g.eps_gen_se.shape == g.eps_gen.shape == (2, 6)
    one = dj.solve(dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.01), PSGD,
                   1.0, 256, errors=dj.GroupErrors(4))
    np.testing.assert_allclose(np.asarray(g.eps_gen_se[1]), np.asarray(one.eps_gen_se), rtol=1e-9, atol=1e-15)


def test_save_load_and_plot_band(tmp_path):
    s = dj.solve(TWO, PSGD, **SIZE, errors=dj.GroupErrors(8))
    s.save(tmp_path / "sol")
    back = dj.load(tmp_path / "sol")
    for n in ("eps_gen_se", "q_se", "M_C_se"):
        np.testing.assert_array_equal(getattr(back, n), np.asarray(getattr(s, n)))
    assert back.meta["config"]["errors"] == {"type": "GroupErrors", "groups": 8}
    for sol in (s, back):
        fig = dj.plot.compare(sol)
        assert len(fig.axes[0].collections) == 1  # the +-2 se band
    assert len(dj.plot.compare(dj.solve(TWO, PSGD, **SIZE)).axes[0].collections) == 0


def test_failed_replicas_give_nan_errors_and_a_warning():
    square = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = dj.solve(square, dj.GD(3.0), 60.0, 256, errors=dj.GroupErrors(4))
    assert not s.ok and int(s.stats["n_groups_failed"]) > 0
    assert np.all(np.isnan(np.asarray(s.eps_gen_se)))
    assert any("standard errors are NaN" in str(w.message) for w in caught)


@pytest.mark.slow  # heavy; run with -m slow (the default suite stays near 10 minutes)
@pytest.mark.filterwarnings("ignore:.*never moved from the start")
def test_tune_reports_the_noise_of_its_improvement():
    # a short tune: common random numbers make the difference far more precise than the value
    res = dj.tune(TWO, dj.GD(0.2), ["lam"], t_max=2.0, n_traj=512, steps=2, optimizer=optax.sgd(0.5),
                  errors=dj.GroupErrors(8))
    assert res.improvement == pytest.approx(float(res.objective) - res.history["objective"][0], abs=1e-12)
    assert 0 < res.improvement_se < 0.5 * res.objective_se
    assert res.within_noise == (abs(res.improvement) < 2 * res.improvement_se)
    assert res.solution.eps_gen_se is not None
    # no step at all: a zero improvement is within the noise (and says so); same sizes, no compile
    with pytest.warns(RuntimeWarning, match="within the Monte Carlo noise"):
        still = dj.tune(TWO, dj.GD(0.2), ["lam"], t_max=2.0, n_traj=512, steps=2, optimizer=optax.sgd(0.0),
                        errors=dj.GroupErrors(8))
    assert still.improvement == 0.0 and still.within_noise is True


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["two", "three-steep"])
def test_coverage_over_64_keys(setting):
    # |value - reference| < 2 se in 90-98% of the cases; the reference has 32x the trajectories
    # (error 5.7x smaller). Pooled over observables and times (64 keys resolve no single time).
    problem, algo, steps = (TWO, PSGD, (10, 25)) if setting == "two" else (THREE, PSGD, (25, 35))
    ref = dj.solve(problem, algo, 7.0, 32768, key=10**6)
    vals, ses = _keys(problem, algo, range(64), steps, 7.0, 1024, 16)
    names = ("m", "q", "eps_gen", "train_loss")
    r = np.array([np.asarray(getattr(ref, n))[list(steps)] for n in names])
    cover = np.mean(np.abs(vals - r) / ses < 2)
    assert 0.90 <= cover <= 0.98, cover


def test_moment_matching_is_exact_in_the_draws_and_unbiased():
    from dmft_jax._engine import process

    r = process.draw(jax.random.PRNGKey(2), TWO, PSGD, 10, 256, True, np.float64)
    for a in (r.zeta, r.u0[None], r.h0[None]):
        np.testing.assert_allclose(np.mean(np.asarray(a) ** 2, axis=-1), 1.0, rtol=1e-6)
    # the same curve within the Monte Carlo error, from other random numbers
    mm = dj.solve(TWO, PSGD, **SIZE, key=5, errors=dj.GroupErrors(8))
    plain = dj.solve(TWO, PSGD, **SIZE, key=6, trajectories=dj.Trajectories(moment_matching=False))
    for n in ("eps_gen", "q", "train_loss"):
        z = (np.asarray(getattr(mm, n)) - np.asarray(getattr(plain, n)))[1:] / np.asarray(getattr(mm, n + "_se"))[1:]
        assert np.max(np.abs(z)) < 4 * np.sqrt(2), (n, z)
    assert not np.allclose(np.asarray(mm.q), np.asarray(plain.q), rtol=1e-9)
