"""A new data model, algorithm and response estimator defined outside the package, through
the public interfaces alone (``dj.AbstractMixture``, ``dj.AbstractAlgorithm``,
``dj.AbstractResponse``), solved and simulated like the built-in ones; and the result family
(seed averages by ``tree_map``, a grid read as attributes)."""
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import erfc

import dmft_jax as dj


class NoisyTwoCluster(dj.AbstractMixture):
    """Two clusters whose labels are flipped with probability ``flip``: ``y = c`` w.p.
    ``1 - flip``, else ``-c``; the error counts a fresh sample's flipped label too."""

    rho: Any = eqx.field(converter=jnp.asarray)
    flip: Any = eqx.field(converter=jnp.asarray)

    def sample(self, key, h0):
        k1, k2 = jax.random.split(key)
        c = jnp.where(jax.random.uniform(k1, h0.shape, h0.dtype) < self.rho, 1.0, -1.0).astype(h0.dtype)
        y = jnp.where(jax.random.uniform(k2, h0.shape, h0.dtype) < self.flip, -c, c)
        return c, y

    def log_prob(self, c, y):
        return jnp.log(jnp.where(c > 0, self.rho, 1 - self.rho)) + jnp.log(jnp.where(y == c, 1 - self.flip, self.flip))

    def phi(self, r):
        return r

    def eps_gen(self, m, q, delta):
        wrong = 0.5 * erfc(m / jnp.sqrt(2 * delta * q))
        return (1 - self.flip) * wrong + self.flip * (1 - wrong)

    def clean_label(self, c, h0):  # what a committee's test error scores against
        return c

    def to_dict(self):
        return {"model": "noisy_two_cluster", "rho": float(self.rho), "flip": float(self.flip)}


class FixedSubset(dj.AbstractAlgorithm):
    """Gradient descent on a fixed random fraction ``b`` of the samples: ``s[0] ~ Bernoulli(b)``
    and never switches. Its DMFT equals full-batch GD on ``b alpha`` samples per dimension."""

    eta: Any = eqx.field(converter=jnp.asarray)
    b: Any = eqx.field(converter=jnp.asarray)

    def selection(self, steps):
        return self.b, jnp.zeros_like(steps), jnp.zeros_like(steps)

    def check_steps(self, steps):
        # raises now for a concrete b; inside jit/vmap it becomes a failed result per point
        dj.check_parameter("b", self.b, lambda a: (a > 0) & (a <= 1), "0 < b <= 1")

    def to_dict(self):
        return {"algorithm": "fixed_subset", "eta": float(self.eta), "b": float(self.b)}


class SquareState(eqx.Module):
    chi: Any  # (S, S, K, K, n): chi[k, l], the whole square of K x K blocks


class SquareResponse(dj.AbstractResponse):
    """The exact response on ``n_chi`` trajectories stored as a full square (no triangular
    blocks): the same estimate as ``ExactResponse``, written from the recursion alone, for
    every number of units ``K``."""

    n_chi: int = eqx.field(static=True)

    def resolve(self, n_steps, n_traj, itemsize, K=1):
        if not 1 <= self.n_chi <= n_traj:
            raise ValueError(f"n_chi must satisfy 1 <= n_chi <= {n_traj}; got {self.n_chi}")
        return self

    def init(self, key, n_steps, n_traj, dtype, K=1):
        return SquareState(jnp.zeros((n_steps + 1, n_steps + 1, K, K, self.n_chi), dtype))

    def row(self, state, k, w, H, dts, delta):
        wn = w[: self.n_chi]
        return jnp.einsum("n,abn,lbcn->lac", wn, H[..., : self.n_chi], state.chi[k]) / jnp.sum(wn) / dts[:, None, None]

    def advance(self, state, k, K_k, dt, decay, delta, H):
        H = H[..., : self.n_chi]
        chi = state.chi
        A = decay[:, :, None] - dt * delta * H
        nxt = jnp.einsum("abn,lbcn->lacn", A, chi[k]) + dt * jnp.einsum("jab,jlbcn->lacn", K_k, chi)
        nxt = jnp.where((jnp.arange(chi.shape[1]) == k)[:, None, None, None], dt * delta * H[None], nxt)
        return SquareState(chi.at[k + 1].set(nxt))

    def peak_numbers(self, size, width, K=1):
        return size**2 * K * K * self.n_chi


