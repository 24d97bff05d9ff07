# %% [markdown]
# # A smaller batch fraction acts as a regulariser
# Two-cluster seed setting. Left: eps_gen for b = 1 (GD), 0.5, 0.2 at lambda = 0, and GD
# with a ridge. Right: the effective regulariser lam_hat(t) = alpha Delta E[s Lambda''],
# the kernel that the batch fraction scales down (it is the data term of the effective
# curvature; the noise M_C that mini-batches inject acts on top of it).

# %%
import matplotlib.pyplot as plt
import dmft_jax as dj
from _common import N_CHI, N_TRAJ, T_SCALE, save

t_max = 20.0 * T_SCALE
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
base = dict(model=dj.TwoCluster(0.5), loss="logistic", alpha=2.0, delta=0.5, R0=0.01)
runs = [("GD", dj.GD(0.2), 0.0), ("b=0.5", dj.PersistentSGD(0.2, 0.5, 1 / 0.6), 0.0),
        ("b=0.2", dj.PersistentSGD(0.2, 0.2, 1 / 0.6), 0.0), ("GD, lambda=0.1", dj.GD(0.2), 0.1)]
for label, algo, lam in runs:
    sol = dj.solve(dj.Problem(lam=lam, **base), algo, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0)
    ax1.plot(sol.t, sol.eps_gen, label=label)
    ax2.plot(sol.t, sol.lam_hat, label=label)
ax1.set(xlabel="t", ylabel="eps_gen", ylim=(0.1, 0.2))
ax2.set(xlabel="t", ylabel="lam_hat(t)")
ax1.legend()
save(fig, "nb04_batch_as_regulariser.png");
