"""Internal consistency of the solver: identities that must hold exactly or within Monte
Carlo error, each against an independent computation."""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax._algorithms import selection

SGD_ALGO = dj.PersistentSGD(eta=0.2, b=0.3, tau=1 / 0.6)


def test_gaussian_part_of_u_has_covariance_delta_C_perp(seed_two_cluster):
    """u[k] = G[k] - dt Delta sum_j R[k,j] g[j] with Cov(G) = Delta C_perp (section 2.4).

    G is rebuilt from the stored trajectories and the solver's R; its empirical covariance
    must match Delta C_perp (built from M_C, R, P) within Monte Carlo error."""
    N = 2**14
    sol = dj.solve(seed_two_cluster, SGD_ALGO, t_max=4.0, n_traj=N, key=3, trajectories=dj.Trajectories(save=N))
    tr = sol.trajectories
    dt = 0.2
    delta = 0.5
    G = np.asarray(tr["u"]) + dt * delta * np.asarray(sol.R) @ np.asarray(tr["g"])
    emp = G @ G.T / N
    theory = delta * np.asarray(sol.C_perp)
    # standard error of a covariance entry: sqrt((S_kk S_ll + S_kl^2) / N)
    d = np.sqrt(np.diag(theory))
    se = np.sqrt((np.outer(d, d) ** 2 + theory**2) / N)
    z = (emp - theory) / se
    assert np.max(np.abs(z)) < 5.0, np.max(np.abs(z))
    assert np.max(np.abs(emp - theory)) / np.max(theory) < 0.05


def test_sweep_equals_damped_iteration(seed_two_cluster):
    """The causal sweep and the damped fixed-point iteration (same random numbers) agree."""
    kw = dict(t_max=2.0, n_traj=1024, response=dj.ExactResponse(256), key=5)
    sweep = dj.solve(seed_two_cluster, SGD_ALGO, **kw)
    it = dj.solve(seed_two_cluster, SGD_ALGO, solver=dj.DampedIteration(damping=0.5, rtol=1e-11), **kw)
    assert int(it.status) == 0 and int(it.n_iter) > 5
    for name in ("m", "q", "eps_gen", "train_loss", "lam_hat", "M_C", "M_R"):
        np.testing.assert_allclose(getattr(it, name), getattr(sweep, name), rtol=1e-7, atol=1e-10,
                                   err_msg=name)


def test_iteration_reports_non_convergence(seed_two_cluster):
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sol = dj.solve(seed_two_cluster, SGD_ALGO, t_max=2.0, n_traj=256, response=dj.ExactResponse(64),
                       solver=dj.DampedIteration(max_iter=3))
    assert int(sol.status) == 2


def test_sgd_is_persistent_sgd_with_tau_eta_over_one_minus_b(seed_two_cluster):
    eta, b = 0.2, 0.3
    a = dj.solve(seed_two_cluster, dj.SGD(eta, b), t_max=2.0, n_traj=512, key=1)
    p = dj.solve(seed_two_cluster, dj.PersistentSGD(eta, b, eta / (1 - b)), t_max=2.0, n_traj=512, key=1)
    for name in ("m", "C", "eps_gen", "train_loss", "M_R"):
        np.testing.assert_allclose(getattr(a, name), getattr(p, name), rtol=1e-12, atol=1e-14)


def test_sgd_selection_is_iid_bernoulli():
    """With tau = eta/(1-b) the chain forgets its state: P(s'=1 | s) = b for both s."""
    s = np.asarray(selection.sample_paths(jax.random.PRNGKey(0), dj.SGD(0.2, 0.3), 50, (20000,),
                                          jnp.float64))
    prev, nxt = s[:-1].ravel(), s[1:].ravel()
    for state in (0, 1):
        p = nxt[prev == state].mean()
        assert abs(p - 0.3) < 4 * np.sqrt(0.3 * 0.7 / (prev == state).sum())


def test_persistent_selection_statistics():
    """Stationary fraction b and mean time in the batch tau (in units of eta steps)."""
    eta, b, tau = 0.1, 0.3, 1.0
    s = np.asarray(selection.sample_paths(jax.random.PRNGKey(1), dj.PersistentSGD(eta, b, tau), 400,
                                          (5000,), jnp.float64))
    assert abs(s.mean() - b) < 0.01
    leave = ((s[:-1] == 1) & (s[1:] == 0)).sum() / (s[:-1] == 1).sum()
    assert abs(leave - eta / tau) < 0.005


def test_full_batch_is_deterministic_selection(seed_two_cluster):
    s = selection.sample_paths(jax.random.PRNGKey(0), dj.PersistentSGD(0.2, 1.0, 1.0), 20, (100,),
                               jnp.float64)
    assert np.all(np.asarray(s) == 1.0)
    a = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=2.0, n_traj=512, key=2)
    b = dj.solve(seed_two_cluster, dj.PersistentSGD(0.2, 1.0, 1.0), t_max=2.0, n_traj=512, key=2)
    np.testing.assert_array_equal(np.asarray(a.C), np.asarray(b.C))


