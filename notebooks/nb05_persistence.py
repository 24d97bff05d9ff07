# %% [markdown]
# # As tau shrinks, persistent SGD approaches classic SGD
# Two-cluster seed setting, b = 0.3, eta = 0.2: tau = 5, 1.67, 0.5 and the classic-SGD
# value tau = eta / (1 - b) = 0.286, against dj.SGD (identical by construction at that tau).

# %%
import matplotlib.pyplot as plt
import dmft_jax as dj
from _common import D, N_CHI, N_TRAJ, SEEDS, T_SCALE, save

problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
t_max = 20.0 * T_SCALE
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
for tau, color in ((5.0, "C0"), (1 / 0.6, "C1"), (0.5, "C2"), (0.2 / 0.7, "C3")):
    sol = dj.solve(problem, dj.PersistentSGD(0.2, 0.3, tau), t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0)
    dj.plot.compare(sol, axes=axes, label=f"PSGD tau={tau:.3g}", color=color)
sim = dj.simulate(problem, dj.SGD(0.2, 0.3), t_max=t_max, d=D, n_seeds=SEEDS, key=1)
dj.plot.compare(None, sim, axes=axes, color="k")
save(fig, "nb05_persistence.png");
