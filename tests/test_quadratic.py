"""The exact DMFT of a quadratic loss (docs/equations.md, section 2.11; dj.quadratic_dmft):
against the closed form of ridge regression, against the Monte Carlo DMFT of the same loss
(the one sweep) within its standard errors, against finite differences, and its refusals."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj

SURROGATE = dj.Quadratic.matching("logistic")


def test_matching_the_logistic_loss_at_zero():
    q = dj.Quadratic.matching(dj.Logistic(), at=0.0)
    assert np.allclose([q.curvature, q.center, q.offset], [0.25, 2.0, np.log(2) - 0.5], atol=1e-14)
    v = jnp.asarray([-0.3, 0.0, 0.4])
    # value, slope and curvature agree at the point
    assert np.isclose(q(0.0), np.log(2))
    assert np.isclose(jax.grad(q)(0.0), -0.5) and np.isclose(jax.grad(jax.grad(q))(0.0), 0.25)
    assert np.all(q(v) >= 0)


@pytest.mark.parametrize("lam", [0.1, 0.0])
def test_equals_ridge_gd(lam):
    problem = dj.Problem(dj.TeacherRegression(0.5), "squared_error", alpha=2.0, lam=lam, R0=0.3, m0=0.2)
    alg = dj.GD(0.2)
    exact = dj.ridge_gd(problem, alg, n_steps=100)
    g = dj.quadratic_dmft(problem, alg, n_steps=100)
    # Marchenko-Pastur (no kernels, no noise) against the moment recursion: rounding and the
    # pivot floor of the rank-deficient noise covariance of full-batch GD
    for name in ("m", "q", "eps_gen", "train_loss"):
        assert np.max(np.abs(np.asarray(getattr(g, name)) - getattr(exact, name))) < 1e-6, name


def _against_monte_carlo(problem, alg, T=50, n=2**13, key=3, bound=4.5):
    g = dj.quadratic_dmft(problem, alg, n_steps=T)
    sol = dj.solve(problem, alg, n_steps=T, n_traj=n, key=key, errors=dj.GroupErrors(16))
    for name in ("m", "q", "eps_gen", "train_loss", "lam_hat", "mu"):
        se = np.asarray(sol.se[name])[1:]
        diff = np.asarray(getattr(sol, name))[1:] - np.asarray(getattr(g, name))[1:]
        # a deterministic value (lam_hat of full-batch GD) has no standard error: it must agree exactly
        z = np.where(se > 0, diff / np.where(se > 0, se, 1.0), diff * 1e9)
        assert np.max(np.abs(z)) < bound, (name, np.max(np.abs(z)))
    # the noise covariance: M_C's diagonal within 5 standard errors
    z = (np.diagonal(sol.M_C) - np.diagonal(g.M_C)) / np.diagonal(sol.se["M_C"])
    assert np.max(np.abs(z[1:])) < 5, np.max(np.abs(z))


def test_persistent_sgd_two_clusters_against_monte_carlo():
    problem = dj.Problem(dj.TwoCluster(0.5), SURROGATE, alpha=2.0, delta=0.5, R0=0.01)
    _against_monte_carlo(problem, dj.PersistentSGD(0.2, b=0.3, tau=2.0))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["sgd_teacher", "gd_rho", "psgd_regression", "schedule"])
def test_other_settings_against_monte_carlo(case):
    problem, alg = {
        "sgd_teacher": (dj.Problem(dj.TeacherStudent(0.1), SURROGATE, alpha=2.0, R0=0.5, m0=0.1, lam=0.05),
                        dj.SGD(0.2, b=0.3)),
        "gd_rho": (dj.Problem(dj.TwoCluster(0.3), SURROGATE, alpha=2.0, delta=0.5, R0=0.01, lam=0.05), dj.GD(0.2)),
        "psgd_regression": (dj.Problem(dj.TeacherRegression(0.5), "squared_error", alpha=1.5, R0=0.2),
                            dj.PersistentSGD(0.2, b=0.5, tau=1.0)),
        "schedule": (dj.Problem(dj.TwoCluster(0.5), "square", alpha=3.0, delta=0.5, R0=0.1),
                     dj.PersistentSGD(dj.ExponentialDecay(0.3, 0.02), b=0.3, tau=1.0)),
    }[case]
    _against_monte_carlo(problem, alg)


def test_gradient_against_finite_differences():
    alg = dj.PersistentSGD(0.2, b=0.3, tau=2.0)
    f = jax.jit(lambda lam: dj.quadratic_dmft(dj.Problem(dj.TwoCluster(0.5), SURROGATE, lam=lam, R0=0.01), alg,
                                              n_steps=30).eps_gen[-1])
    grad = jax.grad(f)(0.05)
    h = 1e-5
    fd = (f(0.05 + h) - f(0.05 - h)) / (2 * h)
    assert abs(grad - fd) < 1e-6 * max(1.0, abs(fd)) and abs(fd) > 1e-4


@pytest.mark.slow
def test_float32_agrees_with_float64():
    problem = dj.Problem(dj.TwoCluster(0.5), SURROGATE, R0=0.01)
    alg = dj.SGD(0.2, b=0.5)
    a = dj.quadratic_dmft(problem, alg, n_steps=60)
    b = dj.quadratic_dmft(problem, alg, n_steps=60, dtype="float32")
    assert b.eps_gen.dtype == jnp.float32 and b.eps_gen.shape == a.eps_gen.shape
    assert np.max(np.abs(np.asarray(b.eps_gen, float) - np.asarray(a.eps_gen))) < 1e-4


@pytest.mark.parametrize("problem, alg, match", [
    (dj.Problem(dj.TwoCluster()), dj.GD(0.2), "Logistic is not quadratic"),
    (dj.Problem(dj.ThreeCluster(), "square", m0=0.1), dj.GD(0.2), "ThreeCluster has a non-linear read-out"),
    (dj.Problem(dj.TwoCluster(), "square"), dj.GD(0.2, beta=0.5), "momentum"),
    (dj.Problem(dj.TwoCluster(), "square", bias=0.1), dj.GD(0.2), "bias"),
    (dj.Committee(dj.Problem(dj.TwoCluster(), "square"), dj.SoftCommittee(2)), dj.GD(0.2), "committee"),
])
def test_refuses_what_is_not_linear(problem, alg, match):
    with pytest.raises(ValueError, match=match):
        dj.quadratic_dmft(problem, alg, 5.0)


def test_quadratic_bad_inputs():
    with pytest.raises(ValueError, match="curvature"):
        dj.Quadratic(curvature=-1.0)
    with pytest.raises(ValueError, match="center"):
        dj.Quadratic(center=float("nan"))
    with pytest.raises(ValueError, match="positive curvature"):
        dj.Quadratic.matching(lambda v: -(v**2), at=0.0)
    with pytest.raises(ValueError, match="at"):
        dj.Quadratic.matching("logistic", at="zero")
    with pytest.raises(ValueError, match="one margin"):
        dj.Quadratic.matching("logistic", at=[0.0, 1.0])
    with pytest.raises(ValueError, match="overflows"):
        dj.Quadratic.matching("exponential", at=-800.0)


def test_invalid_parameters_inside_vmap_and_jit_give_nan():
    import equinox as eqx

    problem = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, R0=0.01)
    eps = jax.vmap(lambda lam: dj.quadratic_dmft(eqx.tree_at(lambda p: p.lam, problem, lam), dj.GD(0.2),
                                                 n_steps=5).eps_gen[-1])(jnp.array([0.1, -0.5]))
    assert np.isfinite(eps[0]) and np.isnan(eps[1])  # lam = -0.5 is out of range: no number
    # a quadratic built inside jit from concrete numbers
    f = jax.jit(lambda c: dj.quadratic_dmft(dj.Problem(dj.TwoCluster(), dj.Quadratic(c, 1.0)), dj.GD(0.2),
                                            n_steps=5).eps_gen[-1])
    assert np.isclose(f(1.0), dj.quadratic_dmft(dj.Problem(dj.TwoCluster(), "square"), dj.GD(0.2), n_steps=5).eps_gen[-1])
