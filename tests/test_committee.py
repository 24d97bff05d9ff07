"""Committee machines at finite d (docs/equations.md, section 6): K = 1 with the identity
read-out is the single-unit simulation, the gradient reaches every unit as the read-out
says (an exact identity of the linear committee), and bad input is refused by name."""
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj

KW = dict(t_max=3.0, d=150, n_seeds=3, key=4, n_test=200)  # sizes no other test uses


@pytest.fixture(scope="module")
def two():
    return dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.3, m0=0.1)


def test_one_unit_with_the_identity_read_out_is_the_single_unit_simulation(two):
    algo = dj.PersistentSGD(0.2, 0.3, 2.0, beta=0.3)
    single = dj.simulate(two, algo, **KW)
    one = dj.simulate(dj.Committee(two, dj.CustomReadout(1, lambda r: r[..., 0])), algo, **KW)
    assert bool(one.ok) and one.m.shape == (single.m.shape[0], 1) and one.Q.shape == (single.m.shape[0], 1, 1)
    np.testing.assert_allclose(one.runs["m"][..., 0], single.runs["m"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one.runs["q"][..., 0, 0], single.runs["q"], rtol=1e-10, atol=1e-12)
    for name in ("test_error", "train_loss", "train_acc"):
        np.testing.assert_allclose(one.runs[name], single.runs[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.fixture(scope="module")
def linear():
    """A linear committee f(r) = mean_a r_a (lam = 0.1, eta = 0.2), three units apart."""
    problem = dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.3)
    return dj.simulate(dj.Committee(problem, dj.CustomReadout(3, lambda r: jnp.mean(r, axis=-1)),
                                    m0=[0.1, 0.0, -0.2]), dj.SGD(0.2, 0.3), **KW)


def test_linear_committee_moves_only_the_mean_of_its_units(linear):
    # f(r) = mean_a r_a: every unit gets the same gradient, so W_a - W_b only decays by the
    # ridge, |W_a - W_b|^2 / d = (1 - eta lam)^(2k) |W_a(0) - W_b(0)|^2 / d in every seed
    decay = (1 - 0.2 * 0.1) ** np.arange(linear.t.shape[0])
    Q = np.asarray(linear.runs["q"])  # (seeds, T+1, 3, 3)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        dist = Q[..., a, a] - 2 * Q[..., a, b] + Q[..., b, b]
        np.testing.assert_allclose(dist, dist[:, :1] * decay**2, rtol=1e-9)
    m = np.asarray(linear.runs["m"])
    np.testing.assert_allclose(m[..., 0] - m[..., 2], np.broadcast_to(0.3 * decay, m.shape[:2]), rtol=1e-9)
    # and the units learn: the mean overlap grows
    assert np.all(np.asarray(linear.m[-1]).mean() > np.asarray(linear.m[0]).mean() + 0.05)


def test_initial_overlaps(two):
    sim = dj.simulate(dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1]), dj.GD(0.1), t_max=0.1, d=1000,
                      n_seeds=4, key=1, n_test=10)
    np.testing.assert_allclose(sim.m[0], [0.3, -0.1], atol=1e-12)  # prescribed exactly
    expected = 0.3 * np.eye(2) + np.outer([0.3, -0.1], [0.3, -0.1])
    assert np.all(np.abs(np.asarray(sim.Q[0]) - expected) <= 5 * np.asarray(sim.Q_se[0]) + 1e-3)


def test_saved_and_loaded(linear, tmp_path):
    path = dj.save(linear, tmp_path / "committee")
    back = dj.load(path)
    np.testing.assert_array_equal(back.Q, np.asarray(linear.Q))  # saved as q, read also as Q
    np.testing.assert_array_equal(back["q"], np.asarray(linear.q))
    assert back.K == 3 and back.kind == "simulation"
    assert back.meta["problem"]["K"] == 3 and back.meta["problem"]["m0"] == [0.1, 0.0, -0.2]
    with pytest.raises(FileExistsError):
        dj.save(linear, tmp_path / "committee")


