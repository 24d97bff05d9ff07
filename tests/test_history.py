"""The compressed history (CausalSweep(history=dj.CompressedHistory(...)); docs/equations.md,
section 2.10): its schedule, its identity with the full history while nothing is merged, its
accuracy against the exact scheme and exact answers at long times, its error control, its
gradients and its bad inputs."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax._engine.history import slot_schedule

PSGD = dj.PersistentSGD(eta=0.2, b=0.3, tau=1 / 0.6)


def compressed(window=64, per_level=8, **kw):
    return dj.CausalSweep(history=dj.CompressedHistory(window=window, per_level=per_level, **kw))


def replay(T, window, per_level):
    """The steps each slot holds after every step, replayed from the schedule's tables."""
    write, dst, src, n = slot_schedule(T, window, per_level)
    held = [[] for _ in range(n)]
    layouts = []
    for k in range(T + 1):
        for a, b in zip(dst[k], src[k]):  # the merges at the start of step k
            if a != n - 1:
                assert len(held[a]) == len(held[b]) and held[a][-1] + 1 == held[b][0]  # equal, adjacent
                held[a], held[b] = held[a] + held[b], []
        assert held[write[k]] == []  # a free slot
        held[write[k]] = [k]
        layouts.append([list(h) for h in held])
    return layouts, n


