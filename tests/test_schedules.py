"""Learning-rate schedules: the DMFT step by step with eta_k, against finite-d simulation
with the same schedule, an exact reduction to constant eta, and gradients in the schedule's
parameters against finite differences."""
import jax
import numpy as np
import pytest

import dmft_jax as dj
from test_physics import D, N_SEEDS, violations

PROBLEM = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)


def test_constant_schedule_equals_constant_eta():
    kw = dict(t_max=2.0, n_traj=512, key=1)
    a = dj.solve(PROBLEM, dj.PersistentSGD(0.2, 0.3, 1 / 0.6), **kw)
    b = dj.solve(PROBLEM, dj.PersistentSGD(dj.ExponentialDecay(0.2, 0.0), 0.3, 1 / 0.6), **kw)
    np.testing.assert_allclose(b.t, a.t, rtol=1e-12)
    for name in ("m", "C", "M_R", "train_loss"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-12)


def test_piecewise_schedule_time_grid_and_validation():
    sched = dj.PiecewiseConstant([0.2, 0.1], boundaries=[5])
    sol = dj.solve(PROBLEM, dj.GD(sched), t_max=1.5, n_traj=256)
    np.testing.assert_allclose(np.diff(np.asarray(sol.t)), [0.2] * 5 + [0.1] * 5)
    with pytest.raises(ValueError, match="tau"):  # eta_k > tau somewhere
        dj.solve(PROBLEM, dj.PersistentSGD(dj.PiecewiseConstant([2.0, 0.1], [3]), 0.3, 1.0), t_max=2.0)
    with pytest.raises(ValueError, match="boundaries"):
        dj.PiecewiseConstant([0.2, 0.1, 0.05], boundaries=[5])


def test_decaying_learning_rate_against_simulation():
    """Persistent SGD with eta_k = 0.05 + 0.35 exp(-0.05 k): the switching probabilities
    follow eta_k. Same agreement criterion as tests/test_physics.py."""
    algo = dj.PersistentSGD(dj.ExponentialDecay(0.4, 0.05, floor=0.05), 0.3, 1 / 0.6)
    sol = dj.solve(PROBLEM, algo, t_max=8.0, n_traj=2**15, key=0)
    sim = dj.simulate(PROBLEM, algo, t_max=8.0, d=D, n_seeds=N_SEEDS, key=5)
    assert len(sol.t) == len(sim.t) and float(sol.t[-1]) >= 8.0 - 1e-9
    assert violations(sol, sim) == {}


def test_gradient_in_schedule_parameters():
    """SGD's selection law does not depend on eta_k: the derivative is pathwise and must
    match central differences with common random numbers."""
    def f(init, rate):
        algo = dj.SGD(dj.ExponentialDecay(init, rate, floor=0.02), 0.3)
        return dj.solve(PROBLEM, algo, n_steps=15, n_traj=1024, response=dj.ExactResponse(256), key=0).eps_gen[-1]

    g = jax.grad(f, argnums=(0, 1))(0.3, 0.05)
    h = 1e-6
    fd = ((float(f(0.3 + h, 0.05)) - float(f(0.3 - h, 0.05))) / (2 * h),
          (float(f(0.3, 0.05 + h)) - float(f(0.3, 0.05 - h))) / (2 * h))
    for gi, fi in zip(g, fd):
        assert abs(float(gi) - fi) <= 1e-5 * abs(fi) + 1e-9, (float(gi), fi)


@pytest.mark.slow
def test_tune_schedule_parameters():
    """dj.tune over the decay schedule's parameters: objective decreases, values stay > 0."""
    algo = dj.SGD(dj.ExponentialDecay(0.3, 0.05, floor=0.02), 0.3)
    res = dj.tune(PROBLEM, algo, ["eta.init", "eta.rate"], t_max=2.0, n_traj=512, response=dj.ExactResponse(128), steps=5,
                  errors=None)
    assert res.history["objective"][-1] < res.history["objective"][0]
    assert res.params["eta.init"] > 0 and res.params["eta.rate"] > 0
    with pytest.raises(ValueError, match="eta.init"):
        dj.tune(PROBLEM, algo, ["eta"], t_max=2.0, steps=1)


# ---- batch-fraction schedules b_k -------------------------------------------------------


@pytest.mark.parametrize("make", [lambda b: dj.PersistentSGD(0.2, b, 1 / 0.6), lambda b: dj.SGD(0.2, b)],
                         ids=["persistent", "sgd"])