@pytest.mark.parametrize("make, match", [
    (lambda p: dj.SoftCommittee(0), "K must be an integer >= 1"),
    (lambda p: dj.SoftCommittee(True), "K must be an integer >= 1"),
    (lambda p: dj.SignCommittee(3, beta=-1.0), "beta"),
    (lambda p: dj.CustomReadout(2, "tanh"), "fn must be a function of one argument"),
    (lambda p: dj.Committee(p, "soft"), "readout must be"),
    (lambda p: dj.Committee("p", dj.SoftCommittee(2)), "problem must be a dmft_jax.Problem"),
    (lambda p: dj.Committee(p, dj.SoftCommittee(2), m0=[0.1, 0.2, 0.3]), r"m0 must have one overlap per unit"),
    (lambda p: dj.Committee(p, dj.SoftCommittee(2), m0=[0.1, float("nan")]), "m0 must be finite"),
    (lambda p: dj.Committee(p, dj.SoftCommittee(2), m0=[[0.1]]), "m0 must be a number or a vector"),
    (lambda p: dj.Committee(dj.Problem(bias=0.1), dj.SoftCommittee(2)), "learnable bias is not built"),
    (lambda p: dj.Committee(p, dj.CustomReadout(2, jnp.sum)), r"one output; for fields of shape \(4, 2\) it returned shape \(\)"),
    (lambda p: dj.Committee(p, dj.CustomReadout(3, lambda r: jnp.tanh(r).mean(axis=0))), r"shape \(5, 3\) it returned shape \(3,\)"),
    (lambda p: dj.Committee(p, dj.CustomReadout(2, lambda r: r[:, 0] * r[:, 1])), r"fails on fields of shape \(2,\)"),
    (lambda p: dj.Committee(p, dj.CustomReadout(2, lambda r, s: r)),
     r"fn must be a function of one argument.*<lambda>\(r, s\) cannot be called that way"),
])
def test_bad_committee_input(two, make, match):
    with pytest.raises(ValueError, match=match):
        make(two)


def test_committee_simulation_checks_its_options(two):
    committee = dj.Committee(two, dj.SoftCommittee(2))
    with pytest.raises(ValueError, match="d must be an integer >= 2"):
        dj.simulate(committee, dj.GD(0.1), d=1)
    with pytest.raises(ValueError, match="algorithm must be"):
        dj.simulate(committee, "sgd")


# --- the DMFT with K x K blocks (docs/equations.md, section 6.2) ----------------------------

SOLVE = dict(n_steps=12, n_traj=256, key=2)  # sizes no other test uses


REGRESSION = dj.Problem(dj.TeacherRegression(0.3), alpha=2.0, lam=0.05, R0=0.3)


@pytest.mark.parametrize("regression, algo, root", [(False, dj.PersistentSGD(0.2, 0.3, 2.0), True),
                                                    (False, dj.SGD(0.2, 0.4, beta=0.5, temperature=0.05), False),
                                                    (True, dj.PersistentSGD(0.2, 0.3, 2.0), False)],
                         ids=["psgd-quadrature", "sgd-momentum-langevin-monte-carlo", "regression-quadrature"])
