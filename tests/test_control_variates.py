"""Control variates from the exactly solved quadratic surrogate (docs/equations.md, section
2.12): the corrected estimate against a reference of many more trajectories within the
stated standard errors, the variance it removes where the surrogate is strongly correlated
(early times of the seed setting), the fallback, the gradient, and bad inputs."""
import jax
import numpy as np
import pytest

import dmft_jax as dj

SEED = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, R0=0.01)
PSGD = dj.PersistentSGD(0.2)
KW = dict(t_max=10.0, response=dj.ProbeResponse(4))


@pytest.fixture(scope="module")
def reference():
    # 8x the trajectories, plain Monte Carlo with its standard errors
    return dj.solve(SEED, PSGD, n_traj=2**14, key=100, errors=dj.GroupErrors(16), **KW)


@pytest.fixture(scope="module")
def corrected():
    return dj.solve(SEED, PSGD, n_traj=2048, key=7, errors=dj.ControlVariates(), **KW)


def test_corrected_estimate_agrees_with_reference(corrected, reference):
    assert corrected.result.ok
    for name in ("m", "q", "eps_gen", "train_loss"):
        se = np.hypot(corrected.se[name], reference.se[name])[1:]
        z = (np.asarray(getattr(corrected, name)) - np.asarray(getattr(reference, name)))[1:] / se
        assert np.max(np.abs(z)) < 4.0, (name, np.max(np.abs(z)))


def test_removes_most_of_the_early_variance(corrected, tmp_path):
    k = 25  # t = 5: the surrogate's error is almost that of the logistic solve (correlation ~0.99)
    assert corrected.cv_gain_eps_gen[k] > 5 and corrected.cv_gain_train_loss[k] > 3
    assert np.all(np.asarray(corrected.cv_gain_eps_gen) >= 1.0)
    dj.save(corrected, tmp_path / "cv")  # the gains are saved with the solution
    loaded = dj.load(tmp_path / "cv")
    assert np.array_equal(loaded.cv_gain_eps_gen, np.asarray(corrected.cv_gain_eps_gen))
    assert np.array_equal(loaded.eps_gen, np.asarray(corrected.eps_gen))


@pytest.mark.slow
def test_fallback_keeps_the_plain_estimate(corrected):
    plain = dj.solve(SEED, PSGD, n_traj=2048, key=7, errors=dj.GroupErrors(16), **KW)
    k = 25
    # the standard error shrinks with it (the same replicas, without and with the correction)
    assert corrected.se["eps_gen"][k] < 0.5 * plain.se["eps_gen"][k]
    # where the fit fell back (gain 1) the value and standard error are the plain ones, exactly
    for name in ("m", "q", "eps_gen", "train_loss"):
        back = np.asarray(getattr(corrected, f"cv_gain_{name}")) == 1.0
        assert np.array_equal(np.asarray(getattr(corrected, name))[back], np.asarray(getattr(plain, name))[back])
        assert np.array_equal(np.asarray(corrected.se[name])[back], np.asarray(plain.se[name])[back])


@pytest.mark.slow
def test_without_fallback_every_time_is_corrected():
    sol = dj.solve(SEED, dj.GD(0.2), t_max=2.0, n_traj=512, key=3, response=dj.ProbeResponse(2),
                   errors=dj.ControlVariates(observables=("eps_gen",), fallback=False))
    assert np.all(np.asarray(sol.cv_gain_eps_gen)[1:] != 1.0) and sol.cv_gain_q is None


@pytest.mark.slow
def test_gradient_is_the_plain_estimates():
    def f(lam, errors):
        problem = dj.Problem(dj.TwoCluster(0.5), "logistic", lam=lam, R0=0.01)
        return dj.solve(problem, dj.GD(0.2), t_max=2.0, n_traj=512, key=1, response=dj.ProbeResponse(2),
                        errors=errors).eps_gen[-1]

    plain = jax.grad(f)(0.1, None)
    assert jax.grad(f)(0.1, dj.ControlVariates()) == plain and plain != 0


@pytest.mark.slow
def test_two_surrogates_remove_more_variance():
    one, two = (dj.solve(SEED, PSGD, n_traj=2048, key=7, errors=dj.ControlVariates(at=at), **KW)
                for at in ((0.0,), (0.0, 1.0)))
    assert two.result.ok
    late = slice(30, None)  # t > 6, where one surrogate explains less
    assert np.median(np.asarray(two.cv_gain_eps_gen)[late]) > np.median(np.asarray(one.cv_gain_eps_gen)[late])