def test_constant_batch_schedule_equals_constant_b(make):
    kw = dict(t_max=2.0, n_traj=512, key=1)
    a = dj.solve(PROBLEM, make(0.3), **kw)
    b = dj.solve(PROBLEM, make(dj.PiecewiseConstant([0.3, 0.3], [4])), **kw)
    for name in ("m", "C", "M_R", "train_loss"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-12, atol=1e-14)


@pytest.mark.slow  # heavy; run with -m slow (the default suite stays near 10 minutes)
def test_batch_schedule_against_simulation():
    """SGD with b = 0.2 for 20 steps, then 0.6 (i.i.d. Bernoulli(b_k) batches): DMFT vs d = 1000
    simulation with the same schedule, criterion of tests/test_physics.py. The jump in b is
    visible in the training loss, and a constant-b DMFT does not pass."""
    algo = dj.SGD(0.2, dj.PiecewiseConstant([0.2, 0.6], [20]))
    sol = dj.solve(PROBLEM, algo, t_max=8.0, n_traj=2**15, key=0)
    sim = dj.simulate(PROBLEM, algo, t_max=8.0, d=D, n_seeds=N_SEEDS, key=6)
    assert violations(sol, sim) == {}
    const = dj.solve(PROBLEM, dj.SGD(0.2, 0.2), t_max=8.0, n_traj=2**15, key=0)
    assert violations(const, sim) != {}


def test_batch_schedule_validation():
    with pytest.raises(ValueError, match="b must satisfy 0 < b <= 1"):
        dj.solve(PROBLEM, dj.SGD(0.2, dj.PiecewiseConstant([0.3, 1.5], [4])), t_max=2.0, n_traj=64)
    with pytest.raises(ValueError, match="b \\* eta <= \\(1 - b\\) \\* tau"):
        dj.solve(PROBLEM, dj.PersistentSGD(0.2, dj.PiecewiseConstant([0.3, 0.95], [4]), 1 / 0.6),
                 t_max=2.0, n_traj=64)


@pytest.mark.slow
def test_batch_schedule_likelihood_ratio_gradient_and_tune():
    # d eps_gen / d b_k of the two pieces: likelihood ratio vs coupled central differences
    # (N = 2^15, tolerance as in tests/test_gradients.py)
    kw = dict(n_steps=20, n_traj=2**15, response=dj.ExactResponse(512), key=0)
    f = lambda v: dj.solve(PROBLEM, dj.PersistentSGD(0.2, dj.PiecewiseConstant(v, [10]), 1 / 0.6),
                           **kw).eps_gen[-1]
    v0 = np.array([0.3, 0.4])
    g = np.asarray(jax.jacfwd(f)(v0))
    for i in range(2):
        e = np.eye(2)[i] * 0.03
        fd = (float(f(v0 + e)) - float(f(v0 - e))) / 0.06
        assert abs(fd) > 1e-3
        assert abs(g[i] - fd) <= 0.2 * abs(fd) + 2e-3, (i, g[i], fd)
    res = dj.tune(PROBLEM, dj.SGD(0.2, dj.PiecewiseConstant([0.3, 0.4], [5])), ["b.values"], t_max=2.0,
                  n_traj=512, response=dj.ExactResponse(128), steps=3, errors=None)
    assert all(0 < x < 1 for x in res.params["b.values"])


def test_float32_and_float64_take_the_same_number_of_steps():
    # eta = 0.2 is 0.2000000030 in float32: t_max = 20 gave 99 steps (t ended at 19.8) and
    # t_max = 5 gave 24; the count allows for the dtype's rounding
    import jax.numpy as jnp

    from dmft_jax._util import cast_tree
    from dmft_jax._engine.timegrid import count_steps

    for algo, t_max, T in [(dj.GD(0.2), 20.0, 100), (dj.PersistentSGD(0.2), 5.0, 25), (dj.SGD(0.1), 1.0, 10),
                           (dj.GD(0.3), 0.9, 3), (dj.GD(0.7), 7.0, 10), (dj.GD(0.2), 20.1, 100),
                           (dj.GD(dj.ExponentialDecay(0.4, 0.05, floor=0.05)), 20.0, None)]:
        counts = {dt: count_steps(cast_tree(algo, dt), t_max) for dt in (jnp.float32, jnp.float64)}
        assert counts[jnp.float32] == counts[jnp.float64], (algo, t_max, counts)
        if T is not None:
            assert counts[jnp.float64] == T