def test_one_unit_block_sweep_is_the_single_unit_dmft(two, regression, algo, root):
    problem = REGRESSION if regression else two
    single = dj.solve(problem, algo, response=dj.ExactResponse(64), **SOLVE)
    readout = dj.CustomReadout(1, lambda r: r[..., 0], root=(lambda rest: jnp.zeros(rest.shape[:-1])) if root else None)
    one = dj.solve(dj.Committee(problem, readout), algo, response=dj.ExactResponse(64), **SOLVE)
    assert bool(one.ok) and one.m.shape == (13, 1) and one.M_R.shape == (13, 13, 1, 1)
    pairs = [("m", one.m[:, 0], single.m), ("Q", one.Q[:, 0, 0], single.q), ("lam_hat", one.lam_hat[:, 0, 0],
             single.lam_hat), ("mu", one.mu[:, 0], single.mu), ("M_C", one.M_C[..., 0, 0], single.M_C),
             ("M_R", one.M_R[..., 0, 0], single.M_R), ("R", one.R[..., 0, 0], single.R),
             ("C_perp", one.C_perp[..., 0, 0], single.C_perp),
             ("train_loss", one.train_loss, single.train_loss), ("train_acc", one.train_acc, single.train_acc)]
    for name, a, b in pairs:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12, err_msg=name)
    if root or regression:  # the test error by quadrature: the single unit's closed form
        assert one.config.quadrature == (1600 if regression else 80)
        np.testing.assert_allclose(np.asarray(one.eps_gen), np.asarray(single.eps_gen), rtol=1e-9, atol=1e-12)
    else:  # a Monte Carlo average of the indicator
        assert one.config.quadrature == 0
        gap = np.abs(np.asarray(one.eps_gen - single.eps_gen))
        assert np.all(gap <= 4 * np.asarray(one.eps_gen_integral_se) + 1e-12)


def test_two_units_against_simulation(two):
    # unequal units (so that a swap of unit indices anywhere would show): DMFT against d = 1000
    committee = dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1])
    algo = dj.PersistentSGD(0.2, 0.3, 2.0)
    sol = dj.solve(committee, algo, n_steps=15, n_traj=8192, response=dj.ExactResponse(512), key=1)
    sim = dj.simulate(committee, algo, n_steps=15, d=1000, n_seeds=6, key=2, n_test=2000)
    pairs = [(sol.m[-1], sim.m[-1], sim.m_se[-1]), (sol.Q[-1], sim.Q[-1], sim.Q_se[-1]),
             (sol.eps_gen[-1], sim.test_error[-1], np.hypot(sim.test_error_se[-1], sol.eps_gen_integral_se[-1]))]
    for dmft, mean, se in pairs:  # 4 se plus the O(1/d) finite-size shift
        assert np.all(np.abs(np.asarray(dmft) - np.asarray(mean)) <= 4 * np.asarray(se) + 5e-3), (dmft, mean, se)
    assert float(sol.m[-1, 0]) > float(sol.m[-1, 1]) + 0.1  # the units stay apart


def test_two_unit_test_error_is_the_gaussian_integral(two):
    sol = dj.solve(dj.Committee(two, dj.SoftCommittee(2), m0=[0.2, -0.05]), dj.SGD(0.2, 0.4), **SOLVE)
    assert bool(sol.ok)
    # brute force: r ~ N(m c, Delta Q) per cluster, y = c; P(y f(r) <= 0)
    rng = np.random.default_rng(0)
    m, Q = np.asarray(sol.m[-1]), np.asarray(sol.Q[-1])
    n = 400_000
    c = np.where(rng.random(n) < 0.4, 1.0, -1.0)
    r = c[:, None] * m[None, :] + rng.standard_normal((n, 2)) @ np.linalg.cholesky(0.5 * Q).T
    err = (c * np.tanh(r).mean(axis=1) <= 0).astype(float)
    gap = abs(float(sol.eps_gen[-1]) - err.mean())
    assert gap <= 4 * (float(sol.eps_gen_integral_se[-1]) + err.std() / np.sqrt(n)), gap
    # the units start apart and stay so; Q is symmetric and positive definite at every step
    np.testing.assert_allclose(np.asarray(sol.Q), np.swapaxes(np.asarray(sol.Q), 1, 2), atol=1e-12)
    assert np.all(np.linalg.eigvalsh(np.asarray(sol.Q)) > 0)


