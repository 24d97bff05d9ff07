"""The hand-written adjoint of the sweep (``solve(adjoint=dj.SweepAdjoint())``) against JAX's own reverse
mode of the same sweep: equal gradients to rounding, for every parameter at once, both
models, several time blocks, schedules, the likelihood-ratio parameters; and the errors
for the cases it does not cover."""
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj

TWO = dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01, m0=0.05)
THREE = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.01, R0=1.0, m0=0.05)
FIELDS = ("lam", "R0", "alpha", "delta", "m0")


def _objective(problem, algorithm, adjoint, **kw):
    if "time_blocks" in kw:
        kw["solver"] = dj.CausalSweep(kw.pop("time_blocks"))
    sol = dj.solve(problem, algorithm, adjoint=dj.SweepAdjoint() if adjoint else dj.AutodiffAdjoint(), **kw)
    # a mix of every kind of output: final error, a training curve, the whole C and kernels
    return (sol.eps_gen[-1] + 0.3 * jnp.mean(sol.train_loss) + 0.01 * jnp.sum(sol.C)
            + 0.1 * jnp.sum(sol.M_R) + 0.05 * jnp.sum(sol.M_C) + jnp.sum(sol.m) * 0.02)


def _compare(f, x0, rtol=1e-9):
    v1, g1 = jax.value_and_grad(lambda x: f(x, False))(x0)
    v2, g2 = jax.value_and_grad(lambda x: f(x, True))(x0)
    assert float(v1) == float(v2)  # same forward values
    for name in x0:
        a, b = np.asarray(g1[name]), np.asarray(g2[name])
        assert np.all(np.abs(a) > 0), name  # every derivative is exercised
        np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-12 * np.max(np.abs(a)), err_msg=name)


@pytest.mark.parametrize("problem", [TWO, pytest.param(THREE, marks=pytest.mark.slow)], ids=["two", "three"])
def test_adjoint_equals_autodiff_all_parameters(problem):
    # T = 36 steps: 2 blocks in the backward pass; rho (two clusters) enters through the
    # cluster draw only (likelihood ratio), L (three clusters) pathwise
    extra = ("rho",) if problem is TWO else ("L",)

    def f(x, adjoint):
        p = eqx.tree_at(lambda q: [getattr(q, n) for n in FIELDS], problem, [x[n] for n in FIELDS])
        p = eqx.tree_at(lambda q: getattr(q.model, extra[0]), p, x[extra[0]])
        algo = dj.PersistentSGD(x["eta"], x["b"], x["tau"])
        return _objective(p, algo, adjoint, n_steps=36, n_traj=512, response=dj.ExactResponse(128), key=3)

    x0 = {n: float(getattr(problem, n)) for n in FIELDS} | {extra[0]: float(getattr(problem.model, extra[0]))}
    _compare(f, x0 | dict(eta=0.2, b=0.3, tau=1 / 0.6))


@pytest.mark.slow  # 39 s; the two models' checks above and the R0 = 0 check keep the default suite covered
def test_adjoint_with_schedules_blocks_and_full_batch():
    # per-step eta_k and b_k (schedule parameters); 2 forward time blocks against 1 backward
    # block: the backward reads the forward's column blocks of chi, including a block whose
    # rows start after the step being read
    def f(x, adjoint):
        algo = dj.SGD(dj.ExponentialDecay(x["init"], x["rate"], 0.05), dj.PiecewiseConstant(x["bvals"], [8]))
        return _objective(TWO, algo, adjoint, n_steps=16, n_traj=128, response=dj.ExactResponse(32), key=1, time_blocks=2)

    _compare(f, dict(init=0.3, rate=0.02, bvals=jnp.array([0.3, 0.5])))

    # full-batch GD with a ridge: the pathwise part alone
    def g(x, adjoint):
        p = eqx.tree_at(lambda q: q.lam, TWO, x["lam"])
        return _objective(p, dj.GD(x["eta"]), adjoint, n_steps=8, n_traj=128, response=dj.ExactResponse(32), key=2)

    _compare(g, dict(lam=0.1, eta=0.3))


@pytest.mark.slow
def test_adjoint_gradient_matches_finite_differences():
    # independent of autodiff altogether: central differences with common random numbers
    def f(lam):
        p = eqx.tree_at(lambda q: q.lam, TWO, lam)
        return dj.solve(p, dj.PersistentSGD(0.2, 0.3, 1 / 0.6), n_steps=20, n_traj=512, response=dj.ExactResponse(128), key=0,
                        adjoint=dj.SweepAdjoint()).eps_gen[-1]

    g = float(jax.grad(f)(0.05))
    h = 1e-5
    fd = (float(f(0.05 + h)) - float(f(0.05 - h))) / (2 * h)
    assert abs(g - fd) <= 1e-6 * abs(fd)


def test_adjoint_unsupported_cases_are_refused():
    kw = dict(t_max=1.0, n_traj=64, adjoint=dj.SweepAdjoint())
    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    with pytest.raises(ValueError, match="SweepAdjoint supports"):
        dj.solve(TWO, algo, response=dj.ProbeResponse(2), **kw)
    with pytest.raises(ValueError, match="SweepAdjoint supports"):
        dj.solve(TWO, algo, solver=dj.DampedIteration(), **kw)
    # the former boolean still works, with a DeprecationWarning naming its replacement
    with pytest.warns(DeprecationWarning, match="SweepAdjoint"):
        dj.solve(TWO, algo, t_max=1.0, n_traj=64, adjoint=True)
    # forward mode through a custom VJP is not available: JAX says so (no silent zeros)
    with pytest.raises(TypeError):
        jax.jvp(lambda lam: dj.solve(eqx.tree_at(lambda q: q.lam, TWO, lam), algo, n_steps=5, n_traj=64,
                                     adjoint=dj.SweepAdjoint()).eps_gen[-1], (0.1,), (1.0,))