@pytest.mark.slow
def test_grid_points_are_each_corrected():
    grid = dj.solve_grid(SEED, dj.GD(0.2), {"lam": np.array([0.0, 0.1])}, t_max=2.0, n_traj=512, key=3,
                         response=dj.ProbeResponse(2), errors=dj.ControlVariates())
    for i, lam in enumerate((0.0, 0.1)):
        one = dj.solve(dj.Problem(dj.TwoCluster(0.5), "logistic", lam=lam, R0=0.01), dj.GD(0.2), t_max=2.0,
                       n_traj=512, key=3, response=dj.ProbeResponse(2), errors=dj.ControlVariates())
        assert np.allclose(grid.eps_gen[i], one.eps_gen, atol=1e-12)


@pytest.mark.slow
def test_no_bias_and_coverage_over_keys(reference):
    # 32 keys of N = 1024 against the reference (16x the trajectories): the mean within 3.5 of its
    # standard errors; and +-2 se covering the keys' mean at 85-99% of the (key, time) pairs (the
    # keys' mean, not the reference: early on the corrected se is far below the reference's own)
    sols = [dj.solve(SEED, PSGD, n_traj=1024, key=1000 + i, errors=dj.ControlVariates(), **KW)
            for i in range(32)]
    for name in ("eps_gen", "q"):
        vals = np.stack([np.asarray(getattr(s, name)) for s in sols])[:, 1:]
        ses = np.stack([np.asarray(s.se[name]) for s in sols])[:, 1:]
        ref, ref_se = np.asarray(getattr(reference, name))[1:], np.asarray(reference.se[name])[1:]
        mean_se = np.hypot(vals.std(axis=0, ddof=1) / np.sqrt(len(sols)), ref_se)
        assert np.max(np.abs(vals.mean(axis=0) - ref) / mean_se) < 3.5, name
        cover = np.mean(np.abs(vals - vals.mean(axis=0)) < 2 * ses)
        assert 0.85 <= cover <= 0.99, (name, cover)


@pytest.mark.parametrize("kwargs, match", [
    (dict(at="zero"), "ControlVariates.at"),
    (dict(at=()), "at least one finite margin"),
    (dict(at=(0.0, float("inf"))), "at least one finite margin"),
    (dict(at=(1.0, 1.0)), "each margin once"),
    (dict(observables=("C",)), "observables"),
    (dict(observables=()), "observables"),
    (dict(observables=None), "observables"),
    (dict(observables=("q", "q")), "each once"),
    (dict(at="01"), "ControlVariates.at"),
    (dict(at=(True,)), "ControlVariates.at"),
    (dict(fallback="yes"), "fallback"),
    (dict(groups=4), "at least 5"),
    (dict(groups=6, at=(0.0, 1.0, 2.0)), "at least 7"),
    (dict(groups=1), "groups must be an integer >= 2"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.ControlVariates(**kwargs)


@pytest.mark.parametrize("problem, alg, kwargs, match", [
    (dj.Problem(dj.ThreeCluster(), m0=0.1), dj.GD(0.2), {}, "ThreeCluster has a non-linear read-out"),
    (dj.Committee(SEED, dj.SoftCommittee(2)), dj.GD(0.2), {}, "committee"),
    (SEED, dj.GD(0.2, beta=0.5), {}, "momentum"),
    (SEED, dj.GD(0.2), dict(t_max=300.0), "limit of 1000"),
    (SEED, dj.GD(0.2), dict(solver=dj.CausalSweep(history=dj.CompressedHistory())), "compressed history"),
    (dj.Problem(dj.TwoCluster(), lambda v: -(v**2) + 0.1 * v**4), dj.GD(0.2), {}, "positive curvature"),
    (SEED, dj.GD(0.2), dict(n_traj=500), "multiple of 32"),
])
def test_refusals(problem, alg, kwargs, match):
    kwargs = dict(dict(t_max=2.0, n_traj=512, errors=dj.ControlVariates()), **kwargs)
    with pytest.raises(ValueError, match=match):
        dj.solve(problem, alg, **kwargs)


@pytest.mark.slow
def test_tune_reports_the_corrected_objective_and_its_errors():
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, R0=0.01, lam=0.05)
    kw = dict(t_max=2.0, n_traj=1024, steps=3, response=dj.ProbeResponse(2), key=1)
    plain = dj.tune(problem, dj.GD(0.2), ["lam"], errors=dj.GroupErrors(16), **kw)
    cv = dj.tune(problem, dj.GD(0.2), ["lam"], errors=dj.ControlVariates(), **kw)
    assert cv.objective == cv.solution.eps_gen[-1] and cv.objective_se < 0.5 * plain.objective_se
    start = dj.solve(problem, dj.GD(0.2), t_max=2.0, n_traj=1024, key=1, response=dj.ProbeResponse(2),
                     errors=dj.ControlVariates())
    assert np.isclose(cv.start_objective, start.eps_gen[-1], rtol=1e-12)  # both ends corrected alike
    assert abs(cv.improvement - plain.improvement) < 3 * np.hypot(cv.improvement_se, plain.improvement_se) + 1e-6