def test_committee_gradient_against_finite_differences(two):
    """Reverse-mode derivatives of the final training loss and test error in every pathwise
    parameter against central differences. The training loss is smooth: 1e-5. The test error
    (K = 3: an average over the solve's samples, the last field exact) is smooth except where a
    sample's root in the last field turns infinite (f of one sign whatever that field is), a
    kink that a difference step may cross: 1e-3 there."""
    import jax

    def curves(x):
        problem = dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=x["alpha"], delta=x["delta"], lam=x["lam"],
                             R0=x["R0"])
        # three sign units: the root of f in the last field is infinite for some points, which
        # must not make derivatives NaN
        sol = dj.solve(dj.Committee(problem, dj.SignCommittee(3, 3.0), m0=[x["m0"], -0.05, 0.1]),
                       dj.SGD(x["eta"], x["b"], beta=x["beta"], temperature=x["temperature"]), n_steps=5, n_traj=128,
                       key=5)
        return jnp.stack([sol.train_loss[-1], sol.eps_gen[-1]])

    x0 = dict(alpha=2.0, delta=0.5, lam=0.05, R0=0.3, eta=0.2, b=0.4, m0=0.2, beta=0.3, temperature=0.05)
    jac = jax.jacrev(curves)(x0)
    h = 1e-5
    # pathwise (b: the law of the selection, test_committee_likelihood_ratio_gradients_b_and_tau)
    for name in ("alpha", "delta", "lam", "R0", "eta", "m0", "beta", "temperature"):
        fd = np.asarray(curves(dict(x0, **{name: x0[name] + h})) - curves(dict(x0, **{name: x0[name] - h}))) / (2 * h)
        got = np.asarray(jac[name])
        assert np.all(np.isfinite(got)) and abs(fd[0]) > 1e-4, name  # the derivative is not trivially zero
        np.testing.assert_allclose(got[0], fd[0], rtol=1e-5, atol=1e-9, err_msg=f"train loss, {name}")
        np.testing.assert_allclose(got[1], fd[1], rtol=1e-3, atol=1e-6, err_msg=f"test error, {name}")
    assert np.all(np.isfinite(np.asarray(jac["b"])))


