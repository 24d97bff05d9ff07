"""Bad input raises ValueError naming the parameter and the valid range."""
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj


@pytest.mark.parametrize("kwargs, name", [
    (dict(alpha=0.0), "alpha"), (dict(alpha=-1.0), "alpha"), (dict(delta=0.0), "delta"),
    (dict(lam=-0.1), "lam"), (dict(R0=-1.0), "R0"), (dict(alpha=np.nan), "alpha"),
    (dict(delta=np.inf), "delta"), (dict(m0=np.nan), "m0"), (dict(loss="nope"), "loss"),
    (dict(loss=3), "loss"),
])
def test_problem_rejects(kwargs, name):
    with pytest.raises(ValueError, match=name):
        dj.Problem(**kwargs)


@pytest.mark.parametrize("make, name", [
    (lambda: dj.TwoCluster(rho=0.0), "rho"), (lambda: dj.TwoCluster(rho=1.5), "rho"),
    (lambda: dj.ThreeCluster(L=-1.0), "L"),
    (lambda: dj.Problem(model=dj.ThreeCluster(), m0=0.0), "m0"),
    (lambda: dj.PersistentSGD(eta=0.2, b=0.0, tau=1.0), "b"),
    (lambda: dj.PersistentSGD(eta=0.2, b=1.2, tau=1.0), "b"),
    (lambda: dj.PersistentSGD(eta=0.5, b=0.3, tau=0.2), "tau"),
    (lambda: dj.PersistentSGD(eta=0.2, b=0.9, tau=1.0), "b"),  # b eta > (1 - b) tau
    (lambda: dj.PersistentSGD(eta=-0.2, b=0.3, tau=1.0), "eta"),
    (lambda: dj.SGD(eta=0.2, b=0.0), "b"), (lambda: dj.GD(eta=0.0), "eta"),
    (lambda: dj.SmoothHinge(beta=0.0), "beta"),
])
def test_constructors_reject(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_error_message_names_range():
    with pytest.raises(ValueError, match=r"alpha > 0.*-1"):
        dj.Problem(alpha=-1.0)
    with pytest.raises(ValueError, match=r"b \* eta <= \(1 - b\) \* tau"):
        dj.PersistentSGD(eta=0.2, b=0.9, tau=1.0)


@pytest.mark.parametrize("kwargs, name", [
    (dict(t_max=0.1), "t_max"), (dict(t_max=-1.0), "t_max"), (dict(n_traj=1), "n_traj"),
    (dict(n_traj=7), "n_traj"), (dict(response=dj.ExactResponse(0)), "n_chi"), (dict(response=dj.ExactResponse(10**6)), "n_chi"),
    (dict(solver=dj.DampedIteration(damping=0.0)), "damping"), (dict(solver="sweep"), "solver"),
    (dict(solver=dj.CausalSweep(pivot_rtol=-1.0)), "pivot_rtol"), (dict(n_steps=2.5), "n_steps"),
    (dict(dtype="int32"), "dtype"),
])
def test_solve_rejects(kwargs, name):
    args = dict(t_max=1.0, n_traj=64)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        dj.solve(dj.Problem(), dj.GD(0.2), **args)


def test_hinge_refused_by_solver_with_alternative():
    with pytest.raises(ValueError, match="SmoothHinge"):
        dj.solve(dj.Problem(loss="hinge"), dj.GD(0.2), t_max=1.0, n_traj=64)


def test_simulate_rejects():
    with pytest.raises(ValueError, match="d must"):
        dj.simulate(dj.Problem(), dj.GD(0.2), t_max=1.0, d=1, n_seeds=2)
    with pytest.raises(ValueError, match="n_seeds"):
        dj.simulate(dj.Problem(), dj.GD(0.2), t_max=1.0, d=10, n_seeds=0)


def test_b_equal_one_is_full_batch():
    # b = 1 is valid (full batch) although b eta <= (1 - b) tau fails there
    algo = dj.PersistentSGD(eta=0.2, b=1.0, tau=1.0)
    b, p_on, p_off = algo.selection(jnp.asarray(0.2))
    assert float(b) == 1.0 and float(p_off) == 0.0


def test_request_that_cannot_fit_is_refused_before_allocation():
    with pytest.raises(ValueError, match="GiB"):
        dj.solve(dj.Problem(), dj.GD(0.01), t_max=100.0, n_traj=2**20, response=dj.ExactResponse(2**20))


def test_eps_gen_of_zero_weights_is_one_half():
    problem = dj.Problem(R0=0.0)
    assert float(problem.eps_gen(0.0, 0.0)) == 0.5
    assert float(problem.eps_gen(0.1, 0.0)) == 0.0
