"""Exploring without recompiling: every physical and algorithmic parameter is data, so one
Python process that changes each of them in turn compiles the sweep once per shape
(T, N and the strategies are the shape; the key is data too)."""
import equinox as eqx
import numpy as np

import dmft_jax as dj

KW = dict(n_steps=6, n_traj=96)  # sizes no other test uses: the first solve compiles here


def _changes():
    two = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
    three = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, R0=1.0, m0=0.05)
    psgd = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    sched = dj.PersistentSGD(dj.ExponentialDecay(0.3, 0.05, floor=0.1), 0.3, 1 / 0.6)
    yield "two-cluster start", two, psgd
    for name, value in (("alpha", 3.0), ("delta", 0.3), ("lam", 0.1), ("R0", 0.05), ("m0", 0.02)):
        yield name, eqx.tree_at(lambda p, n=name: getattr(p, n), two, value), psgd
    yield "rho", dj.Problem(dj.TwoCluster(0.3), "logistic", alpha=2.0, delta=0.5, R0=0.01), psgd
    for name, value in (("eta", 0.15), ("b", 0.4), ("tau", 2.5)):
        yield name, two, eqx.tree_at(lambda a, n=name: getattr(a, n), psgd, value)
    yield "three-cluster start", three, psgd
    yield "L", eqx.tree_at(lambda p: p.model.L, three, 0.5), psgd
    yield "schedule start", two, sched
    for name, value in (("init", 0.25), ("rate", 0.1), ("floor", 0.05)):
        yield f"eta.{name}", two, eqx.tree_at(lambda a, n=name: getattr(a.eta, n), sched, value)


def test_changing_any_parameter_does_not_recompile():
    compiles = {}
    for key, (label, problem, algo) in enumerate(_changes()):
        with dj.count_compilations() as c:
            sol = dj.solve(problem, algo, key=key, **KW)
        assert bool(sol.ok), label
        compiles[label] = (c.count_of("_solve_sweep"), c.count)
    # one compile per model / eta kind (a different pytree structure), none per value or key,
    # and no other program either (no eager operation compiles for a new value)
    starts = {"two-cluster start", "three-cluster start", "schedule start"}
    assert {k: v for k, v in compiles.items() if k not in starts} == {k: (0, 0) for k in compiles if k not in starts}, \
        compiles
    assert all(compiles[k][0] == 1 for k in starts), compiles


def test_t_max_and_n_traj_within_a_bucket_do_not_recompile():
    # T = 17 and 20 share the bucket of 20 steps, N = 104 and 112 that of 112 trajectories:
    # one compile, and each solve equals the one in arrays of its own size (buckets=False) to
    # rounding, standard errors and saved trajectories too
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01)
    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    kw = dict(key=5, response=dj.ExactResponse(32), errors=dj.GroupErrors(4), trajectories=dj.Trajectories(save=3))
    names = ("t", "m", "q", "C", "R", "P", "eps_gen", "train_loss", "train_acc", "lam_hat", "mu", "M_C", "M_R")
    for t_max, n_traj, compiles in ((3.4, 112, 1), (4.0, 104, 0)):
        with dj.count_compilations() as c:
            sol = dj.solve(problem, algo, t_max, n_traj, **kw)
        assert c.count_of("_solve_sweep") == compiles, c.names
        T = int(round(t_max / 0.2))
        assert sol.config.n_steps == T and sol.config.n_traj == n_traj
        assert sol.C.shape == (T + 1, T + 1) and sol.trajectories["u"].shape == (T + 1, 3)
        ref = dj.solve(problem, algo, t_max, n_traj, solver=dj.CausalSweep(buckets=False), **kw)
        assert bool(sol.ok) and int(sol.stats["n_clipped"]) == int(ref.stats["n_clipped"])
        for name in names:
            np.testing.assert_allclose(getattr(sol, name), getattr(ref, name), rtol=1e-11, atol=1e-13, err_msg=name)
        for name in ("m", "eps_gen", "C"):
            np.testing.assert_allclose(sol.se[name], ref.se[name], rtol=1e-9, atol=1e-13, err_msg=name)
        np.testing.assert_allclose(sol.trajectories["r"], ref.trajectories["r"], rtol=1e-11, atol=1e-13)
