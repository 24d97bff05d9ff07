"""Teacher-student data (docs/equations.md, section 5.3): the DMFT against finite-d
simulations, regression against the exact Marchenko-Pastur solution of gradient descent on
ridge regression, gradients in the new parameters against finite differences, and the
empirical-risk minimiser against long-time full-batch GD.

The agreement criterion with simulations is test_physics's (4 simulation standard errors
plus a finite-size and Monte Carlo allowance; its negative control here: the DMFT without
label noise fails against the simulation with it). The exact solution has no error of its
own, so there the DMFT must lie within 4 of its own standard errors (GroupErrors) plus 1e-4
at every step; its negative control: the exact curves at another label noise are rejected.
"""
import equinox as eqx
import jax
import numpy as np
import pytest

import dmft_jax as dj
from gradcheck import check_pathwise
from dmft_jax import ridge_gd
from test_physics import violations

TS = dj.Problem(dj.TeacherStudent(0.1), alpha=2.0, lam=0.05, R0=1.0)
PSGD = dj.PersistentSGD(0.2, 0.3, 1.0)


@pytest.fixture(scope="module")
def ts_pair():
    sol = dj.solve(TS, PSGD, t_max=6.0, n_traj=2**15, key=0)
    sim = dj.simulate(TS, PSGD, t_max=6.0, d=1000, n_seeds=16, key=100)
    assert sol.result.ok and sim.result.ok
    return sol, sim


def test_teacher_student_classification_against_simulation(ts_pair):
    sol, sim = ts_pair
    assert violations(sol, sim) == {}
    # the held-out error of the simulation is against the noiseless teacher, as eps_gen
    x, y, se = (np.asarray(a)[-1] for a in (sol.eps_gen, sim.test_error, sim.test_error_se))
    assert abs(x - y) < 4 * se + 0.01 * x
    assert float(sol.q[0]) == pytest.approx(1.0)  # u[0] ~ N(0, R0): Delta = 1


def test_label_noise_matters_to_the_criterion(ts_pair):
    _, sim = ts_pair
    clean = dj.solve(eqx.tree_at(lambda p: p.model.label_noise, TS, 0.0), PSGD, t_max=6.0, n_traj=2**15, key=0)
    assert {"eps_gen", "train_loss", "train_acc"} <= set(violations(clean, sim))


@pytest.mark.parametrize("alpha, lam, noise, eta, R0, m0", [
    (2.0, 0.1, 0.5, 0.2, 1.0, 0.0),
    # fewer samples than dimensions (an atom of the spectrum at 0); 7 s, run with -m slow
    pytest.param(0.5, 0.0, 0.3, 0.1, 0.5, 0.2, marks=pytest.mark.slow),
], ids=["alpha2_ridge", "alpha05_ridgeless"])
def test_regression_gd_matches_marchenko_pastur(alpha, lam, noise, eta, R0, m0):
    problem = dj.Problem(dj.TeacherRegression(noise), "squared_error", alpha=alpha, lam=lam, R0=R0, m0=m0)
    sol = dj.solve(problem, dj.GD(eta), t_max=4.0, n_traj=2**14, key=1, errors=dj.GroupErrors(16))
    exact = ridge_gd(problem, dj.GD(eta), t_max=4.0)
    for name in ("m", "q", "eps_gen", "train_loss"):
        x, se = np.asarray(getattr(sol, name)), np.asarray(getattr(sol, name + "_se"))
        assert np.all(np.abs(x - getattr(exact, name)) <= 4 * se + 1e-4), name
    wrong = ridge_gd(eqx.tree_at(lambda p: p.model.noise, problem, noise + 0.15), dj.GD(eta), t_max=4.0)
    assert np.any(np.abs(np.asarray(sol.q) - wrong.q) > 4 * np.asarray(sol.q_se) + 1e-4)