def test_same_key_same_result_other_key_differs(seed_two_cluster):
    kw = dict(t_max=2.0, n_traj=512)
    a = dj.solve(seed_two_cluster, SGD_ALGO, key=7, **kw)
    b = dj.solve(seed_two_cluster, SGD_ALGO, key=jax.random.PRNGKey(7), **kw)
    c = dj.solve(seed_two_cluster, SGD_ALGO, key=8, **kw)
    np.testing.assert_array_equal(np.asarray(a.C), np.asarray(b.C))
    assert not np.allclose(np.asarray(a.C), np.asarray(c.C))
    s1 = dj.simulate(seed_two_cluster, SGD_ALGO, t_max=1.0, d=50, n_seeds=2, key=4)
    s2 = dj.simulate(seed_two_cluster, SGD_ALGO, t_max=1.0, d=50, n_seeds=2, key=4)
    np.testing.assert_array_equal(np.asarray(s1.runs["q"]), np.asarray(s2.runs["q"]))


def test_agrees_with_independent_numpy_implementation(seed_two_cluster):
    """A separately written NumPy code of the same equations (benchmarks/numpy_baseline.py),
    fed the same random numbers: equal to rounding (1e-12), one block and three time blocks."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from numpy_baseline import solve_numpy

    from dmft_jax._engine import process

    N, T = 2048, 25
    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    rnd = process.draw(jax.random.PRNGKey(0), seed_two_cluster, algo, T, N, False, jnp.float64)
    draws = dict(c=rnd.c, h0=rnd.h0, s=rnd.s, zeta=rnd.zeta[:, 0], u0=rnd.u0[0])  # unit 0 of K = 1
    ref = solve_numpy(2.0, 0.5, 0.0, 0.01, 0.5, 0.2, 0.3, 1 / 0.6, T=T, n_traj=N, n_chi=512, draws=draws)
    for blocks in (1, 3):
        sol = dj.solve(seed_two_cluster, algo, n_steps=T, n_traj=N, key=0, trajectories=dj.Trajectories(antithetic=False),
                       response=dj.ExactResponse(512), solver=dj.CausalSweep(blocks))
        for f in ("m", "q", "eps_gen", "train_loss", "lam_hat", "M_C", "M_R"):
            want = np.tril(ref[f]) if f == "M_C" else ref[f]  # the solver keeps the rows M_C[k, :k+1]
            np.testing.assert_allclose(getattr(sol, f), want, rtol=1e-12, atol=1e-15, err_msg=f)
    assert np.max(np.abs(ref["M_R"])) > 1e-3  # the memory kernel is exercised


def test_float32_close_to_float64(seed_two_cluster):
    kw = dict(t_max=4.0, n_traj=4096, key=0)
    s64 = dj.solve(seed_two_cluster, SGD_ALGO, **kw)
    s32 = dj.solve(seed_two_cluster, SGD_ALGO, dtype=jnp.float32, **kw)
    assert s32.m.dtype == jnp.float32 and int(s32.status) == 0
    np.testing.assert_allclose(s32.eps_gen, s64.eps_gen, atol=2e-4)
    np.testing.assert_allclose(s32.q, s64.q, rtol=2e-3)


def test_divergence_reported_not_silent():
    """A learning rate far above the stability limit overflows: status says so, no silent NaN."""
    problem = dj.Problem(loss="exponential", alpha=4.0, delta=1.0, R0=1.0)
    algo = dj.GD(eta=5.0)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sol = dj.solve(problem, algo, t_max=100.0, n_traj=256)
    assert int(sol.status) == 1 and not bool(sol.ok)
    with pytest.raises(RuntimeError, match="non-finite"):
        dj.solve(problem, algo, t_max=100.0, n_traj=256, throw=True)


def test_vmap_over_hyperparameters_with_status_as_data(seed_two_cluster):
    """Array leaves: vmap over lam compiles once; each point equals its single solve."""
    import equinox as eqx

    from dmft_jax._solve.configure import configure
    from dmft_jax._solve.solve import solve_traced

    lams = jnp.array([0.0, 0.1, 0.5, 50.0])  # the last point diverges (m grows like (1 - eta lam)^k)
    cfg = configure(seed_two_cluster, dj.GD(0.2), None, 256, n_steps=10, response=dj.ExactResponse(64))
    one = lambda lam: solve_traced(eqx.tree_at(lambda p: p.lam, seed_two_cluster, lam), dj.GD(0.2),
                                   jax.random.PRNGKey(0), cfg)
    batched = eqx.filter_jit(jax.vmap(one))(lams)
    for i, lam in enumerate([0.0, 0.1, 0.5]):
        p = dj.Problem(model=dj.TwoCluster(0.5), alpha=2.0, delta=0.5, lam=lam, R0=0.01)
        single = dj.solve(p, dj.GD(0.2), t_max=2.0, n_traj=256, response=dj.ExactResponse(64), key=0)
        np.testing.assert_allclose(batched.q[i], single.q, rtol=1e-10)
    status = np.asarray(batched.status)
    assert list(status[:3]) == [0, 0, 0] and status[3] in (dj.RESULTS.diverged, dj.RESULTS.nonfinite)
    # and a point that fails inside a transformation says which way it failed
    assert "diverged" in batched.message or "non-finite" in batched.message


def test_time_blocking_does_not_change_the_result(seed_two_cluster):
    """The blocked sweep (histories held at the block's size) is the same computation."""
    kw = dict(t_max=3.0, n_traj=512, response=dj.ExactResponse(128), key=4)
    one = dj.solve(seed_two_cluster, SGD_ALGO, solver=dj.CausalSweep(1), **kw)
    three = dj.solve(seed_two_cluster, SGD_ALGO, solver=dj.CausalSweep(3), **kw)
    for name in ("m", "C", "R", "M_C", "M_R", "train_loss"):
        np.testing.assert_allclose(getattr(three, name), getattr(one, name), rtol=1e-12, atol=1e-15)


@pytest.mark.slow  # 15 s; float32 stays covered by test_float32_close_to_float64 and the pivot-warning test
def test_float32_full_batch_matches_float64(seed_two_cluster):
    """Full-batch GD makes M_C numerically rank deficient (many clipped pivots in both
    precisions); the float32 solve must still agree with float64."""
    problem = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, delta=0.5, lam=0.1, R0=0.01)
    kw = dict(t_max=20.0, n_traj=1024, response=dj.ExactResponse(64), key=0)
    s64 = dj.solve(problem, dj.GD(0.2), **kw)
    s32 = dj.solve(problem, dj.GD(0.2), dtype=jnp.float32, **kw)
    assert s32.m.dtype == jnp.float32 and int(s64.n_clipped) > 0
    # float32 clips a few more pivots than float64 (91 against 85 here), and which ones
    # depends on rounding: max |q32/q64 - 1| measured 3.3e-3 with 1-3 time blocks, 3.4e-4
    # with 4-6 (the summation order of the response products changes with the blocks)
    np.testing.assert_allclose(s32.q, s64.q, rtol=5e-3)
    np.testing.assert_allclose(s32.eps_gen, s64.eps_gen, atol=5e-4)


