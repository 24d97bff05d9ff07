# %% [markdown]
# # Three-cluster model (not linearly separable): DMFT over simulations
# lambda = 0, alpha = 2, Delta = 0.05, L = 0.7, eta = 0.2, R0 = 1, persistent SGD
# (1/tau = 0.6) at two batch fractions. The model is symmetric under w -> -w: the DMFT
# starts from m0 = 0.05 and the simulation is conditioned on w_0.v*/d = m0. The DMFT is drawn
# with its +-2 standard-error band (`errors=dj.GroupErrors()`): the steep transition near
# t = 7 is where the Monte Carlo error of the theory is largest.

# %%
import matplotlib.pyplot as plt
import dmft_jax as dj
from _common import D, N_CHI, N_TRAJ, SEEDS, T_SCALE, save

problem = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.0, R0=1.0, m0=0.05)
t_max = 20.0 * T_SCALE
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
for b, color in ((0.3, "C0"), (0.6, "C1")):
    algo = dj.PersistentSGD(0.2, b, 1 / 0.6)
    sol = dj.solve(problem, algo, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0,
                   errors=dj.GroupErrors())
    sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1)
    dj.plot.compare(sol, sim, axes=axes, label=f"DMFT b={b}", color=color)
save(fig, "nb02_three_cluster.png");
