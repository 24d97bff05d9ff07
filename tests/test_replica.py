"""The static anchor against independent answers: direct minimisation of the empirical
risk at finite d, the closed-form ridge solution, LP feasibility of the training set,
finite differences, and the long-time limit of the full-batch GD DMFT."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import linprog, minimize
from scipy.special import erfc, expit

import dmft_jax as dj
from dmft_jax import alpha_star, erm, gd_long_time


def finite_d_erm(alpha, delta, lam, d, n_seeds, loss="logistic", rho=0.5, seed=0):
    """Minimise sum_mu ell(y_mu w.x_mu/sqrt(d)) + lam/2 |w|^2 at finite d (L-BFGS, or the
    exact linear solve for the square loss); seed means and standard errors of
    m, q, eps_gen, train loss per dimension, train error."""
    rng = np.random.default_rng(seed)
    n = int(round(alpha * d))
    rows = []
    for _ in range(n_seeds):
        v = rng.standard_normal(d)
        y = np.where(rng.random(n) < rho, 1.0, -1.0)
        X = np.outer(y, v) / np.sqrt(d) + np.sqrt(delta) * rng.standard_normal((n, d))
        Z = y[:, None] * X / np.sqrt(d)  # margins are Z @ w
        if loss == "square":
            w = np.linalg.solve(Z.T @ Z + lam * np.eye(d), Z.T @ np.ones(n))
            ell = lambda p: 0.5 * (1 - p) ** 2
        else:
            ell = lambda p: np.logaddexp(0, -p)

            def fg(w):
                p = Z @ w
                return ell(p).sum() + 0.5 * lam * w @ w, -Z.T @ expit(-p) + lam * w

            w = minimize(fg, np.zeros(d), jac=True, method="L-BFGS-B",
                         options=dict(maxiter=5000, gtol=1e-9, ftol=1e-15)).x
        p = Z @ w
        m, q = w @ v / d, w @ w / d
        rows.append([m, q, 0.5 * erfc(m / np.sqrt(2 * delta * q)), ell(p).sum() / d, np.mean(p < 0)])
    rows = np.array(rows)
    return rows.mean(0), rows.std(0, ddof=1) / np.sqrt(n_seeds)


@pytest.mark.parametrize("alpha, delta, lam, loss", [
    (2.0, 0.5, 0.1, "logistic"), (4.0, 0.3, 1.0, "logistic"), (2.0, 0.5, 0.1, "square"),
])
def test_erm_fixed_point_matches_finite_d_minimisation(alpha, delta, lam, loss):
    """d = 800, 8 seeds: |replica - mean| <= 4 SE + 2% (finite-size allowance ~ 10/sqrt(d)
    on single-seed fluctuations averages down; measured offsets are < 1%)."""
    sol = erm(dj.Problem(dj.TwoCluster(0.5), loss, alpha=alpha, delta=delta, lam=lam))
    assert int(sol.status) == 0
    mean, se = finite_d_erm(alpha, delta, lam, d=800, n_seeds=8, loss=loss)
    theory = np.array([sol.m, sol.q, sol.eps_gen, sol.train_loss, sol.train_error], dtype=float)
    tol = 4 * se + 0.02 * np.abs(theory) + 1e-3
    assert np.all(np.abs(theory - mean) <= tol), (theory, mean, se)


def test_square_loss_matches_closed_form_ridge():
    a, D, lam = 2.0, 0.5, 0.1
    V = (-(lam + a * D - D) + np.sqrt((lam + a * D - D) ** 2 + 4 * lam * D)) / (2 * lam * D)
    tau = D * V
    V_hat = a * D / (1 + tau)
    m = (a / (1 + tau)) / (lam + V_hat + a / (1 + tau))
    m_hat = a * (1 - m) / (1 + tau)
    q = (m_hat**2 + a * D * (1 - m) ** 2 / (1 + tau) ** 2) / ((lam + V_hat) ** 2 - a * D**2 / (1 + tau) ** 2)
    sol = erm(dj.Problem(dj.TwoCluster(0.5), "square", alpha=a, delta=D, lam=lam))
    np.testing.assert_allclose([sol.m, sol.q, sol.V], [m, q, V], rtol=1e-10)


def test_hinge_and_smooth_hinge_agree_for_sharp_smoothing():
    """The closed-form hinge channel against the quadrature of a sharp SmoothHinge."""
    base = dict(alpha=2.0, delta=0.5, lam=0.1)
    h = erm(dj.Problem(dj.TwoCluster(0.5), "hinge", **base))
    s = erm(dj.Problem(dj.TwoCluster(0.5), dj.SmoothHinge(50.0), **base), n_nodes=300)
    np.testing.assert_allclose([s.m, s.q, s.eps_gen], [h.m, h.q, h.eps_gen], rtol=2e-2)


def test_erm_gradient_in_lambda_matches_finite_differences():
    f = lambda lam: erm(dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=lam)).eps_gen
    g = float(jax.grad(f)(0.1))
    h = 1e-5
    fd = (float(f(0.1 + h)) - float(f(0.1 - h))) / (2 * h)
    assert abs(g - fd) < 1e-5 * abs(fd) + 1e-9


def test_separable_data_without_ridge_reported():
    sol = erm(dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=1.0, delta=0.5, lam=0.0))
    assert sol.result.code == dj.RESULTS.no_minimiser and "separable" in sol.message


def test_alpha_star_limits():
    assert alpha_star(1e4, bias=False) == pytest.approx(2.0, rel=1e-3)  # Cover
    assert alpha_star(0.5, rho=0.3, bias=False) == pytest.approx(alpha_star(0.5, rho=0.5, bias=False))
    assert alpha_star(0.5, rho=0.2) > alpha_star(0.5, rho=0.5)  # a bias helps unbalanced data
    assert alpha_star(0.1, bias=False) > alpha_star(0.5, bias=False)


def _lp_separable(alpha, delta, rho, d, seed, bias):
    rng = np.random.default_rng(seed)
    n = int(alpha * d)
    v = rng.standard_normal(d)
    y = np.where(rng.random(n) < rho, 1.0, -1.0)
    X = np.outer(y, v) / np.sqrt(d) + np.sqrt(delta) * rng.standard_normal((n, d))
    A = -(y[:, None] * (np.c_[X, np.ones(n)] if bias else X))
    res = linprog(np.zeros(A.shape[1]), A_ub=A, b_ub=-np.ones(n), bounds=[(None, None)] * A.shape[1],
                  method="highs")
    return res.status == 0


@pytest.mark.parametrize("delta, rho, bias", [(2.0, 0.5, False), (2.0, 0.2, True)])
def test_alpha_star_against_lp_feasibility(delta, rho, bias):
    """d = 150: at 0.75 alpha* every training set is separable, at 1.3 alpha* none is."""
    a = alpha_star(delta, rho, bias)
    assert all(_lp_separable(0.75 * a, delta, rho, 150, s, bias) for s in range(4))
    assert not any(_lp_separable(1.3 * a, delta, rho, 150, s, bias) for s in range(4))


def test_long_time_gd_dmft_converges_to_erm():
    """Full-batch GD, logistic, lam = 0.1, dt = eta = 0.5, horizon t = 60: the DMFT reaches
    the ERM fixed point (eps_gen within 1e-3, q within 1%). The DMFT is stationary by
    t = 60; its remaining Monte Carlo spread on eps_gen is ~5e-4 at N = 2^14 (two keys:
    +5.9e-4, -4.6e-4), so N = 2^16 is used."""
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.01)
    sol, stationary = gd_long_time(problem, eta=0.5, t_max=60.0, n_traj=2**16, response=dj.ExactResponse(1024))
    ref = erm(problem)
    assert stationary
    assert abs(float(sol.eps_gen[-1]) - float(ref.eps_gen)) < 1e-3
    assert abs(float(sol.q[-1]) / float(ref.q) - 1) < 0.01
    assert abs(float(sol.m[-1]) / float(ref.m) - 1) < 0.01


def test_infinite_ridge_is_the_hebbian_estimator():
    """lam -> infinity: w ~ sum_mu y_mu x_mu, eps_gen = Q(sqrt(alpha / (Delta (alpha + Delta))))."""
    for alpha, delta in ((2.0, 0.5), (4.0, 1.0)):
        sol = erm(dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=alpha, delta=delta, lam=1e4))
        hebb = 0.5 * erfc(np.sqrt(alpha / (delta * (alpha + delta))) / np.sqrt(2))
        assert float(sol.eps_gen) == pytest.approx(hebb, rel=1e-3)


def test_erm_near_separability_is_converged_in_the_quadrature():
    """alpha = 2, Delta = 0.25, lam = 0.01 (tau = Delta V ~ 13): the proximal step is stiff;
    the result must not depend on the number of nodes, and the proximal map must match an
    independent bracketing root finder at every node (it once cycled: q off by 2e-3)."""
    from scipy import optimize, special

    from dmft_jax._tools.replica import prox

    p = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.25, lam=0.01)
    sols = [erm(p, n_nodes=n) for n in (100, 150, 300)]
    assert all(s.ok for s in sols)
    for s in sols[1:]:
        assert float(s.q) == pytest.approx(float(sols[0].q), rel=1e-9)
        assert float(s.m) == pytest.approx(float(sols[0].m), rel=1e-9)
    tau = 0.25 * float(sols[-1].V)
    omega = np.linspace(-40.0, 40.0, 161)
    ours = np.asarray(prox(dj.Logistic(), jnp.asarray(omega), tau))
    ref = [optimize.brentq(lambda x, o=o: x - o - tau * special.expit(-x), o - 1, o + tau + 1, xtol=1e-14)
           for o in omega]
    np.testing.assert_allclose(ours, ref, atol=1e-10)