TWO = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
PSGD = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)


def test_toy_response_equals_exact_response():
    kw = dict(t_max=3.0, n_traj=512, key=4, solver=dj.CausalSweep(2))
    ref = dj.solve(TWO, PSGD, response=dj.ExactResponse(128), **kw)
    toy = dj.solve(TWO, PSGD, response=SquareResponse(128), **kw)
    assert bool(toy.ok)
    for f in ("M_R", "C", "eps_gen"):
        np.testing.assert_allclose(getattr(toy, f), getattr(ref, f), rtol=1e-11, atol=1e-14)
    assert np.max(np.abs(ref.M_R)) > 1e-3  # the memory kernel is not trivially zero
    with pytest.raises(ValueError, match="n_chi"):
        dj.solve(TWO, PSGD, t_max=1.0, n_traj=64, response=SquareResponse(65))


def test_toy_response_serves_committees():
    """The same user-written estimator at K = 2 (one engine: the committee's sweep asks the
    estimator the single unit's does) equals the built-in exact response."""
    committee = dj.Committee(TWO, dj.SoftCommittee(2), m0=[0.2, -0.1])
    kw = dict(n_steps=12, n_traj=512, key=4)
    ref = dj.solve(committee, PSGD, response=dj.ExactResponse(128), **kw)
    toy = dj.solve(committee, PSGD, response=SquareResponse(128), **kw)
    assert bool(toy.ok)
    for f in ("M_R", "Q", "eps_gen"):
        np.testing.assert_allclose(getattr(toy, f), getattr(ref, f), rtol=1e-11, atol=1e-14)
    assert np.max(np.abs(np.asarray(ref.M_R)[..., 0, 1])) > 1e-4  # the cross-unit memory is exercised


def test_toy_algorithm_is_gd_on_the_subset():
    # FixedSubset(b) on alpha = 2 is full-batch GD on alpha = 2 b; b = 0.5 against alpha = 1
    kw = dict(t_max=4.0, n_traj=2**14, response=dj.ExactResponse(1024))
    toy = dj.solve(TWO, FixedSubset(0.2, 0.5), key=1, **kw)
    gd = dj.solve(eqx.tree_at(lambda p: p.alpha, TWO, 1.0), dj.GD(0.2), key=2, **kw)
    assert bool(toy.ok)
    # Monte Carlo error of q, eps_gen at N = 16384: ~1e-3 relative; the subset's own b is
    # sampled, adding ~1/sqrt(N) to alpha b
    np.testing.assert_allclose(toy.q, gd.q, rtol=2e-2)
    np.testing.assert_allclose(toy.eps_gen, gd.eps_gen, atol=4e-3)
    # and it is not GD on all the samples (the test has teeth)
    full = dj.solve(TWO, dj.GD(0.2), key=1, **kw)
    assert abs(float(full.eps_gen[-1] - toy.eps_gen[-1])) > 0.01
    sim = dj.simulate(TWO, FixedSubset(0.2, 0.5), t_max=4.0, d=400, n_seeds=4, key=3)
    assert bool(sim.ok) and sim.m.shape == toy.m.shape


def test_toy_model_solved_and_simulated():
    problem = dj.Problem(NoisyTwoCluster(0.5, 0.1), "logistic", alpha=2.0, delta=0.5, R0=0.01)
    sol = dj.solve(problem, PSGD, t_max=3.0, n_traj=2**13, response=dj.ExactResponse(512), key=0)
    sim = dj.simulate(problem, PSGD, t_max=3.0, d=800, n_seeds=6, key=1)
    assert bool(sol.ok) and bool(sim.ok)
    # label noise 0.1 puts a floor of 0.1 under the error
    assert np.all(np.asarray(sol.eps_gen) > 0.1) and np.all(np.asarray(sim.eps_gen) > 0.1)
    # DMFT against d = 800 (6 seeds): within 4 standard errors plus finite-size/Monte Carlo slack
    k = len(sol.t) - 1
    assert abs(float(sol.eps_gen[k] - sim.eps_gen[k])) < 4 * float(sim.eps_gen_se[k]) + 5e-3
    assert abs(float(sol.q[k] / sim.q[k]) - 1) < 4 * float(sim.q_se[k] / sim.q[k]) + 0.02
    assert problem.to_dict()["model"] == "noisy_two_cluster"


