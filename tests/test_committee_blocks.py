"""Committee machines: the response estimators, error bars, grids and the likelihood-ratio
gradients of the block DMFT (docs/equations.md, section 6.2). A file of its own so that the
test suite's two workers share the committee tests."""
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj


@pytest.fixture(scope="module")
def two():
    return dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.3, m0=0.1)


@pytest.mark.parametrize("rule", [dj.HeavyBall(), dj.Nesterov()])
def test_probes_carry_the_block_response(rule):
    """The probed vectors are exactly v[k] = sum_l chi[k, l] eps[l] (with either momentum rule:
    both are linear two-step updates), and the probe estimate of a kernel row is the exact row
    within its own standard error: the estimators of the one engine at K = 2."""
    import jax
    from dmft_jax._response.probes import ProbeState

    S, n, K, P = 6, 5, 2, 1000
    rng = np.random.default_rng(0)
    exact, probes = dj.ExactResponse(n).resolve(S - 1, n, 8, K), dj.ProbeResponse(P).resolve(S - 1, n, 8, K)
    se = exact.init(jax.random.PRNGKey(0), S - 1, n, jnp.float64, K)
    sp = probes.init(jax.random.PRNGKey(1), S - 1, n, jnp.float64, K)
    dts, delta, w = jnp.asarray(rng.uniform(0.1, 0.3, S)), 0.7, jnp.asarray(rng.uniform(0.5, 1.5, n))
    one = dj.ProbeResponse(1).resolve(S - 1, n, 8, K)
    per_probe = jax.vmap(lambda v, e: one.row(ProbeState(v[:, :, None], e[:, :, None], sp.H_prev, sp.key, None), k, w,
                                              H, dts, delta), in_axes=(2, 2))
    for k in range(S - 1):
        sp = probes.begin(sp, k)  # step k's fields drawn and v[k] written (the estimator's protocol)
        H = jnp.asarray(rng.standard_normal((K, K, n)))
        H = H + jnp.swapaxes(H, 0, 1)
        if k > 1:
            est, each = probes.row(sp, k, w, H, dts, delta), per_probe(sp.v, sp.eps)
            np.testing.assert_allclose(np.asarray(est), np.asarray(each.mean(axis=0)), rtol=1e-10, atol=1e-12)
            err = np.asarray(each.std(axis=0, ddof=1)) / np.sqrt(P)
            gap = np.abs(np.asarray(est - exact.row(se, k, w, H, dts, delta)))
            assert np.all(gap <= 4.5 * err + 1e-12) and np.max(gap) > 0, (k, np.max(gap / (err + 1e-300)))
        KR = jnp.asarray(rng.standard_normal((S, K, K))) * 0.3 * (jnp.arange(S) <= k)[:, None, None]
        decay = jnp.eye(K) - dts[k] * jnp.asarray(rng.standard_normal((K, K))) * 0.2
        se = exact.advance(se, k, KR, dts[k], decay, delta, H, update=rule.two_step(0.3))
        sp = probes.advance(sp, k, KR, dts[k], decay, delta, H, update=rule.two_step(0.3))
        v = jnp.einsum("albn,lbpn->apn", se.chi[0][k + 1], sp.eps[: S - 1])  # eps of the steps <= k
        np.testing.assert_allclose(np.asarray(sp.v_now), np.asarray(v), rtol=1e-12, atol=1e-12)


def test_probe_and_exact_solves_agree_within_their_error_bars(two, tmp_path):
    committee = dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1])
    kw = dict(n_steps=10, n_traj=2048, errors=dj.GroupErrors(8))  # independent keys: independent noise
    exact = dj.solve(committee, dj.PersistentSGD(0.2, 0.3, 2.0), response=dj.ExactResponse(512), key=1, **kw)
    probe = dj.solve(committee, dj.PersistentSGD(0.2, 0.3, 2.0), response=dj.ProbeResponse(4), key=2, **kw)
    assert bool(exact.ok) and bool(probe.ok) and probe.config.n_chi == 0
    for name in ("m", "Q", "eps_gen", "train_loss"):
        a, b = np.asarray(getattr(exact, name)), np.asarray(getattr(probe, name))
        se = np.hypot(np.asarray(getattr(exact, name + "_se")), np.asarray(getattr(probe, name + "_se")))
        assert np.all(se[1:] > 0) and np.all(np.abs(a - b) <= 4 * se + 1e-12), name
    back = dj.load(dj.save(probe, tmp_path / "probe"))  # the solution and its error bars
    np.testing.assert_array_equal(back.q_se, np.asarray(probe.Q_se))  # saved under its one name, q
    np.testing.assert_array_equal(back.M_R, np.asarray(probe.M_R))
    assert back.meta["config"]["response"] == {"estimator": "ProbeResponse", "n_probes": 4, "n_traj": 2048}  # one form for every K


