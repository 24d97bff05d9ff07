# %% [markdown]
# # Two-cluster model: DMFT over persistent-SGD simulations, several batch fractions
# Seed setting: lambda = 0, alpha = 2, Delta = 0.5, 1/tau = 0.6, eta = 0.2, R0 = 0.01.

# %%
import matplotlib.pyplot as plt
import dmft_jax as dj
from _common import D, N_CHI, N_TRAJ, SEEDS, T_SCALE, save

problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
t_max = 20.0 * T_SCALE
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
for b, color in ((0.1, "C0"), (0.3, "C1"), (0.5, "C2")):
    algo = dj.PersistentSGD(0.2, b, 1 / 0.6)
    sol = dj.solve(problem, algo, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0)
    sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1)
    dj.plot.compare(sol, sim, axes=axes, label=f"DMFT b={b}", color=color)
save(fig, "nb01_two_cluster.png");