def test_solutions_of_two_seeds_average_by_tree_map():
    kw = dict(t_max=1.0, n_traj=256)
    s0 = dj.solve(TWO, PSGD, key=0, **kw)
    s1 = dj.solve(TWO, PSGD, key=1, **kw)
    mean = jax.tree_util.tree_map(lambda a, b: (a + b) / 2, s0, s1)
    np.testing.assert_allclose(mean.eps_gen, (s0.eps_gen + s1.eps_gen) / 2)
    assert not np.allclose(s0.eps_gen, s1.eps_gen)


def test_grid_is_a_batched_solution():
    g = dj.solve_grid(TWO, PSGD, {"lam": [0.0, 0.1], "b": [0.2, 0.3, 0.5]}, t_max=1.0, n_traj=256,
                      response=dj.ExactResponse(64))
    assert isinstance(g, dj.Solution)
    assert g.eps_gen.shape == (2, 3, len(g.t[0, 0])) and g.result.code.shape == (2, 3) and np.all(g.ok)
    np.testing.assert_allclose(g.grid["b"][1], [0.2, 0.3, 0.5])
    np.testing.assert_array_equal(g["eps_gen"], g.eps_gen)
    single = dj.solve(eqx.tree_at(lambda p: p.lam, TWO, 0.1), dj.PersistentSGD(0.2, 0.5, 1 / 0.6), t_max=1.0,
                      n_traj=256, response=dj.ExactResponse(64))
    np.testing.assert_allclose(g.eps_gen[1, 2], single.eps_gen, rtol=1e-10)


def test_a_model_without_a_biased_error_refuses_a_bias():
    """The bias needs the model's error at a shifted read-out (eps_gen_bias): a model that does not
    define it is refused by name, not solved with a wrong error."""
    with pytest.raises(ValueError, match="NoisyTwoCluster has no generalisation error with a bias"):
        dj.Problem(NoisyTwoCluster(0.5, 0.1), bias=0.0)


def test_a_model_missing_an_abstract_method_fails_at_construction():
    class NoError(dj.AbstractMixture):  # no eps_gen: refused when built, not late inside a solve
        rho: Any = eqx.field(converter=jnp.asarray)

        def sample(self, key, h0):
            return jnp.ones_like(h0), jnp.ones_like(h0)

        def log_prob(self, c, y):
            return jnp.zeros_like(c)

        def phi(self, r):
            return r

        def to_dict(self):
            return {"model": "no_error"}

    with pytest.raises(TypeError, match="abstract.*eps_gen"):
        NoError(0.5)


class ToggleSGD(dj.AbstractAlgorithm):
    """A selection law written here: every sample leaves or joins the batch with probability
    ``q`` at each step (``s[0] ~ Bernoulli(1/2)``, ``p_on = p_off = q``). It is persistent SGD with
    ``b = 1/2`` and ``tau = eta / q``, which the tests use as the exact check. It declares its own
    tunable field ``q`` in ``(0, 1)``: tune and grids take it like a built-in one."""

    eta: Any = eqx.field(converter=jnp.asarray)
    q: Any = eqx.field(converter=jnp.asarray)

    def selection(self, steps):
        q = self.q * jnp.ones_like(steps)
        return jnp.asarray(0.5, jnp.result_type(steps)), q, q

    def check_steps(self, steps):
        dj.check_parameter("q", self.q, lambda a: (a > 0) & (a < 1), "0 < q < 1")

    def tunable(self):
        return {**super().tunable(), "q": dj.UnitInterval()}

    def to_dict(self):
        return {"algorithm": "toggle_sgd", "eta": float(self.eta), "q": float(self.q)}


KWT = dict(n_steps=6, n_traj=256, response=dj.ExactResponse(64))