def test_committee_grid_is_the_single_solves_compiled_once(two):
    from dmft_jax._tools.grid import count_compilations

    committee = dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1])
    kw = dict(n_steps=6, n_traj=128, key=3, response=dj.ExactResponse(64))
    grid = dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"lam": [0.0, 0.1], "b": [0.4, 0.7]}, **kw)
    assert grid.Q.shape == (2, 2, 7, 2, 2) and np.all(np.asarray(grid.result.ok))
    problem = dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.3)
    one = dj.solve(dj.Committee(problem, dj.SoftCommittee(2), m0=[0.3, -0.1]), dj.SGD(0.2, 0.7), **kw)
    for name in ("m", "Q", "eps_gen", "M_R"):
        np.testing.assert_allclose(np.asarray(getattr(grid, name)[1, 1]), np.asarray(getattr(one, name)),
                                   rtol=1e-12, atol=1e-14, err_msg=name)
    assert float(grid.grid["lam"][1, 0]) == 0.1 and float(grid.grid["b"][1, 0]) == 0.4
    with count_compilations() as compiles:
        dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"lam": [0.2, 0.3], "b": [0.5, 0.6]}, **kw)
    assert compiles.count_of("_grid_jit") == 0
    with pytest.raises(ValueError, match="lam must satisfy lam >= 0"):
        dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"lam": [0.1, -1.0]}, **kw)
    with pytest.raises(ValueError, match="m0 of a committee is one overlap per unit"):
        dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"m0": [0.1, 0.2]}, **kw)
    with pytest.raises(ValueError, match="GroupErrors.groups = 3"):
        dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"lam": [0.1]}, errors=dj.GroupErrors(3), **kw)
    with pytest.raises(ValueError, match="adjoint: the hand-written SweepAdjoint is built for a single unit"):
        dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"lam": [0.1]}, adjoint=dj.SweepAdjoint(), **kw)
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['colour'\\]"):
        dj.solve_grid(committee, dj.SGD(0.2, 0.4), {"lam": [0.1]}, colour="red", **kw)
    with pytest.raises(ValueError, match="L .* plays no part in a committee"):
        dj.solve_grid(dj.Committee(dj.Problem(dj.ThreeCluster(), m0=0.1), dj.SoftCommittee(2)), dj.SGD(0.2, 0.4),
                      {"L": [0.5, 0.7]}, **kw)


@pytest.mark.slow  # about a minute: five solves at N = 2^15
def test_committee_likelihood_ratio_gradients_b_and_tau(two):
    """b and tau act through the law of the selection: the likelihood-ratio gradient against
    central differences of solves with coupled selection paths (as tests/test_gradients.py)."""
    import jax

    committee = dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1])
    kw = dict(n_steps=20, n_traj=2**15, response=dj.ExactResponse(1024), key=0)

    def f(b, tau):
        sol = dj.solve(committee, dj.PersistentSGD(0.2, b, tau), **kw)
        return sol.eps_gen[-1] + sol.train_loss[-1]

    gb, gt = (float(x) for x in jax.grad(f, argnums=(0, 1))(0.3, 0.8))
    fdb = (float(f(0.33, 0.8)) - float(f(0.27, 0.8))) / 0.06
    fdt = (float(f(0.3, 0.9)) - float(f(0.3, 0.7))) / 0.2
    # measured (key 0): b -0.803 against -0.792, tau 0.0198 against 0.0205
    for g, fd in ((gb, fdb), (gt, fdt)):
        assert abs(fd) > 1e-2, fd  # the check has teeth
        assert abs(g - fd) <= 0.2 * abs(fd) + 1e-3, (g, fd)
