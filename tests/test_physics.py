"""DMFT against independent answers: finite-d simulations of SGD (section 1), the exact
spectral solution of linear (square-loss) gradient descent, and the dt -> 0 limit.

Agreement criterion (stated once, used everywhere): at every time step,

    |DMFT - simulation mean| <= 4 * SE_sim + (10 / d + 0.005) * |DMFT|

- ``4 * SE_sim``: the seed-to-seed standard error of the simulation mean;
- ``10 / d``: finite-size allowance; seed-averaged simulation means approach the DMFT like
  1/d, and the measured offsets at d = 1000 on these settings are <= 1.4% (q);
- ``0.005``: Monte Carlo error of the DMFT itself at N = 2^15 trajectories (measured
  between seeds: ~0.3% on q, ~0.5% on m).
A wrong factor in the equations (e.g. the noise covariance or the sign of M_R) shifts
curves by tens of standard errors (docs/equations.md, section 2.8.6), far outside this band;
``test_criterion_rejects_wrong_batch_fraction`` checks that the band has teeth.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj

N_TRAJ = 2**15
D = 1000
N_SEEDS = 16
OBS = ("m", "q", "eps_gen", "train_loss", "train_acc")


def violations(sol, sim, names=OBS, d=D):
    out = {}
    for name in names:
        x = np.asarray(getattr(sol, name))
        y = np.asarray(getattr(sim, name))
        se = np.asarray(getattr(sim, name + "_se"))
        tol = 4 * se + (10 / d + 0.005) * np.abs(x)
        bad = np.abs(x - y) > tol
        if bad.any():
            k = int(np.argmax(np.abs(x - y) - tol))
            out[name] = f"{bad.sum()} steps; worst t={float(sol.t[k]):.2f}: DMFT {x[k]:.5f}, sim {y[k]:.5f} +- {se[k]:.5f}"
    return out


def run_pair(problem, algo, t_max=10.0, key=0):
    sol = dj.solve(problem, algo, t_max=t_max, n_traj=N_TRAJ, key=key)
    sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=N_SEEDS, key=key + 100)
    assert int(sol.status) == 0, sol.message
    return sol, sim


@pytest.fixture(scope="module")
def seed_pair(seed_two_cluster):
    return run_pair(seed_two_cluster, dj.PersistentSGD(0.2, 0.3, 1 / 0.6))


def test_two_cluster_logistic_persistent_sgd(seed_pair):
    sol, sim = seed_pair
    assert violations(sol, sim) == {}
    # the empirical test error on held-out samples agrees with the analytic eps_gen too
    x, y, se = (np.asarray(a)[-1] for a in (sol.eps_gen, sim.test_error, sim.test_error_se))
    assert abs(x - y) < 4 * se + 0.01 * x


def test_criterion_rejects_wrong_batch_fraction(seed_two_cluster, seed_pair):
    """Negative control: the DMFT at b = 0.2 must not pass against the b = 0.3 simulation."""
    _, sim = seed_pair
    wrong = dj.solve(seed_two_cluster, dj.PersistentSGD(0.2, 0.2, 1 / 0.6), t_max=10.0, n_traj=N_TRAJ)
    assert set(violations(wrong, sim)) >= {"m", "q", "train_loss"}


def test_full_batch_gd_with_ridge():
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.01)
    assert violations(*run_pair(problem, dj.GD(0.2))) == {}


def test_three_cluster_logistic():
    """Symmetric model: the simulation is conditioned on w_0.v*/d = m0, as the DMFT."""
    problem = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.0,
                         R0=1.0, m0=0.05)
    sol, sim = run_pair(problem, dj.PersistentSGD(0.2, 0.3, 1 / 0.6))
    assert violations(sol, sim) == {}
    assert float(sol.m[-1]) > 10 * 0.05  # the escape from the symmetric point happened


def test_classic_sgd(seed_two_cluster):
    assert violations(*run_pair(seed_two_cluster, dj.SGD(0.2, 0.3))) == {}


@pytest.mark.parametrize("loss", ["square", "smooth_hinge"])
def test_non_logistic_losses(loss):
    loss = dj.SmoothHinge(5.0) if loss == "smooth_hinge" else loss
    problem = dj.Problem(dj.TwoCluster(0.3), loss, alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
    assert violations(*run_pair(problem, dj.PersistentSGD(0.1, 0.3, 1.0), t_max=6.0)) == {}


def spectral_square_gd(alpha, delta, lam, R0, rho, eta, n_steps, d, n_seeds, seed=0):
    """Exact finite-d solution of full-batch GD on the square loss (linear dynamics):
    w_k = w* + (I - eta A)^k (w_0 - w*), A = lam I + X^T X / d, w* = A^{-1} X^T y / sqrt(d),
    by one eigendecomposition per seed (no time stepping). Two clusters, Phi(r) = r."""
    rng = np.random.default_rng(seed)
    n = int(round(alpha * d))
    ms, qs = [], []
    for _ in range(n_seeds):
        v = rng.standard_normal(d)
        y = np.where(rng.random(n) < rho, 1.0, -1.0)
        X = np.outer(y, v) / np.sqrt(d) + np.sqrt(delta) * rng.standard_normal((n, d))
        A = lam * np.eye(d) + X.T @ X / d
        bvec = X.T @ y / np.sqrt(d)
        a, V = np.linalg.eigh(A)
        w_star = V @ ((V.T @ bvec) / a)
        w0 = np.sqrt(R0) * rng.standard_normal(d)
        w0 -= (w0 @ v) / (v @ v) * v  # m0 = 0 exactly, as the solver
        c = V.T @ (w0 - w_star)
        decay = (1 - eta * a)[None, :] ** np.arange(n_steps + 1)[:, None]
        W = w_star[None, :] + (decay * c[None, :]) @ V.T
        ms.append(W @ v / d)
        qs.append(np.sum(W**2, axis=1) / d)
    ms, qs = np.array(ms), np.array(qs)
    se = lambda x: x.std(0, ddof=1) / np.sqrt(n_seeds)
    return ms.mean(0), se(ms), qs.mean(0), se(qs)


def test_square_loss_gd_against_exact_spectral_solution():
    """Linear dynamics: the DMFT against the closed-form finite-d solution, d = 1000."""
    eta, T = 0.1, 60
    problem = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, delta=0.5, lam=0.05, R0=0.01)
    sol = dj.solve(problem, dj.GD(eta), t_max=eta * T, n_traj=N_TRAJ, key=0)
    m, m_se, q, q_se = spectral_square_gd(2.0, 0.5, 0.05, 0.01, 0.5, eta, T, D, 16)
    for x, y, se in ((sol.m, m, m_se), (sol.q, q, q_se)):
        x = np.asarray(x)
        assert np.all(np.abs(x - y) <= 4 * se + (10 / D + 0.005) * np.abs(x))


@pytest.mark.slow  # 19 s; benchmarks/dt_convergence.py measures the same slope at more step sizes
def test_stochastic_gradient_flow_limit_first_order_in_dt():
    """PersistentSGD with eta = dt -> 0 at fixed tau converges to the stochastic gradient
    flow with error O(dt): successive differences of m(2), q(2) halve with dt (slope 1).
    The selection paths are coupled across dt (same key), so the differences are not
    swamped by Monte Carlo noise."""
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, R0=0.01)
    etas = [0.2, 0.1, 0.05, 0.025]
    vals = []
    for eta in etas:
        s = dj.solve(problem, dj.PersistentSGD(eta, 0.3, 1.0), t_max=2.0, n_traj=2**14, response=dj.ExactResponse(1024), key=0)
        vals.append([float(s.m[-1]), float(s.q[-1])])
    vals = np.array(vals)
    diffs = np.abs(np.diff(vals, axis=0))  # |x(eta) - x(eta/2)|
    slopes = np.polyfit(np.log(etas[:-1]), np.log(diffs), 1)[0]
    assert np.all((slopes > 0.75) & (slopes < 1.25)), slopes


def test_probe_response_estimator_against_simulation(seed_pair, seed_two_cluster):
    # the randomized-probe M_R estimator (all N trajectories, 4 Rademacher probes each)
    # meets the same criterion against the same simulation as the exact response
    _, sim = seed_pair
    sol = dj.solve(seed_two_cluster, dj.PersistentSGD(0.2, 0.3, 1 / 0.6), t_max=10.0, n_traj=N_TRAJ,
                   key=1, response=dj.ProbeResponse(4))
    assert int(sol.status) == 0, sol.message
    assert violations(sol, sim) == {}
