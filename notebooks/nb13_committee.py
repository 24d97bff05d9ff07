# %% [markdown]
# # Two hidden units on three clusters
# Three clusters (`c = +-1`, label +1; `c = 0`, label -1) are not linearly separable: one unit
# needs a quadratic read-out (`Phi(r) = r^2 - L^2`). A committee of two units with a fixed,
# thresholded second layer, `f(r) = mean_a tanh(beta (r_a - theta)) + 1/2`, can separate them when
# its units specialise, one towards `+v*`, the other towards `-v*` (docs/equations.md, section 6).
#
# 1. Symmetry: started exchangeable (equal `m0`), the units stay exchangeable at `d -> infinity`
#    and both drift to the same side: one outer cluster stays misclassified. Unequal initial
#    overlaps `m0 = (0.1, -0.1)` break the symmetry and the committee solves the problem.
#    Simulations at finite `d` (points) follow each DMFT.
# 2. Batch size and persistence change how fast the units specialise.
# 3. The DMFT is differentiable: `dj.tune` moves `lambda` and `b` through committee solves.

# %%
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax

import dmft_jax as dj
from _common import D, N_TRAJ, SEEDS, SMALL, T_SCALE, save

BETA, THETA, OFFSET = 3.0, 0.5, 0.5


def threshold(r):
    return jnp.mean(jnp.tanh(BETA * (r - THETA)), axis=-1) + OFFSET


def threshold_root(rest):  # the last field where f changes sign (f increases in it): a smooth test error
    K = rest.shape[-1] + 1
    s = jnp.sum(jnp.tanh(BETA * (rest - THETA)), axis=-1) + K * OFFSET
    inside = jnp.abs(s) < 1
    x = THETA + jnp.arctanh(jnp.where(inside, -s, 0.0)) / BETA
    return jnp.where(inside, x, jnp.where(s >= 1, -jnp.inf, jnp.inf))


readout = dj.CustomReadout(2, threshold, root=threshold_root)
problem = dj.Problem(dj.ThreeCluster(0.6, 0.7), "logistic", alpha=3.0, delta=0.1, lam=0.01, R0=0.1, m0=0.1)
n_traj, n_chi = min(N_TRAJ, 2**14), 1024 if not SMALL else 128
t_max = 20.0 * T_SCALE
kw = dict(t_max=t_max, n_traj=n_traj, response=dj.ExactResponse(n_chi), key=0)
algo = dj.PersistentSGD(0.2, 0.3, 2.0)
runs = {"symmetric start, m0 = (0.1, 0.1)": dj.Committee(problem, readout),
        "broken symmetry, m0 = (0.1, -0.1)": dj.Committee(problem, readout, m0=[0.1, -0.1])}
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
for (label, committee), color in zip(runs.items(), ("C0", "C1")):
    sol = dj.solve(committee, algo, **kw)
    sim = dj.simulate(committee, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1)
    axes[0].plot(sol.t, sol.eps_gen, color=color, label=label)
    axes[0].errorbar(sim.t[::5], sim.test_error[::5], sim.test_error_se[::5], fmt="o", ms=3, color=color)
    for a, ls in ((0, "-"), (1, "--")):
        axes[1].plot(sol.t, sol.m[:, a], color=color, ls=ls, label=f"m_{a + 1}" if color == "C1" else None)
        axes[1].errorbar(sim.t[::5], sim.m[::5, a], sim.m_se[::5, a], fmt="o", ms=3, color=color)
    axes[2].plot(sol.t, sol.Q[:, 0, 1], color=color)
    axes[2].errorbar(sim.t[::5], sim.Q[::5, 0, 1], sim.Q_se[::5, 0, 1], fmt="o", ms=3, color=color)
    print(f"{label}: final test error {float(sol.eps_gen[-1]):.3f} (DMFT), {float(sim.test_error[-1]):.3f} "
          f"+- {float(sim.test_error_se[-1]):.3f} (d = {D})")