@pytest.mark.slow  # heavy; run with -m slow (the default suite stays near 10 minutes)
def test_float32_warns_when_it_loses_what_float64_keeps():
    """With a pivot floor below float32 rounding, full-batch GD's rank-deficient M_C gives
    negative float32 pivots (warned about), none in float64 at the same floor. (Float64's own
    rounding reaches relative 1e-9 here: 12 pivots below -1e-9 with moment matching, none below
    -3e-9; the floor 1e-8 is 10x below float32's rounding and above float64's.)"""
    import warnings

    problem = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, delta=0.5, lam=0.1, R0=0.01)
    kw = dict(t_max=20.0, n_traj=1024, response=dj.ExactResponse(64), solver=dj.CausalSweep(pivot_rtol=1e-8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s64 = dj.solve(problem, dj.GD(0.2), **kw)
    assert int(s64.n_negative) == 0
    with pytest.warns(RuntimeWarning, match="float64 keeps"):
        s32 = dj.solve(problem, dj.GD(0.2), dtype=jnp.float32, **kw)
    assert int(s32.n_negative) > 0
    with warnings.catch_warnings():  # the default float32 floor absorbs rounding: quiet
        warnings.simplefilter("error")
        dj.solve(problem, dj.GD(0.2), dtype=jnp.float32, t_max=20.0, n_traj=1024, response=dj.ExactResponse(64))


@pytest.mark.slow  # 23 s on 2 cores
def test_reverse_mode_goes_through_the_damped_iteration(seed_two_cluster):
    """jax.grad through DampedIteration (a bounded, checkpointed while loop) equals the sweep's
    gradient at the fixed point; it failed with JAX's raw while-loop error before."""
    import equinox as eqx
    import jax

    kw = dict(n_steps=5, n_traj=128, response=dj.ExactResponse(32), key=1)
    iteration = dj.DampedIteration(damping=1.0, rtol=1e-12, atol=1e-14, max_iter=30)

    def final(lam, solver):
        return dj.solve(eqx.tree_at(lambda p: p.lam, seed_two_cluster, lam), dj.GD(0.2), solver=solver,
                        **kw).eps_gen[-1]

    g_iteration = jax.grad(final)(0.1, iteration)
    g_sweep = jax.grad(final)(0.1, dj.CausalSweep())
    assert abs(float(g_sweep)) > 1e-6
    np.testing.assert_allclose(g_iteration, g_sweep, rtol=1e-8)