@pytest.mark.parametrize("kwargs, match", [
    (dict(response=dj.ExactResponse(300)), "n_chi must be an integer with 1 <= n_chi <= n_traj = 256"),
    (dict(response=dj.ProbeResponse(0)), "n_probes must be an integer >= 1"),
    (dict(response=dj.ProbeResponse(2, n_traj=2.5)), "ProbeResponse.n_traj must be an integer"),
    (dict(response="exact"), "response must be an M_R estimator"),
    (dict(errors=dj.GroupErrors(3)), "GroupErrors.groups = 3 must split n_traj = 256"),
    (dict(errors=dj.GroupErrors(4), response=dj.ExactResponse(2)), "n_chi = 2 is below GroupErrors.groups = 4"),
    (dict(errors="yes"), "errors must be a dmft_jax.AbstractErrors"),
    (dict(trajectories=dj.Trajectories(sharding="gpu")), "sharding must be None, 'all' or a list"),
    (dict(adjoint=dj.SweepAdjoint()), "adjoint: the hand-written SweepAdjoint is built for a single unit; a committee \\(K = 2\\)"),
    (dict(trajectories=dj.Trajectories(save=4)), "Trajectories.save \\(save_trajectories\\): saved trajectories are built for a single unit; this committee has K = 2"),
    (dict(progress_meter="bar"), "progress_meter must be a dmft_jax.AbstractProgressMeter"),
    (dict(solver=dj.CausalSweep(0)), "time_blocks must be an integer >= 1"),
    (dict(solver=dj.DampedIteration(damping=2.0)), "damping must satisfy 0 < damping <= 1"),
])
def test_bad_committee_solve_options(two, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dj.solve(dj.Committee(two, dj.SoftCommittee(2)), dj.GD(0.2), **SOLVE, **kwargs)


def test_committee_solve_refuses_what_it_does_not_cover(two):
    committee = dj.Committee(two, dj.SoftCommittee(2))
    with pytest.raises(ValueError, match="cross_memory must be True or False"):
        dj.Committee(two, dj.SoftCommittee(2), cross_memory="yes")
    with pytest.raises(ValueError, match="symmetric: the read-out changes when the units are permuted"):
        dj.Committee(two, dj.CustomReadout(2, lambda r: jnp.tanh(r[..., 0]) + 0.2 * r[..., 1]), symmetric=True)
    with pytest.raises(ValueError, match="symmetric: options of a committee machine .*this problem is a single unit"):
        dj.solve(two, dj.GD(0.2), n_steps=4, n_traj=16, symmetric=True)
    with pytest.raises(ValueError, match="n_chi must be an integer"):
        dj.solve(committee, dj.GD(0.2), n_steps=4, n_traj=16, n_chi=float("nan"))
    with pytest.raises(ValueError, match="max_memory: .* with K = 2 units"):
        dj.solve(committee, dj.GD(0.2), response=dj.ExactResponse(max_memory=100.0), **SOLVE)
    with pytest.raises(ValueError, match="symmetric: exchangeable units need equal initial overlaps"):
        dj.Committee(two, dj.SoftCommittee(2), m0=[0.1, 0.2], symmetric=True)
    with pytest.raises(ValueError, match="symmetric: exchangeable units need equal initial overlaps"), \
            pytest.warns(DeprecationWarning, match="build the committee with dj.Committee"):  # the former keyword
        dj.solve(dj.Committee(two, dj.SoftCommittee(2), m0=[0.1, 0.2]), dj.GD(0.2), n_steps=4, n_traj=16,
                 symmetric=True)


def test_symmetric_solve_is_exactly_exchangeable(two):
    committee = dj.Committee(two, dj.SoftCommittee(2))  # m0 = 0.1 for every unit
    sym = dj.solve(dj.Committee(two, dj.SoftCommittee(2), symmetric=True), dj.SGD(0.2, 0.4), **SOLVE)
    free = dj.solve(committee, dj.SGD(0.2, 0.4), **SOLVE)
    m, Q = np.asarray(sym.m), np.asarray(sym.Q)
    np.testing.assert_allclose(m, np.broadcast_to(m[:, :1], m.shape), rtol=1e-12)
    np.testing.assert_allclose(Q[:, 0, 0], Q[:, 1, 1], rtol=1e-12)
    np.testing.assert_allclose(Q[:, 0, 1], Q[:, 1, 0], rtol=1e-12)
    # the same law: the free solve's units scatter around the symmetric values by Monte Carlo noise
    assert np.max(np.abs(np.asarray(free.m) - m)) < 0.02 and np.max(np.abs(np.asarray(free.Q) - Q)) < 0.03


@pytest.mark.slow  # heavy; run with -m slow (the default suite stays near 10 minutes)
def test_tune_through_the_committee_dmft():
    import optax

    problem = dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.3)
    committee = dj.Committee(problem, dj.SoftCommittee(2), m0=[0.2, -0.05])
    res = dj.tune(committee, dj.SGD(0.2, 0.4), ["lam", "b"], t_max=1.0, n_traj=96, steps=3, key=1,
                  optimizer=optax.adam(0.1))
    objective = res.history["objective"]
    assert bool(res.ok) and objective[-1] < objective[0] and res.objective < objective[0]
    assert isinstance(res.problem, dj.Committee) and float(res.problem.problem.lam) == res.params["lam"]
    # the noise report through the committee's replicas (errors="auto": GroupErrors(16) here)
    assert res.objective_se > 0 and res.improvement_se > 0 and res.solution.eps_gen_se is not None
    with pytest.raises(ValueError, match="GroupErrors.groups = 5 must split n_traj = 96"):
        dj.tune(committee, dj.SGD(0.2, 0.4), ["lam"], t_max=1.0, n_traj=96, steps=1, errors=dj.GroupErrors(5))


def test_bad_value_under_vmap_is_a_failed_point(two):
    import jax

    def final(lam):
        problem = dj.Problem(dj.TwoCluster(0.4), "logistic", alpha=2.0, delta=0.5, lam=lam, R0=0.3)
        return dj.solve(dj.Committee(problem, dj.SoftCommittee(2), m0=[0.2, -0.1]), dj.GD(0.2), n_steps=3,
                                  n_traj=16).result

    result = jax.vmap(final)(jnp.asarray([0.1, -0.5]))
    assert list(np.asarray(result.ok)) == [True, False] and "lam" in result.message