single = dj.solve(problem, algo, **kw)  # one unit with the quadratic read-out
axes[0].plot(single.t, single.eps_gen, color="k", ls=":", label="one unit, Phi(r) = r^2 - L^2")
axes[0].set(xlabel="t", title="test error (points: simulation)")
axes[1].set(xlabel="t", title="overlaps m_a with the teacher")
axes[2].set(xlabel="t", title="cross overlap Q_12")
axes[0].legend(fontsize=7)
axes[1].legend(fontsize=8)
save(fig, "nb13_committee.png");

# %% [markdown]
# ## Batch size and persistence
# The broken-symmetry committee trained by full-batch GD, by SGD with batch fraction `b = 0.3`
# and by persistent SGD with the same `b` and persistence time `tau = 2`. The bands are two
# standard errors of the whole solve, from 8 replicas on `N / 8` trajectories each
# (`errors=dj.GroupErrors(8)`).

# %%
broken = runs["broken symmetry, m0 = (0.1, -0.1)"]
fig, ax = plt.subplots(figsize=(5, 3.8), constrained_layout=True)
algos = ((dj.GD(0.2), "GD"), (dj.SGD(0.2, 0.3), "SGD, b = 0.3"),
         (dj.PersistentSGD(0.2, 0.3, 2.0), "persistent SGD, b = 0.3, tau = 2"))
# the test suite's small run: one algorithm, without errors (compiled above; tests/test_committee.py
# checks the error bars)
for algo_b, label in algos[2:] if SMALL else algos:
    sol = dj.solve(broken, algo_b, errors=None if SMALL else dj.GroupErrors(8), **kw)
    ax.plot(sol.t, sol.eps_gen, label=label)
    if sol.eps_gen_se is not None:
        ax.fill_between(sol.t, sol.eps_gen - 2 * sol.eps_gen_se, sol.eps_gen + 2 * sol.eps_gen_se, alpha=0.2, lw=0)
ax.set(xlabel="t", ylabel="test error", title="two units, three clusters")
ax.legend(fontsize=8)
save(fig, "nb13_committee_batch.png");

# %% [markdown]
# ## Tuning through the committee DMFT
# `dj.tune` takes a committee like a single-unit problem: Adam on the ridge `lambda`, the batch
# fraction `b` and the persistence time `tau` of persistent SGD (the latter two through the
# likelihood ratio of the selection), from a poor start (`lambda = 0.3`, `b = 0.8`, `tau = 2`), on
# the test error at `t = 10`. The tuned point comes with its standard error and that of the
# improvement (error replicas with common random numbers).

# %%
start = dj.Committee(dj.Problem(dj.ThreeCluster(0.6, 0.7), "logistic", alpha=3.0, delta=0.1, lam=0.3, R0=0.1,
                                m0=0.1), readout, m0=[0.1, -0.1])
res = dj.tune(start, dj.PersistentSGD(0.2, 0.8, 2.0), ["lam", "b", "tau"], t_max=10.0 if not SMALL else 2.0,
              n_traj=min(n_traj, 2**12), response=dj.ExactResponse(min(n_chi, 256)), steps=10 if not SMALL else 2,
              key=3, optimizer=optax.adam(0.05), errors=None if SMALL else "auto")  # small run: no noise report
for i, value in enumerate(res.history["objective"]):
    print(f"step {i}: test error {value:.4f} at lambda {res.history['lam'][i]:.3f}, b {res.history['b'][i]:.3f}, "
          f"tau {res.history['tau'][i]:.3f}")
print(f"tuned: lambda {res.params['lam']:.3f}, b {res.params['b']:.3f}, tau {res.params['tau']:.3f}, test error "
      f"{float(res.objective):.4f}")
if res.objective_se is not None:
    print(f"standard error {res.objective_se:.4f}; improvement {res.improvement:.4f} +- {res.improvement_se:.4f}")
