"""Speed-and-scale features: response estimators, memory bound and formula, batched grids
(compiled once, failures as data), trajectories sharded over devices."""
import os
import subprocess
import sys
import textwrap
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax._engine import process
from dmft_jax._solvers.iteration import run_fixed_kernels
from dmft_jax._engine.noise import noise_factor


@pytest.fixture(scope="module")
def seed_problem():
    return dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0)


ALGO = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)


def _fixed_kernel_rows(problem, est, key_probe, kernels, T, n):
    """M_R estimated by ``est`` on the same trajectories advanced with fixed ``kernels``."""
    rnd = process.draw(jax.random.PRNGKey(5), problem, ALGO, T, n, True, jnp.float64)
    blocks = lambda a: a[..., None, None]  # the engine's K x K blocks of one unit
    L, _ = noise_factor(blocks(kernels.M_C), problem.delta, 1e-7)
    rows, _ = run_fixed_kernels(process.Network.single(problem), rnd, T, est, key_probe, kernels.m[:, None],
                                blocks(kernels.lam_hat), blocks(kernels.M_R), L)
    return rows.M_R[..., 0, 0]


def test_probe_estimator_is_unbiased(seed_problem):
    # Same trajectories, same kernels: the probe estimate minus the exact per-trajectory
    # response average is pure probe noise. Averaged over 24 independent probe draws it must
    # vanish within its standard error at every (k, l) (max |z| over ~100 entries < 5). A
    # wrong scale (e.g. a missing eta_l) or a lost first-lag term gives |z| in the tens.
    T, n = 15, 2048
    kernels = dj.solve(seed_problem, ALGO, n_steps=T, n_traj=8192, key=0)
    exact = np.asarray(jax.jit(lambda: _fixed_kernel_rows(seed_problem, dj.ExactResponse(n), None, kernels, T, n))())
    probe = dj.ProbeResponse(2).resolve(T, n, 8)
    keys = jax.random.split(jax.random.PRNGKey(100), 24)
    est = np.asarray(jax.jit(jax.vmap(lambda kp: _fixed_kernel_rows(seed_problem, probe, kp, kernels, T, n)))(keys))
    diff = est - exact[None]
    mask = np.tril(np.ones((T + 1, T + 1), bool), -1)
    mean, se = diff.mean(0)[mask], diff.std(0, ddof=1)[mask] / np.sqrt(len(est))
    assert np.all(np.abs(exact[mask]) > 0)
    # first lag l = k - 1 is computed exactly: no probe noise there
    first = np.eye(T + 1, k=-1, dtype=bool)
    assert np.max(np.abs(diff[:, first])) < 1e-12
    # (k, l) = (2, 0) has a single remaining lag: eps_0^2 = 1 makes it exact as well
    far = mask & ~first
    far[2, 0] = False
    assert np.max(np.abs(diff[:, 2, 0])) < 1e-12
    z = diff.mean(0)[far] / (diff.std(0, ddof=1)[far] / np.sqrt(len(est)))
    assert np.max(np.abs(z)) < 5, np.max(np.abs(z))
    # and the noise is not negligible (the test has teeth): probe spread is visible
    assert np.median(se) > 1e-4 * np.max(np.abs(exact))
    del mean


@pytest.mark.slow
def test_probe_solve_close_to_exact_on_same_trajectories(seed_problem):
    # same key: same trajectories; only the M_R estimator differs. With every trajectory
    # exact (n_chi = N) as the reference, 8 probes change eps_gen and q by well under the
    # Monte Carlo error of N = 4096 trajectories (~3e-3 on eps_gen).
    kw = dict(t_max=8.0, n_traj=4096, key=2)
    ref = dj.solve(seed_problem, ALGO, response=dj.ExactResponse(4096), **kw)
    probe = dj.solve(seed_problem, ALGO, response=dj.ProbeResponse(8), **kw)
    assert np.max(np.abs(probe.eps_gen - ref.eps_gen)) < 1e-3
    assert np.max(np.abs(probe.q - ref.q) / ref.q) < 3e-3
    assert probe.config.n_chi == 0 and probe.config.response == dj.ProbeResponse(8, 4096)