def test_a_new_selection_law_is_solved_simulated_gridded_and_tuned():
    q = 0.25
    toy = dj.solve(TWO, ToggleSGD(0.2, q), **KWT)
    same = dj.solve(TWO, dj.PersistentSGD(0.2, 0.5, 0.2 / q), **KWT)  # the same law: equal to rounding
    for f in ("m", "q", "eps_gen", "M_R"):
        np.testing.assert_allclose(getattr(toy, f), getattr(same, f), rtol=1e-9, atol=1e-12)
    assert not np.allclose(toy.q, dj.solve(TWO, ToggleSGD(0.2, 0.6), **KWT).q)  # q matters
    # the grid takes the declared field
    grid = dj.solve_grid(TWO, ToggleSGD(0.2, q), {"q": [0.1, 0.25]}, **KWT)
    np.testing.assert_allclose(grid.eps_gen[1], toy.eps_gen, rtol=1e-10)
    # tune: the declared field stays in (0, 1) and moves; an undeclared name is refused by name
    res = dj.tune(TWO, ToggleSGD(0.2, q), ["q", "lam"], t_max=1.2, n_traj=256, response=dj.ExactResponse(64),
                  steps=3, errors=None)
    assert 0 < res.params["q"] < 1 and res.history["q"][0] == pytest.approx(q) and res.params["q"] != q
    with pytest.raises(ValueError, match="'tau' cannot be tuned for ToggleSGD.*'q'"):
        dj.tune(TWO, ToggleSGD(0.2, q), ["tau"], t_max=1.0, n_traj=64, steps=1)
    # the finite-d simulator reads the same law: the same selection draws as persistent SGD's
    kws = dict(t_max=1.2, d=300, n_seeds=2, key=1)
    sim, sim_same = dj.simulate(TWO, ToggleSGD(0.2, q), **kws), dj.simulate(TWO, dj.PersistentSGD(0.2, 0.5, 0.8), **kws)
    np.testing.assert_allclose(sim.q, sim_same.q, rtol=1e-10)
    np.testing.assert_allclose(sim.train_loss, sim_same.train_loss, rtol=1e-10)


@pytest.mark.slow
def test_a_new_selection_law_against_simulation_and_its_gradient():
    q = 0.25
    # its declared field is differentiable (likelihood ratio): d/dq = d/dtau dtau/dq, tau = eta / q
    g_q = jax.grad(lambda x: dj.solve(TWO, ToggleSGD(0.2, x), **KWT).eps_gen[-1])(q)
    g_tau = jax.grad(lambda t: dj.solve(TWO, dj.PersistentSGD(0.2, 0.5, t), **KWT).eps_gen[-1])(0.2 / q)
    np.testing.assert_allclose(g_q, g_tau * (-0.2 / q**2), rtol=1e-8)
    assert abs(float(g_q)) > 1e-6
    # DMFT against the finite-d simulation (d = 800, 6 seeds)
    toy = dj.solve(TWO, ToggleSGD(0.2, q), t_max=2.0, n_traj=2**12, response=dj.ExactResponse(512), key=3)
    sim = dj.simulate(TWO, ToggleSGD(0.2, q), t_max=2.0, d=800, n_seeds=6, key=1)
    k = len(toy.t) - 1
    assert abs(float(toy.eps_gen[k] - sim.eps_gen[k])) < 4 * float(sim.eps_gen_se[k]) + 5e-3
    assert abs(float(toy.q[k] / sim.q[k]) - 1) < 4 * float(sim.q_se[k] / sim.q[k]) + 0.02


@pytest.mark.slow
def test_a_new_selection_law_for_two_units():
    committee = dj.Committee(TWO, dj.SoftCommittee(2), m0=[0.3, -0.1])
    kw = dict(t_max=1.6, n_traj=2**11, response=dj.ExactResponse(256), key=2)
    toy = dj.solve(committee, ToggleSGD(0.2, 0.25), **kw)
    same = dj.solve(committee, dj.PersistentSGD(0.2, 0.5, 0.8), **kw)
    np.testing.assert_allclose(toy.Q, same.Q, rtol=1e-9, atol=1e-12)
    sim = dj.simulate(committee, ToggleSGD(0.2, 0.25), t_max=1.6, d=600, n_seeds=4, key=1)
    assert bool(sim.ok) and sim.Q.shape == toy.Q.shape
    k = len(toy.t) - 1
    np.testing.assert_allclose(np.asarray(toy.Q[k]), np.asarray(sim.Q[k]),
                               atol=float(4 * np.max(np.asarray(sim.Q_se[k]))) + 0.02)