def test_exact_ridge_gd_has_the_known_limits():
    """Ridgeless regression (alpha = 2 > 1): GD converges to the least-squares fit, test error
    sigma^2 / (alpha - 1); the ERM fixed point gives the same; with lam > 0 the long-time GD
    curve ends on the ERM's (m, q)."""
    p = dj.Problem(dj.TeacherRegression(0.5), alpha=2.0, lam=0.0)
    assert dj.erm(p).eps_gen == pytest.approx(0.25, rel=1e-8)
    assert ridge_gd(p, dj.GD(0.15), t_max=300.0).eps_gen[-1] == pytest.approx(0.25, rel=1e-3)
    p = dj.Problem(dj.TeacherRegression(0.5), alpha=2.0, lam=0.1, R0=1.0)
    ref, long = dj.erm(p), ridge_gd(p, dj.GD(0.15), t_max=300.0)
    for name in ("m", "q", "eps_gen", "train_loss"):
        assert float(getattr(ref, name)) == pytest.approx(getattr(long, name)[-1], rel=1e-8), name


def test_label_noise_gradient_likelihood_ratio():
    """label_noise acts through the law of the flips only (likelihood-ratio weights); against
    central differences with common random numbers at two keys (measured: 0.444 vs 0.420 and
    0.435 vs 0.415). Tolerance 20% and a floor that a zero gradient fails."""
    kw = dict(n_steps=20, n_traj=2**15, response=dj.ExactResponse(1024))

    def f(eps, key):
        p = eqx.tree_at(lambda p: p.model.label_noise, TS, eps)
        return dj.solve(p, dj.SGD(0.2, 0.3), key=key, **kw).eps_gen[-1]

    g = float(jax.grad(f)(0.2, 0))
    h = 0.02
    fd = (float(f(0.2 + h, 0)) - float(f(0.2 - h, 0))) / (2 * h)
    assert fd > 0.2
    assert abs(g - fd) <= 0.2 * abs(fd)


def test_regression_gradients_pathwise():
    """The label noise of regression and lam are pathwise: autodiff equals central differences."""
    def f(x):
        p = dj.Problem(dj.TeacherRegression(x["noise"]), "pseudo_huber", alpha=2.0, lam=x["lam"], R0=1.0)
        return dj.solve(p, dj.SGD(0.2, 0.3), n_steps=6, n_traj=256, response=dj.ExactResponse(64),
                        key=0).eps_gen[-1]

    x0 = {"noise": 0.5, "lam": 0.1}
    check_pathwise(f, x0)


@pytest.mark.slow  # 22 s; the regression case is in the default suite (test_exact_ridge_gd_has_the_known_limits)
def test_long_time_gd_converges_to_the_teacher_student_erm():
    """Full-batch GD, logistic, lam = 0.5, t = 30 (converged to 1e-6: the rate is at least lam).
    Without label noise within 1e-3 in eps_gen; with label noise 0.1 the flips add Monte Carlo
    noise (measured standard error of m ~0.004 at N = 2^15), so there within 3 standard errors."""
    for eps, n_traj in ((0.0, 2**14), (0.1, 2**15)):
        p = dj.Problem(dj.TeacherStudent(eps), alpha=2.0, lam=0.5, R0=1.0)
        ref = dj.erm(p)
        assert ref.result.ok
        sol = dj.solve(p, dj.GD(0.5), t_max=30.0, n_traj=n_traj, key=0, errors=dj.GroupErrors(16))
        diff = abs(float(sol.eps_gen[-1]) - float(ref.eps_gen))
        assert diff < (1e-3 if eps == 0 else 3 * float(sol.eps_gen_se[-1])), (eps, diff)
        assert abs(float(sol.m[-1] - sol.m[-10])) < 1e-6


