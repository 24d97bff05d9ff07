"""Gradients through the solver against finite differences.

Pathwise parameters (lam, eta, R0, alpha, delta, L) with common random numbers: the same
key gives the same draws, so central differences of the float64 solve are smooth and
must match autodiff to ~1e-6 relative.

b and tau (and rho) act only through the law of the discrete draws: their gradient is the
likelihood-ratio part (weights in process.kernel_row). It is checked against central
differences of solves with coupled selection paths (same key), at N = 2^15 trajectories.
Measured spread of the two estimators across keys is ~3% (b) and ~8% (tau) of the
derivative, so the tolerance is 20% + a small absolute floor.
"""
import equinox as eqx
import jax
import numpy as np
import pytest

import dmft_jax as dj

TWO = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01)
THREE = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.01, R0=1.0, m0=0.05)
SMALL = dict(n_steps=15, n_traj=1024, response=dj.ExactResponse(256), key=0)


def _objective(problem, algorithm, **kw):
    return dj.solve(problem, algorithm, **{**SMALL, **kw}).eps_gen[-1]


@pytest.mark.parametrize("problem", [TWO, THREE], ids=["two", "three"])
def test_pathwise_gradients_against_central_differences(problem):
    """lam, R0, alpha, delta, eta (and L for three clusters) in one reverse-mode gradient.
    SGD's selection law does not depend on eta, so its eta-derivative is pathwise."""
    names = ["lam", "R0", "alpha", "delta"] + (["L"] if problem is THREE else [])
    where = {n: (lambda p, n=n: p.model.L if n == "L" else getattr(p, n)) for n in names}

    def f(x):
        p = problem
        for n in names:
            p = eqx.tree_at(where[n], p, x[n])
        return _objective(p, dj.SGD(x["eta"], 0.3))

    x0 = {n: float(where[n](problem)) for n in names} | {"eta": 0.2}
    grads = jax.grad(f)(x0)
    for n, v in x0.items():
        h = 1e-5 * max(abs(v), 0.1)
        fd = (float(f(x0 | {n: v + h})) - float(f(x0 | {n: v - h}))) / (2 * h)
        g = float(grads[n])
        assert abs(fd) > 1e-6, n  # the derivative is not trivially zero
        assert abs(g - fd) <= 1e-5 * abs(fd) + 1e-9, (n, g, fd)


@pytest.mark.parametrize("problem", [TWO, THREE], ids=["two", "three"])
def test_likelihood_ratio_gradients_b_and_tau(problem):
    kw = dict(n_steps=20, n_traj=2**15, response=dj.ExactResponse(1024), key=0)
    f = lambda b, tau: _objective(problem, dj.PersistentSGD(0.2, b, tau), **kw)
    gb, gt = (float(x) for x in jax.grad(f, argnums=(0, 1))(0.3, 1 / 0.6))
    fdb = (float(f(0.33, 1 / 0.6)) - float(f(0.27, 1 / 0.6))) / 0.06
    fdt = (float(f(0.3, 1 / 0.6 + 0.15)) - float(f(0.3, 1 / 0.6 - 0.15))) / 0.3
    assert abs(gb - fdb) <= 0.2 * abs(fdb) + 2e-3, (gb, fdb)
    assert abs(gt - fdt) <= 0.2 * abs(fdt) + 2e-3, (gt, fdt)


@pytest.mark.slow
def test_gradient_under_vmap_compiles_once_per_shape():
    """Hyperparameters are array leaves: a vmapped gradient over a lam grid."""
    def f(lam):
        return _objective(eqx.tree_at(lambda p: p.lam, TWO, lam), dj.GD(0.2))

    lams = np.array([0.01, 0.1, 0.5])
    batched = jax.vmap(jax.grad(f))(lams)
    for lam, g in zip(lams, np.asarray(batched)):
        assert float(jax.grad(f)(lam)) == pytest.approx(g, rel=1e-10)


def test_tune_decreases_objective_and_respects_constraints():
    res = dj.tune(TWO, dj.PersistentSGD(0.2, 0.3, 1 / 0.6), ["lam", "b", "tau"], t_max=3.0,
                  n_traj=1024, response=dj.ExactResponse(256), steps=8)
    h = res.history
    assert len(h["objective"]) == 8 and h["objective"][-1] < h["objective"][0]
    assert res.objective < h["objective"][0]
    b, tau, eta = res.params["b"], res.params["tau"], 0.2
    assert 0 < b < 1 and tau >= eta and b * eta <= (1 - b) * tau + 1e-12 and res.params["lam"] > 0


def test_tune_rejects_bad_names():
    with pytest.raises(ValueError, match="tau"):
        dj.tune(TWO, dj.GD(0.2), ["tau"], t_max=1.0)
    with pytest.raises(ValueError, match="params"):
        dj.tune(TWO, dj.GD(0.2), [], t_max=1.0)