def test_response_options_validated(seed_problem):
    with pytest.raises(ValueError, match="n_probes"):
        dj.solve(seed_problem, ALGO, t_max=1.0, n_traj=64, response=dj.ProbeResponse(0))
    with pytest.raises(ValueError, match="n_chi applies to ExactResponse"), pytest.warns(DeprecationWarning):
        dj.solve(seed_problem, ALGO, t_max=1.0, n_traj=64, n_chi=8, response=dj.ProbeResponse(2))
    with pytest.raises(ValueError, match="response must be"):
        dj.solve(seed_problem, ALGO, t_max=1.0, n_traj=64, response="probe")
    with pytest.raises(ValueError, match="ProbeResponse.n_traj"):
        dj.solve(seed_problem, ALGO, t_max=1.0, n_traj=64, response=dj.ProbeResponse(2, n_traj=65))


def test_exact_response_memory_bound(seed_problem):
    T = 50
    per_traj = (T + 1) ** 2 * 8
    sol = dj.solve(seed_problem, ALGO, n_steps=T, n_traj=4096,
                   response=dj.ExactResponse(max_memory=300 * per_traj + 10))
    assert sol.config.n_chi == 300
    with pytest.raises(ValueError, match="above max_memory"):
        dj.solve(seed_problem, ALGO, n_steps=T, n_traj=4096, response=dj.ExactResponse(1000, 300 * per_traj))
    with pytest.raises(ValueError, match="max_memory"):
        dj.solve(seed_problem, ALGO, n_steps=T, n_traj=4096, response=dj.ExactResponse(max_memory=100.0))


MEMORY = textwrap.dedent("""
    import jax, equinox as eqx
    jax.config.update("jax_enable_x64", True)
    import dmft_jax as dj
    from dmft_jax._solve import solve as solver
    prob = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0)
    alg = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    for T, N, resp in [(100, 8192, dj.ExactResponse(2048)), (100, 32768, dj.ProbeResponse(4))]:
        cfg = solver.configure(prob, alg, None, N, n_steps=T, response=resp)
        compiled = eqx.filter_jit(solver.solve_traced).lower(prob, alg, jax.random.PRNGKey(3), cfg).compile()
        ma = compiled.compiled.memory_analysis()
        xla = ma.temp_size_in_bytes + ma.argument_size_in_bytes + ma.output_size_in_bytes
        est = dj.memory_estimate(T, N, dtype="float64", response=resp)
        print(T, N, resp, est / xla)
        assert 0.7 < est / xla < 2.0, (T, N, resp, est, xla)
    print("OK")
""")


