# %% [markdown]
# # Hyperparameter tuning through the theory
# Minimise eps_gen at t = 10 over the ridge lambda and the batch fraction b with optax, by
# gradients through the DMFT (likelihood-ratio part for b), then look at the curves.

# %%
import matplotlib.pyplot as plt
import optax
import dmft_jax as dj
from _common import N_CHI, N_TRAJ, SMALL, T_SCALE, save

problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.01, R0=0.01)
algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
t_max = 10.0 * T_SCALE
res = dj.tune(problem, algo, ["lam", "b"], t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI),
              optimizer=optax.adam(0.1), steps=3 if SMALL else 40, progress=True)
print(res.params, res.objective)
# the improvement over the start, with the standard error of the difference (common random numbers)
print(f"eps_gen: {res.start_objective:.5f} -> {float(res.objective):.5f} +- {res.objective_se:.5f}; "
      f"improvement {res.improvement:.5f} +- {res.improvement_se:.5f}")
before = dj.solve(problem, algo, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI))
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
dj.plot.compare(before, axes=axes, label="start", color="C0")
dj.plot.compare(res.solution, axes=axes, label="tuned", color="C1")
save(fig, "nb07_tuning.png");
