# %% [markdown]
# # Teacher-student data: classification with label noise, and ridge regression
# Gaussian inputs `x ~ N(0, I_d)`, a teacher `w*` with `|w*|^2 = d`, labels from the teacher
# field `nu = w*.x / sqrt(d)` (docs/equations.md, section 5.3). First the sign teacher with 10%
# of the labels flipped, trained by persistent SGD: the DMFT over finite-d simulations, the
# generalisation error measured against the noiseless teacher (`arccos(m / sqrt(q)) / pi`), and
# the empirical-risk minimiser that full-batch GD would reach.

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
import dmft_jax as dj
from dmft_jax import ridge_gd
from _common import D, N_CHI, N_TRAJ, SEEDS, SMALL, T_SCALE, save

errors = dj.GroupErrors(4 if SMALL else 16)

problem = dj.Problem(dj.TeacherStudent(label_noise=0.1), alpha=2.0, lam=0.05, R0=1.0)
algo = dj.PersistentSGD(0.2, b=0.3, tau=1.0)
t_max = 20.0 * T_SCALE
sol = dj.solve(problem, algo, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0,
               errors=errors)
sim = dj.simulate(problem, algo, t_max=t_max, d=D, n_seeds=SEEDS, key=1)
fig = dj.plot.compare(sol, sim)
ref = dj.erm(problem)
fig.axes[0].axhline(float(ref.eps_gen), color="k", ls=":", lw=1, label="ERM (lam = 0.05)")
fig.axes[0].legend(fontsize=8)
display(fig)  # compare hands its figure to the caller: shown once
save(fig, "nb09_teacher_student.png");

# %% [markdown]
# ## Regression: the DMFT meets the exact Marchenko-Pastur solution
# Linear teacher, labels `y = nu + 0.5 zeta`, squared error, full-batch GD with a ridge. This
# setting has a closed form at `d -> infinity` through the spectrum of `X^T X / d`
# (`dmft_jax.ridge_gd`); the DMFT, solved with trajectories and kernels, must lie on it
# within its own standard errors (the band is 2 standard errors).

# %%
reg = dj.Problem(dj.TeacherRegression(noise=0.5), "squared_error", alpha=2.0, lam=0.1, R0=1.0)
gd = dj.GD(0.2)
sol_r = dj.solve(reg, gd, t_max=t_max, n_traj=N_TRAJ, response=dj.ExactResponse(N_CHI), key=0,
                 errors=errors)
exact = ridge_gd(reg, gd, t_max=t_max)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), constrained_layout=True)
t = np.asarray(sol_r.t)
for name, label in (("m", "m"), ("q", "q"), ("eps_gen", "test MSE"), ("train_loss", "training loss / d")):
    line, = axes[0].plot(t, getattr(sol_r, name), label=f"{label}, DMFT")
    axes[0].plot(exact.t, getattr(exact, name), "k--", lw=1)
axes[0].set(xlabel="t", title="DMFT (lines) and exact (dashed)")
axes[0].legend(fontsize=8)
for ax, name, title in zip(axes[1:], ("q", "eps_gen"), ("q: DMFT - exact", "test MSE: DMFT - exact")):
    diff = np.asarray(getattr(sol_r, name)) - getattr(exact, name)
    se = 2 * np.asarray(getattr(sol_r, name + "_se"))
    ax.fill_between(t, -se, se, alpha=0.3, label="± 2 se of the DMFT")
    ax.plot(t, diff, label="DMFT - exact")
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set(xlabel="t", title=title)
    ax.legend(fontsize=8)
print("largest |DMFT - exact| / se over time:",
      {n: float(np.max(np.abs(np.asarray(getattr(sol_r, n)) - getattr(exact, n))[1:]
                       / np.asarray(getattr(sol_r, n + "_se"))[1:])) for n in ("m", "q", "eps_gen", "train_loss")})
save(fig, "nb09_regression.png");