def test_a_new_model_for_two_units():
    """The user-written model in a committee: what the block DMFT needs is asked of the model
    (clean_label), not a list of built-in classes; against the simulation at d = 800."""
    problem = dj.Problem(NoisyTwoCluster(0.5, 0.1), "logistic", alpha=2.0, delta=0.5, R0=0.2)
    committee = dj.Committee(problem, dj.SoftCommittee(2), m0=[0.3, -0.1])
    sol = dj.solve(committee, PSGD, t_max=2.0, n_traj=2**12, response=dj.ExactResponse(256), key=0)
    sim = dj.simulate(committee, PSGD, t_max=2.0, d=800, n_seeds=4, key=1)
    assert bool(sol.ok) and bool(sim.ok)
    k = len(sol.t) - 1
    np.testing.assert_allclose(np.asarray(sol.Q[k]), np.asarray(sim.Q[k]),
                               atol=float(4 * np.max(np.asarray(sim.Q_se[k]))) + 0.02)
    np.testing.assert_allclose(np.asarray(sol.m[k]), np.asarray(sim.m[k]),
                               atol=float(4 * np.max(np.asarray(sim.m_se[k]))) + 0.02)

    class NoCleanLabel(NoisyTwoCluster):
        clean_label = dj.AbstractModel.clean_label

    bare = dj.Committee(dj.Problem(NoCleanLabel(0.5, 0.1), "logistic", alpha=2.0, delta=0.5), dj.SoftCommittee(2))
    with pytest.raises(ValueError, match="clean_label.*NoCleanLabel does not define"):
        dj.solve(bare, PSGD, n_steps=3, n_traj=16)


class Dampened(dj.AbstractUpdate):
    """An update rule written here: PyTorch's dampened momentum,
    ``x[k+1] = x[k] + beta (x[k] - x[k-1]) + (1 - beta) eta_k F[k]``. It is heavy-ball momentum
    at the step ``(1 - beta) eta``, which the tests use as the exact check."""

    def coefficients(self, beta):
        return beta, 1.0 - beta, 0.0


def test_a_new_update_rule_is_solved_simulated_and_tuned():
    beta, eta = 0.4, 0.3
    mine, same = dj.GD(eta, beta=beta, update=Dampened()), dj.GD((1 - beta) * eta, beta=beta)
    kw = dict(n_steps=8, n_traj=256, response=dj.ExactResponse(64), key=1)
    for problem in (TWO, dj.Committee(TWO, dj.SoftCommittee(2), m0=[0.3, -0.1])):  # K = 1 and K = 2
        toy, ref = dj.solve(problem, mine, **kw), dj.solve(problem, same, **kw)
        assert bool(toy.ok) and toy.algorithm.to_dict()["update"] == "Dampened"
        names = ("m", "q", "eps_gen") if problem is TWO else ("m", "Q", "eps_gen")
        for f in names:  # the same dynamics step by step (their times differ: t = k eta)
            np.testing.assert_allclose(getattr(toy, f), getattr(ref, f), rtol=1e-9, atol=1e-12, err_msg=f)
        # the memory kernel is per unit time of each algorithm's own step: eta M_R agree
        np.testing.assert_allclose(eta * np.asarray(toy.M_R), (1 - beta) * eta * np.asarray(ref.M_R), rtol=1e-9,
                                   atol=1e-12)
        sims = [dj.simulate(problem, a, n_steps=8, d=200, n_seeds=2, key=3) for a in (mine, same)]
        np.testing.assert_allclose(sims[0].Q if problem is not TWO else sims[0].q,
                                   sims[1].Q if problem is not TWO else sims[1].q, rtol=1e-10)
    # the momentum matters (the test has teeth), and tune moves the update's declared field
    assert not np.allclose(dj.solve(TWO, dj.GD(eta, beta=0.1, update=Dampened()), **kw).q, dj.solve(TWO, mine, **kw).q)
    res = dj.tune(TWO, mine, ["beta"], t_max=1.2, n_traj=256, response=dj.ExactResponse(64), steps=2, errors=None)
    assert 0 < res.params["beta"] < 1 and res.params["beta"] != beta
    with pytest.raises(ValueError, match="update: Dampened takes the momentum beta"):
        dj.GD(eta, update=Dampened())
    with pytest.raises(ValueError, match="update must be a dmft_jax.AbstractUpdate"):
        dj.GD(eta, beta=beta, update="nesterov")