def test_memory_formula_matches_xla():
    # the documented formula against XLA's own buffer assignment of the compiled solve (in a
    # fresh process: compiling only for the analysis, away from the suite's compile cache)
    out = subprocess.run([sys.executable, "-c", MEMORY], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr[-3000:]


def test_request_that_cannot_fit_is_refused_before_allocation(seed_problem):
    with pytest.raises(ValueError, match="GiB"):
        dj.solve(seed_problem, ALGO, n_steps=2000, n_traj=2**16, response=dj.ExactResponse(2**16))


def test_grid_compiles_once_and_matches_single_solves(seed_problem):
    kw = dict(t_max=4.0, n_traj=2048, response=dj.ExactResponse(256), key=1)
    grid = {"lam": [0.0, 0.1], "b": [0.2, 0.3, 0.5]}
    with dj.count_compilations() as first:
        g = dj.solve_grid(seed_problem, ALGO, grid, **kw)
    with dj.count_compilations() as again:
        g2 = dj.solve_grid(seed_problem, ALGO, {"lam": [0.05, 0.2], "b": [0.25, 0.35, 0.6]}, **kw)
    # one compiled program for the 6 points, and a second grid of the same size compiles
    # nothing at all (not even helpers)
    assert first.count_of("_grid_jit") == 1, first.names
    assert again.count == 0, again.names
    assert g.ok.shape == (2, 3) and g.eps_gen.shape == (2, 3, 21) and g.ok.all() and g2.ok.all()
    for i, j in [(0, 0), (1, 2)]:
        p = eqx.tree_at(lambda q: q.lam, seed_problem, jnp.asarray(grid["lam"][i]))
        single = dj.solve(p, dj.PersistentSGD(0.2, grid["b"][j], 1 / 0.6), **kw)
        np.testing.assert_allclose(g["eps_gen"][i, j], single.eps_gen, rtol=1e-10, atol=1e-13)
    # zipped points
    z = dj.solve_grid(seed_problem, ALGO, {"lam": [0.0, 0.1], "b": [0.2, 0.5]}, product=False, **kw)
    np.testing.assert_allclose(z["eps_gen"][1], g["eps_gen"][1, 2], rtol=1e-10)


def test_grid_failed_points_are_data():
    # square loss, full-batch GD: eta * lam_hat = eta * alpha * Delta > 2 diverges
    problem = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, delta=0.5, lam=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = dj.solve_grid(problem, dj.GD(0.2), {"eta": [0.2, 0.5, 20.0]}, n_steps=60, n_traj=512, response=dj.ExactResponse(64))
    status = np.asarray(g.status)
    assert list(status) == [0, 0, dj.RESULTS.diverged]  # q ~ 1e221: finite but diverged
    assert np.all(np.isfinite(np.asarray(g["eps_gen"])[:2]))
    assert any("1 points" in str(w.message) for w in caught)
    with pytest.raises(RuntimeError):
        dj.solve_grid(problem, dj.GD(0.2), {"eta": [0.2, 20.0]}, n_steps=60, n_traj=512, response=dj.ExactResponse(64), throw=True)


def test_grid_validates_every_point(seed_problem):
    with pytest.raises(ValueError, match="b must"):
        dj.solve_grid(seed_problem, ALGO, {"b": [0.3, 1.5]}, t_max=1.0, n_traj=64)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        dj.solve_grid(seed_problem, ALGO, {"gamma": [1.0]}, t_max=1.0, n_traj=64)
    with pytest.raises(ValueError, match="n_steps"):
        dj.solve_grid(seed_problem, ALGO, {"eta": [0.1, 0.2]}, t_max=1.0, n_traj=64)
    with pytest.raises(ValueError, match="same length"):
        dj.solve_grid(seed_problem, ALGO, {"lam": [0.1, 0.2], "b": [0.3]}, product=False, t_max=1.0, n_traj=64)


SHARDED = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np, equinox as eqx
    jax.config.update("jax_enable_x64", True)
    import dmft_jax as dj
    from dmft_jax._solve import solve as solver
    assert len(jax.devices()) == 2
    prob = dj.Problem(dj.TwoCluster(), "logistic", alpha=2.0, delta=0.5, lam=0.05)
    alg = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)

    def sharded_equals_one_device(problem, fields, **kw):
        for resp in (dj.ExactResponse(kw.pop("n_chi")), dj.ProbeResponse(2)):
            one = dj.solve(problem, alg, key=3, response=resp, **kw)
            two = dj.solve(problem, alg, key=3, response=resp, trajectories=dj.Trajectories(sharding="all"), **kw)
            for f in fields:
                a, b = np.asarray(getattr(one, f)), np.asarray(getattr(two, f))
                assert np.max(np.abs(a - b)) <= 1e-12 * max(1.0, np.max(np.abs(a))), (f, np.max(np.abs(a - b)))

    sharded_equals_one_device(prob, ("eps_gen", "C", "M_R", "M_C", "train_loss"), t_max=2, n_traj=4096, n_chi=1024)
    # the trajectories really are split: per-device buffers hold N / 2 and kernels all-reduce
    cfg = solver.configure(prob, alg, 2, 4096, trajectories=dj.Trajectories(sharding="all"))
    txt = eqx.filter_jit(solver.solve_traced).lower(prob, alg, jax.random.PRNGKey(3), cfg).compile().compiled.as_text()
    assert "all-reduce" in txt and "f64[11,2048]" in txt and "f64[11,4096]" not in txt
    # committee machines: the block sweep splits its (time, trajectory, unit) arrays likewise
    committee = dj.Committee(prob, dj.SoftCommittee(2), m0=[0.3, -0.1])
    sharded_equals_one_device(committee, ("eps_gen", "Q", "M_R", "M_C", "train_loss"), n_steps=8, n_traj=1024,
                              n_chi=256)
    cfg = solver.configure(committee, alg, None, 1024, n_steps=8, trajectories=dj.Trajectories(sharding="all"))
    txt = eqx.filter_jit(solver.solve_traced).lower(committee, alg, jax.random.PRNGKey(3),
                                                    cfg).compile().compiled.as_text()
    assert "all-reduce" in txt and "f64[9,512,2]" in txt and "f64[9,1024,2]" not in txt
    print("OK")