def test_solve_committee_is_a_deprecated_alias_of_solve(two):
    # one entry and one set of defaults for every K: the alias warns and gives dj.solve's numbers
    committee = dj.Committee(two, dj.SoftCommittee(2), m0=[0.2, -0.1])
    with pytest.warns(DeprecationWarning, match="dj.solve"):
        old = dj.solve_committee(committee, dj.GD(0.2), n_steps=4, n_traj=16, key=1)
    new = dj.solve(committee, dj.GD(0.2), n_steps=4, n_traj=16, key=1)
    np.testing.assert_array_equal(np.asarray(old.Q), np.asarray(new.Q))
    assert old.config.n_chi == new.config.n_chi == 16
    # n_chi= is deprecated for committees as for one unit
    with pytest.warns(DeprecationWarning, match="ExactResponse"):
        dj.solve(committee, dj.GD(0.2), n_steps=4, n_traj=16, n_chi=8)


def test_one_default_response_size_for_every_K():
    from dmft_jax._response.response import default_n_chi

    assert [default_n_chi(2**15, K) for K in (1, 2, 3)] == [4096, 1024, 1024]
    assert default_n_chi(100, 1) == 100


def test_committee_response_memory_bound_counts_the_blocks(two):
    """``max_memory`` bounds chi's K^2 numbers per trajectory and pair of times (the single
    unit's rule, one engine): the largest n_chi that fits is used."""
    committee = dj.Committee(two, dj.SoftCommittee(2))
    T = 4
    per_traj = (T + 1) ** 2 * 2 * 2 * 8  # float64
    sol = dj.solve(committee, dj.GD(0.2), n_steps=T, n_traj=256, key=0,
                   response=dj.ExactResponse(max_memory=40 * per_traj + 10))
    assert bool(sol.ok) and sol.config.n_chi == 40
    with pytest.raises(ValueError, match="above max_memory"):
        dj.solve(committee, dj.GD(0.2), n_steps=T, n_traj=256, response=dj.ExactResponse(64, max_memory=40 * per_traj))


def test_committee_takes_the_single_unit_strategies(two, capsys):
    """One engine: time chunks, the damped iteration and the progress meter serve K = 2 as they
    serve one unit. The chunked sweep equals the one-chunk sweep to rounding; the damped
    iteration (damping 1) reaches the sweep's causal solution, a fixed point, in T + 1
    iterations."""
    committee = dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1])
    algo = dj.PersistentSGD(0.2, 0.3, 2.0)
    T = 8
    kw = dict(n_steps=T, n_traj=256, key=3, response=dj.ExactResponse(64))
    ref = dj.solve(committee, algo, solver=dj.CausalSweep(1), **kw)
    chunks = dj.solve(committee, algo, solver=dj.CausalSweep(3), progress_meter=dj.TextProgressMeter(), **kw)
    assert f"{T}/{T} steps" in capsys.readouterr().err
    it = dj.solve(committee, algo, solver=dj.DampedIteration(damping=1.0, rtol=1e-12, atol=1e-14, max_iter=40), **kw)
    assert bool(it.ok) and T + 1 <= int(it.stats["n_iter"]) <= T + 3
    for name in ("m", "Q", "M_C", "M_R", "eps_gen", "train_loss"):
        np.testing.assert_allclose(getattr(chunks, name), getattr(ref, name), rtol=1e-11, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(getattr(it, name), getattr(ref, name), rtol=1e-8, atol=1e-11, err_msg=name)
    assert np.max(np.abs(np.asarray(ref.M_R)[..., 0, 1])) > 1e-4  # cross-unit memory: the blocks are exercised
    with pytest.warns(RuntimeWarning, match="did not converge within max_iter"):
        short = dj.solve(committee, algo, solver=dj.DampedIteration(damping=0.5, max_iter=2), **kw)
    assert int(short.status) == int(dj.RESULTS.max_iter)  # not converged: said so, by the result's code