def test_nesterov_is_the_textbook_look_ahead_sequence():
    """The two-step form of dj.Nesterov, applied to gradient descent on a quadratic, gives the
    look-ahead points y[k] = x[k] + beta (x[k] - x[k-1]) of the textbook recursion
    x[k+1] = y[k] - eta grad(y[k]); heavy ball's form gives Polyak's recursion."""
    from dmft_jax._algorithms.updates import updated

    A = np.diag([1.0, 0.3, 2.0])
    grad = lambda x: A @ x
    beta, eta, x0 = 0.7, 0.3, np.array([1.0, -2.0, 0.5])
    x_prev, x = x0, x0
    ys = [x0]
    for _ in range(12):  # textbook Nesterov
        y = x + beta * (x - x_prev)
        x_prev, x = x, y - eta * grad(y)
        ys.append(x + beta * (x - x_prev))
    update = dj.Nesterov().two_step(beta)
    y, y_prev, incr = x0, x0, np.zeros(3)
    for k in range(12):
        (y, incr), y_prev = updated(update, y - eta * grad(y), y, y_prev, incr), y
        np.testing.assert_allclose(y, ys[k + 1], rtol=1e-12, err_msg=str(k))
    hb = dj.HeavyBall().two_step(beta)
    x_prev, x, z_prev, z, incr = x0, x0, x0, x0, np.zeros(3)
    for _ in range(12):
        x_prev, x = x, x - eta * grad(x) + beta * (x - x_prev)
        (z, incr), z_prev = updated(hb, z - eta * grad(z), z, z_prev, incr), z
        np.testing.assert_allclose(z, x, rtol=1e-12)


@pytest.mark.slow
def test_nesterov_against_simulation():
    """Nesterov's momentum (its look-ahead iterates) in the DMFT and at finite d, K = 1 and 2:
    within the error bars; and it differs from heavy ball's by many of them."""
    algo = dj.GD(0.1, beta=0.9, update=dj.Nesterov())
    for problem, names in ((TWO, ("m", "q", "eps_gen")),
                           (dj.Committee(TWO, dj.SoftCommittee(2), m0=[0.3, -0.1]), ("m", "Q", "train_loss"))):
        kw = dict(t_max=3.0, n_traj=2**13, key=0, errors=dj.GroupErrors(8))
        sol = dj.solve(problem, algo, **kw)
        sim = dj.simulate(problem, algo, t_max=3.0, d=1000, n_seeds=8, key=1)
        hb = dj.solve(problem, dj.GD(0.1, beta=0.9), **kw)
        for f in names:
            a, b = np.asarray(getattr(sol, f)), np.asarray(getattr(sim, f))
            se = np.hypot(np.asarray(getattr(sol, f + "_se")), np.asarray(getattr(sim, f + "_se")))
            assert np.max(np.abs(a - b)[1:] / se[1:]) < 4.5, f
        gap = np.abs(np.asarray(hb.m) - np.asarray(sol.m))[1:] / np.asarray(sol.m_se)[1:]
        assert np.max(gap) > 10


@pytest.mark.slow  # 3 gradients and 2 tunes at K = 1, 2 (minutes on 2 cores)
def test_a_new_model_and_estimator_are_differentiated_and_tuned_at_one_and_two_units():
    """The user-written model (NoisyTwoCluster) and estimator (SquareResponse) through the one
    engine at K = 1 and K = 2: jax.grad of the final test error in lam equals a central finite
    difference on the same random numbers, and tune moves lam with that estimator."""
    base = dj.Problem(NoisyTwoCluster(0.5, 0.1), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.2)
    kw = dict(n_steps=6, n_traj=256, response=SquareResponse(64), key=2)
    for wrap in (lambda p: p, lambda p: dj.Committee(p, dj.SoftCommittee(2), m0=[0.3, -0.1])):
        def final(lam):
            return dj.solve(wrap(eqx.tree_at(lambda p: p.lam, base, lam)), PSGD, **kw).eps_gen[-1]

        lam, h = jnp.asarray(0.05), 1e-5
        grad = float(jax.grad(final)(lam))
        fd = float((final(lam + h) - final(lam - h)) / (2 * h))
        assert abs(grad) > 1e-4 and abs(grad - fd) <= 1e-6 + 1e-5 * abs(fd), (grad, fd)
        res = dj.tune(wrap(base), PSGD, ["lam"], t_max=1.2, n_traj=256, response=SquareResponse(64), steps=2,
                      errors=None, mode="forward")
        assert bool(res.ok) and res.params["lam"] != 0.05
