# %% [markdown]
# # As tau shrinks, persistent SGD approaches classic SGD
#
# **Question.** In persistent SGD a sample stays in the batch for a mean time `tau` and out of it
# for `tau (1 - b) / b`. At `tau = eta / (1 - b)` the selection has no memory and the algorithm
# is classic SGD, a fresh batch at every step. How do the curves move between the two?
#
# **Setting.** The two-cluster seed setting (`alpha = 2`, `Delta = 0.5`, `lambda = 0`,
# `R0 = 0.01`, logistic loss), `b = 0.3`, `eta = 0.2`, `tau = 5, 1.67, 0.5` and
# `tau = 0.2 / 0.7 = 0.286`, the classic-SGD value. DMFT with `N = 2^16` trajectories; black
# points: classic SGD (`dj.SGD(0.2, 0.3)`) simulated at `d = 1000` (10 seeds, one standard
# error).
#
# **What to look at.** The ordering of the colours, and whether the red line (`tau = 0.286`)
# runs through the black points.

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

# %% [markdown]
# ## What the figure shows
#
# - The red DMFT line lies on the classic-SGD simulation in all three panels over the whole run:
#   the DMFT of persistent SGD at `tau = eta / (1 - b)` describes classic SGD.
# - A shorter persistence gives faster training and a lower error here. At `t = 20`
#   (read off the figure) `eps_gen` is about 0.123 for `tau = 5`, 0.115 for `tau = 1.67` and
#   0.111-0.112 for `tau = 0.5` and `0.286`, and the training accuracy is about 0.95 for
#   `tau = 5` against about 0.975 for the shorter times. A plausible reading: with a long
#   persistence the batch changes slowly, and over a window of time the weights see fewer
#   distinct samples.
# - `tau = 0.5` and `tau = 0.286` are hardly distinguishable: for `b = 0.3` the approach to
#   classic SGD is complete once `tau` is a few times `eta`. The classic-SGD error has a shallow
#   minimum of about 0.108 near `t = 5` and is about 0.112 at `t = 20`, the same slow late rise as
#   in nb01.
