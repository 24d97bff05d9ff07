# %% [markdown]
# # Heavy-ball momentum and Langevin noise
# Both are keywords of every algorithm: `beta=` adds `beta (w_k - w_{k-1})` to the update,
# `temperature=` adds `sqrt(2 eta T_L) xi_k` (docs/equations.md, sections 5.1-5.2). Two clusters
# with `rho = 0.3`, ridge 0.1. Left: persistent SGD at three momenta, the largest over
# simulations. Right: full-batch Langevin GD at three temperatures, the hottest over simulations.

# %%
import matplotlib.pyplot as plt
import dmft_jax as dj
from _common import D, N_CHI, N_TRAJ, SEEDS, T_SCALE, save

problem = dj.Problem(dj.TwoCluster(0.3), alpha=2.0, delta=0.5, lam=0.1, R0=0.5)
t_max = 10.0 * T_SCALE
kw = dict(t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0)
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
for beta, color in ((0.0, "C0"), (0.5, "C1"), (0.8, "C2")):
    algo = dj.PersistentSGD(0.1, 0.3, 1.0, beta=beta)
    sol = dj.solve(problem, algo, **kw)
    axes[0].plot(sol.t, sol.eps_gen, color=color, label=f"beta = {beta}")
sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1)
axes[0].errorbar(sim.t[::4], sim.eps_gen[::4], sim.eps_gen_se[::4], fmt="o", ms=3, color="C2",
                 label=f"simulation d = {D}")
axes[0].set(xlabel="t", ylabel="generalisation error", title="persistent SGD with momentum")
for temp, color in ((0.0, "C0"), (0.05, "C1"), (0.2, "C3")):
    algo = dj.GD(0.2, temperature=temp)
    sol = dj.solve(problem, algo, **kw)
    axes[1].plot(sol.t, sol.q, color=color, label=f"T_L = {temp}")
sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1)
axes[1].errorbar(sim.t[::4], sim.q[::4], sim.q_se[::4], fmt="o", ms=3, color="C3", label=f"simulation d = {D}")
axes[1].set(xlabel="t", ylabel="q = |w|^2 / d", title="Langevin GD")
for ax in axes:
    ax.legend(fontsize=8)
save(fig, "nb10_momentum_langevin.png");

# %% [markdown]
# ## The fluctuation-dissipation check
# With a ridge, full-batch Langevin GD equilibrates: `C` and `R` then obey the
# fluctuation-dissipation relation at `T_L`. `dj.fdt` measures the temperature from them
# (centred differences in the earlier time), and `dj.plot.fdt` draws the integrated response
# against the correlation, a line of slope `-1 / T_L`.

# %%
hot = dj.Problem(dj.TwoCluster(0.5), alpha=2.0, delta=0.5, lam=1.0, R0=0.5)
sol = dj.solve(hot, dj.GD(0.1, temperature=0.2), t_max=10.0, n_traj=N_TRAJ, key=0)
analysis = dj.fdt(sol)
print(f"T_L = 0.2, measured effective temperature {analysis.temperature:.5f}")
fig = dj.plot.fdt(analysis, times=[5.0, 7.5, 10.0])
save(fig, "nb10_fdt.png");
