# %% [markdown]
# # Three-cluster model: increasing the ridge lambda
# Same setting as nb02 (b = 0.3); DMFT curves for several lambda, one simulation check.

# %%
import matplotlib.pyplot as plt
import dmft_jax as dj
from _common import D, N_CHI, N_TRAJ, SEEDS, T_SCALE, save

algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
t_max = 20.0 * T_SCALE
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
for lam, color in ((0.0, "C0"), (0.05, "C1"), (0.2, "C2")):
    problem = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=lam, R0=1.0, m0=0.05)
    sol = dj.solve(problem, algo, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0)
    sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1) if lam == 0.2 else None
    dj.plot.compare(sol, sim, axes=axes, label=f"DMFT lambda={lam}", color=color)
save(fig, "nb03_regularisation.png");