@pytest.mark.parametrize("T,window,per_level", [(300, 4, 2), (2000, 16, 3), (700, 64, 8)])
def test_schedule_covers_every_step_once_in_doubling_blocks(T, window, per_level):
    layouts, n = replay(T, window, per_level)
    for k, held in enumerate(layouts):
        steps = sorted(s for h in held for s in h)
        assert steps == list(range(k + 1))  # every step of the past exactly once
        lengths = [len(h) for h in held if h]
        assert all(L & (L - 1) == 0 for L in lengths)  # powers of two
        by_start = sorted((h[0], len(h)) for h in held if h)
        assert all(a[1] >= b[1] for a, b in zip(by_start, by_start[1:]))  # longer blocks further back
        # at most one merge per step: a level's merge may wait a step behind a lower level's
        assert sum(L == 1 for L in lengths) <= window + 1 and all(
            sum(L == 2 ** j for L in lengths) <= per_level + 1 for j in range(1, 40))
        assert all(a.shape[1] == 1 for a in slot_schedule(T, window, per_level)[1:3])  # one pair per step
    assert n <= window + 3 + (per_level + 1) * int(np.log2(T / window) + 2)  # O(log T) slots
    # the first steps' schedule does not depend on the horizon
    short = slot_schedule(T // 2, window, per_level)
    assert np.array_equal(short[0], slot_schedule(T, window, per_level)[0][: T // 2 + 1])


@pytest.mark.parametrize("antithetic,K,n_live,algo", [
    (False, 1, None, PSGD), (True, 2, None, dj.SGD(eta=0.1, b=0.4, temperature=0.05)),
    (False, 1, 40, dj.PersistentSGD(eta=0.3, b=0.2, tau=3.0))], ids=["psgd", "antithetic_committee_langevin", "live"])
def test_draws_at_their_step_are_the_draws_up_front(seed_two_cluster, antithetic, K, n_live, algo):
    """A compressed solve draws zeta, the Langevin normals and the selection at their step (no
    (T + 1) x N array): the same numbers as the draws made up front (the selection bit for bit,
    the normals to rounding)."""
    from dmft_jax._engine import process

    T, N = 60, 64
    args = (jax.random.PRNGKey(7), seed_two_cluster, algo, T, N, antithetic, jnp.float64, True, n_live, K)
    full, stream = process.draw(*args), process.draw(*args, streamed=True)
    assert stream.s is None and stream.zeta is None and stream.zeta_l is None
    for name in ("c", "y", "h0", "u0", "log_p0"):
        np.testing.assert_array_equal(getattr(stream, name), getattr(full, name))
    sel = stream.selection_start()
    for k in range(T + 1):
        # moment matching sums a row's squares alone, not in the grid: equal to rounding
        np.testing.assert_allclose(stream.zeta_at(k), full.zeta[k], rtol=1e-14, atol=1e-15)
        if full.zeta_l is not None:
            np.testing.assert_allclose(stream.zeta_l_at(k), full.zeta_l[k], rtol=1e-14, atol=1e-15)
        draws, ref = stream.at_step(k, sel), full.at_step(k)
        np.testing.assert_array_equal(draws.s_k, ref.s_k)
        np.testing.assert_array_equal(draws.s_prev, ref.s_prev)
        if k < T:
            sel = stream.selection_next(sel, k)
    assert 0.05 < float(jnp.mean(full.s)) < 0.95  # the paths switch


@pytest.mark.parametrize("case", ["psgd", pytest.param("committee", marks=pytest.mark.slow),
                                  pytest.param("langevin_bias", marks=pytest.mark.slow)])
def test_without_merges_it_is_the_full_history(seed_two_cluster, case):
    """A window longer than the run merges nothing: the slots are the steps, the conditional
    noise is the causal Cholesky row and the weight side's covariance recursion is C_perp's
    diagonal, so every observable is the full history's to rounding (same keys). (Where the
    noise covariance is singular to rounding, as for full-batch GD of a committee on few
    trajectories, the full scheme clips pivots and the compressed one regularises by
    pivot_rtol: they differ by about pivot_rtol times the conditioning.)"""
    problem, algo = seed_two_cluster, PSGD
    if case == "committee":
        problem = dj.Committee(seed_two_cluster, dj.SoftCommittee(2))
    elif case == "langevin_bias":
        problem = dj.Problem(model=dj.TwoCluster(rho=0.5), loss=dj.Logistic(), alpha=2.0, delta=0.5, lam=0.0,
                             R0=0.01, bias=0.1)
        algo = dj.SGD(eta=0.2, b=0.5, temperature=0.05)
    kw = dict(n_steps=40, n_traj=512, key=3, response=dj.ProbeResponse(2))
    full = dj.solve(problem, algo, solver=dj.CausalSweep(buckets=False), **kw)
    comp = dj.solve(problem, algo, solver=compressed(window=64, estimate=False), **kw)
    assert comp.ok and full.ok
    for name in ("m", "q", "eps_gen", "train_loss", "lam_hat", "mu"):
        a, b = np.asarray(getattr(full, name)), np.asarray(getattr(comp, name))
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7, err_msg=name)
    assert comp.C is None and comp.R is None  # no T x T squares


@pytest.mark.slow  # 40 s
def test_compression_error_is_small_and_controlled(seed_two_cluster):
    """Merging the far past (window 8, T = 150) changes eps_gen by far less than its Monte
    Carlo error on the same keys, the embedded pair's estimate bounds the actual error within a
    small factor, and a tolerance below it ends the solve with history_tolerance."""
    kw = dict(n_steps=150, n_traj=1024, key=0, response=dj.ProbeResponse(4))
    full = dj.solve(seed_two_cluster, PSGD, solver=dj.CausalSweep(buckets=False), errors=dj.GroupErrors(8), **kw)
    comp = dj.solve(seed_two_cluster, PSGD, solver=compressed(window=8, per_level=4), **kw)
    assert comp.ok, comp.message
    err = np.max(np.abs(np.asarray(comp.eps_gen) - np.asarray(full.eps_gen)))
    assert err < 0.1 * float(np.max(full.eps_gen_se))
    est = float(comp.stats["history_error"])
    assert err < 3 * est + 1e-6 and est < 1e-3
    tight = dj.solve(seed_two_cluster, PSGD, solver=compressed(window=8, per_level=4, atol=est / 10), **kw)
    assert int(tight.status) == dj.RESULTS.history_tolerance and "history" in tight.message


@pytest.mark.slow  # 1 minute each
@pytest.mark.parametrize("lam", [0.1, 0.0], ids=["ridge", "ridgeless"])
def test_long_time_ridge_regression_against_the_exact_solution(lam):
    """GD on ridge regression to t = 400 (T = 2000 steps, ~40 slots): m, q and eps_gen against
    the Marchenko-Pastur solution, within 4 standard errors at every step (at N = 2048 the
    Monte Carlo error of eps_gen late is about 0.02: the noise covariance of converged GD is
    singular to rounding, ~1900 of 2000 pivots clipped, which the full history shares; 2.4-3.2
    standard errors at worst here). (The embedded pair's estimate
    here, about 1e-3, is as large as the Monte Carlo error: with the noise covariance singular
    to rounding (converged GD, hundreds of clipped pivots) the two compressions reshuffle the
    noise at that level, so the tolerance is set above it.)"""
    problem = dj.Problem(dj.TeacherRegression(0.5), "squared_error", alpha=2.0, lam=lam, R0=1.0)
    algo = dj.GD(0.2)
    sol = dj.solve(problem, algo, t_max=400.0, n_traj=2048, key=1, solver=compressed(window=16, per_level=4, atol=2e-2, rtol=5e-2),
                   errors=dj.GroupErrors(16))
    assert sol.ok, sol.message
    exact = dj.ridge_gd(problem, algo, t_max=400.0)
    for name in ("m", "q", "eps_gen"):
        x, se = np.asarray(getattr(sol, name)), np.asarray(getattr(sol, name + "_se"))
        assert np.all(np.abs(x - getattr(exact, name)) <= 4 * se + 1e-4), name


@pytest.mark.slow  # 30 s
def test_gradient_through_merges_matches_finite_differences(seed_two_cluster):
    """jax.grad of eps_gen(T) through a compressed solve with merges (window 8, T = 60)
    against central differences on the same keys."""
    algo = dj.GD(0.2)
    solver = compressed(window=8, per_level=2, estimate=False)

    def f(lam):
        p = eqx.tree_at(lambda p: p.lam, seed_two_cluster, lam)
        return dj.solve(p, algo, n_steps=60, n_traj=256, key=2, solver=solver).eps_gen[-1]

    g = jax.grad(f)(jnp.asarray(0.05))
    h = 1e-4
    fd = (f(jnp.asarray(0.05 + h)) - f(jnp.asarray(0.05 - h))) / (2 * h)
    assert float(g) == pytest.approx(float(fd), rel=2e-3, abs=1e-7)


@pytest.mark.slow
def test_float32_takes_the_same_steps_and_agrees(seed_two_cluster):
    kw = dict(t_max=20.0, n_traj=512, key=0, solver=compressed(window=8, per_level=2, estimate=False))
    a = dj.solve(seed_two_cluster, PSGD, dtype="float64", **kw)
    b = dj.solve(seed_two_cluster, PSGD, dtype="float32", **kw)
    assert a.t.shape == b.t.shape and b.ok
    assert float(jnp.max(jnp.abs(a.eps_gen - b.eps_gen.astype(a.eps_gen.dtype)))) < 1e-3


@pytest.mark.parametrize("kwargs,match", [
    (dict(window=2), "window"), (dict(window=8.5), "window"), (dict(per_level=1), "per_level"),
    (dict(per_level=True), "per_level"), (dict(atol=0.0), "atol"), (dict(rtol=float("nan")), "rtol"),
    (dict(estimate="yes"), "estimate"), (dict(n_estimate=1), "n_estimate"), (dict(n_estimate=32), "n_estimate"),
    (dict(window=4, per_level=2), "coarser"),  # the embedded pair would compare the history with itself
])
def test_bad_history_options_are_refused_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.CompressedHistory(**kwargs)


def test_what_a_compressed_history_does_not_cover_is_refused(seed_two_cluster):
    with pytest.raises(ValueError, match="history"):
        dj.memory_estimate(1000, 256, response=dj.ProbeResponse(), history="compressed")
    with pytest.raises(ValueError, match="history"):
        dj.time_estimate(1000, 256, dj.ProbeResponse(), history=dj.CompressedHistory)  # the class
    with pytest.raises(ValueError, match="ProbeResponse"):
        dj.memory_estimate(1000, 256, response=dj.ExactResponse(4), history=dj.CompressedHistory())
    assert dj.time_estimate(10**8, 256, dj.ProbeResponse(), history=dj.CompressedHistory()) > 0  # no O(T) loop
    solver = compressed(estimate=False)
    with pytest.raises(ValueError, match="response"):
        dj.solve(seed_two_cluster, PSGD, t_max=2.0, n_traj=64, solver=solver, response=dj.ExactResponse())
    with pytest.raises(ValueError, match="beta"):
        dj.solve(seed_two_cluster, dj.GD(0.2, beta=0.5), t_max=2.0, n_traj=64, solver=solver)
    with pytest.raises(ValueError, match="adjoint"):
        dj.solve(seed_two_cluster, dj.GD(0.2), t_max=2.0, n_traj=64, solver=solver, adjoint=dj.SweepAdjoint())
    with pytest.raises(ValueError, match="history"):
        dj.CausalSweep(history="compressed")
    # saved trajectories are each step's values (a compressed history crashed with a shape error)
    with pytest.raises(ValueError, match=r"save_trajectories = 4.*FullHistory"):
        dj.solve(seed_two_cluster, PSGD, t_max=2.0, n_traj=64, solver=solver, trajectories=dj.Trajectories(save=4))
    # the error estimate on too few trajectories is noise (on 2 it read 0 with success): refused by name
    with pytest.raises(ValueError, match=r"n_traj = 32: a CompressedHistory's error estimate.*estimate=False"):
        dj.solve(seed_two_cluster, PSGD, t_max=2.0, n_traj=32, solver=compressed())
    # the estimates take a compressed solve's default response (they asked for an exact one)
    assert dj.memory_estimate(5000, 1024, history=dj.CompressedHistory()) == dj.memory_estimate(
        5000, 1024, response=dj.ProbeResponse(), history=dj.CompressedHistory())
    from dmft_jax._solve.configure import configure
    # the automatic choice keeps the full history to save them
    assert configure(seed_two_cluster, PSGD, None, 64, n_steps=2400, trajectories=dj.Trajectories(save=4)).solver.history \
        == dj.FullHistory()
    assert configure(seed_two_cluster, PSGD, None, 64, n_steps=2400).solver.history.compressed
    sol = dj.solve(seed_two_cluster, PSGD, t_max=2.0, n_traj=64, solver=compressed(window=4, per_level=2,
                                                                                   estimate=False))
    with pytest.raises(ValueError, match="CompressedHistory solve keeps no two-time C and R"):
        dj.fdt(sol)