""")


@pytest.mark.slow  # 21 s; tests/test_distributed.py keeps sharding (across two processes) in the default suite
def test_sharded_over_two_host_devices_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    out = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


def test_devices_validated(seed_problem):
    with pytest.raises(ValueError, match="sharding"):
        dj.solve(seed_problem, ALGO, t_max=1.0, n_traj=64, trajectories=dj.Trajectories(sharding="gpu"))
    with pytest.raises(ValueError, match="sharding"):
        dj.solve(seed_problem, ALGO, t_max=1.0, n_traj=64, trajectories=dj.Trajectories(sharding=[]))


def test_new_seed_does_not_recompile(seed_problem):
    kw = dict(t_max=2.0, n_traj=512)
    dj.solve(seed_problem, ALGO, key=0, **kw)
    dj.simulate(seed_problem, ALGO, t_max=2.0, d=100, n_seeds=2, key=0)
    with dj.count_compilations() as c:
        sol = dj.solve(seed_problem, ALGO, key=7, **kw)
        sim = dj.simulate(seed_problem, ALGO, t_max=2.0, d=100, n_seeds=2, key=8)
    assert c.count == 0
    assert int(sol.seed) == 7 and int(sim.seed) == 8


def test_size_warning_before_long_or_large_runs(monkeypatch):
    """dj.solve warns (dj.SizeWarning) before a run estimated above a few minutes on a CPU or
    above half the free memory, naming the sizes, and stays silent for an ordinary solve."""
    import warnings

    from dmft_jax._solve import memory

    P = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
    A = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dj.SizeWarning)  # the warning stops the run before it starts
        with pytest.raises(dj.SizeWarning, match="minutes.*t_max/eta"):
            dj.solve(P, A, t_max=1000.0, n_traj=4096, response=dj.ProbeResponse(4), key=0,
                     solver=dj.CausalSweep(history=dj.FullHistory()))
        monkeypatch.setattr(memory, "free_bytes", lambda: 2**10)  # 1 KiB free
        with pytest.raises(dj.SizeWarning, match="more than half the 0.0 GiB free"):
            dj.solve(P, A, t_max=1.0, n_traj=256, key=0)
        monkeypatch.undo()
        sol = dj.solve(P, A, t_max=1.0, n_traj=256, key=0)  # an ordinary solve: no warning
    assert sol.ok
    # the estimate grows like T^2 N for the history sums and T^3 n_chi for the exact response
    est = dj.ExactResponse(256)
    assert 3.5 < dj.time_estimate(200, 2**16, est) / dj.time_estimate(100, 2**16, est) < 8.5
    # with a compressed history (CausalSweep's own choice beyond 2000 steps) it grows like T
    probe, comp = dj.ProbeResponse(4), dj.CompressedHistory()
    assert 2.0 < dj.time_estimate(20000, 2**12, probe, history=comp) / dj.time_estimate(10000, 2**12, probe,
                                                                                          history=comp) < 2.3
    assert dj.time_estimate(3000, 4096, probe, history=comp) < 0.1 * dj.time_estimate(3000, 4096, probe)
    for bad, name in (((0, 2**10, est), "n_steps"), ((10, -1, est), "n_traj"), ((10, 2**10, 256), "est"),
                      ((10, 2**10, est, "complex"), "dtype"), ((10, 2**10, est, "nope"), "dtype")):
        with pytest.raises(ValueError, match=name):
            dj.time_estimate(*bad)