def test_erm_teacher_student_against_finite_d_minimisation():
    """The replica fixed point against L-BFGS minimisers at d = 1000 (4 seeds), logistic,
    label noise 0.1, lam = 0.5: m and q within 4 seed standard errors plus 1%."""
    from scipy.optimize import minimize

    lam, eps, d, n = 0.5, 0.1, 1000, 2000
    ref = dj.erm(dj.Problem(dj.TeacherStudent(eps), alpha=2.0, lam=lam))
    ms, qs = [], []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        v = rng.standard_normal(d)
        v *= np.sqrt(d) / np.linalg.norm(v)
        X = rng.standard_normal((n, d))
        y = np.sign(X @ v) * np.where(rng.random(n) < eps, -1.0, 1.0)
        Z = y[:, None] * X / np.sqrt(d)

        def f(w):
            mrg = Z @ w
            return np.logaddexp(0, -mrg).sum() + lam / 2 * w @ w, Z.T @ (-0.5 * (1 - np.tanh(mrg / 2))) + lam * w

        w = minimize(f, np.zeros(d), jac=True, method="L-BFGS-B", options=dict(maxiter=5000, gtol=1e-9)).x
        ms.append(w @ v / d)
        qs.append(w @ w / d)
    for name, xs in (("m", ms), ("q", qs)):
        x = float(getattr(ref, name))
        assert abs(np.mean(xs) - x) < 4 * np.std(xs, ddof=1) / 2 + 0.01 * x, (name, np.mean(xs), x)


@pytest.mark.slow  # 8 s (a grid program compiles); test_scale checks grids over the other parameters
def test_teacher_student_grid_over_label_noise():
    """A model's own parameters grid like rho: one compiled solve, each point as its own solve."""
    grid = dj.solve_grid(TS, PSGD, {"label_noise": [0.0, 0.2]}, t_max=2.0, n_traj=512, key=0)
    for i, eps in enumerate((0.0, 0.2)):
        one = dj.solve(eqx.tree_at(lambda p: p.model.label_noise, TS, eps), PSGD, t_max=2.0, n_traj=512, key=0)
        np.testing.assert_allclose(np.asarray(grid.eps_gen[i]), np.asarray(one.eps_gen), rtol=1e-10)


def test_traced_invalid_teacher_parameters_are_failed_points():
    """label_noise = 0.6 or a regression noise < 0 set inside vmap come back as invalid_input
    with NaN curves; delta != 1 for a teacher model too; valid points are unaffected."""
    def one(eps, delta):
        p = eqx.tree_at(lambda p: (p.model.label_noise, p.delta), TS, (eps, delta))
        return dj.solve(p, dj.GD(0.2), n_steps=5, n_traj=64, key=0)

    sol = jax.vmap(one)(np.array([0.1, 0.6, 0.1]), np.array([1.0, 1.0, 0.5]))
    assert list(np.asarray(sol.result.code)) == [dj.RESULTS.successful, dj.RESULTS.invalid_input,
                                                 dj.RESULTS.invalid_input]
    assert np.all(np.isfinite(np.asarray(sol.eps_gen[0]))) and np.all(np.isnan(np.asarray(sol.eps_gen[1:])))
    assert "label_noise" in sol.message and "delta = 1" in sol.message
    reg = dj.Problem(dj.TeacherRegression(0.5))
    bad = jax.jit(lambda s: dj.solve(eqx.tree_at(lambda p: p.model.noise, reg, s), dj.GD(0.2), n_steps=5,
                                     n_traj=64))(-0.5)
    assert int(bad.result) == dj.RESULTS.invalid_input and "noise" in bad.message


def test_teacher_gradients_are_finite_at_zero_initial_variance():
    """R0 = 0 starts at q = m^2: the errors' square roots must not give NaN derivatives."""
    for model in (dj.TeacherStudent(0.1), dj.TeacherRegression(0.3)):
        def f(lam):
            p = dj.Problem(model, alpha=2.0, lam=lam, R0=0.0, m0=0.1)
            return dj.solve(p, dj.GD(0.2), n_steps=4, n_traj=64, key=0).eps_gen.mean()

        assert np.isfinite(float(jax.grad(f)(0.1))), type(model).__name__


def test_exact_ridge_gd_says_when_gd_diverges():
    """eta (a_max + lam) > 2: the exact curves blow up, and ridge_gd says so."""
    p = dj.Problem(dj.TeacherRegression(0.5), alpha=2.0, lam=0.1)
    with pytest.warns(RuntimeWarning, match="GD diverges"):
        ridge_gd(p, dj.GD(0.5), t_max=5.0)
