# %% [markdown]
# # Teacher-student data: classification with label noise, and ridge regression
#
# **Question.** Does the DMFT hold beyond cluster models, and does it meet an exact solution?
#
# **Setting.** Gaussian inputs `x ~ N(0, I_d)`, a teacher `w*` with `|w*|^2 = d`, labels from the
# teacher field `nu = w*.x / sqrt(d)` (docs/equations.md, section 5.3). First the sign teacher
# with 10% of the labels flipped, `alpha = 2`, `lambda = 0.05`, `R0 = 1`, logistic loss,
# persistent SGD (`eta = 0.2`, `b = 0.3`, `tau = 1`); `eps_gen = arccos(m / sqrt(q)) / pi`
# against the noiseless teacher. DMFT (`N = 2^16`) with its +-2 standard-error band,
# simulations at `d = 1000`; dotted: the ERM at the same ridge.
#
# **What to look at.** The residual row, `(DMFT - simulation)` in units of the combined standard
# error, with the `+-2` lines.

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
# **Classification.** `eps_gen` falls from 0.5 to about 0.26 at `t = 20`, near the ERM value
# (about 0.259); the training accuracy reaches about 0.90, the fraction of training labels
# that the teacher itself gets right (10% are flipped). The residuals show a systematic
# offset: the DMFT lies above the simulations by about 1.5-2 standard errors in `eps_gen` over
# the whole run (a few thousandths) and by up to about 2.5 in the training loss between `t = 6`
# and `16`.
# It could be a `1/d` correction at `d = 1000`; a `1/d` extrapolation would decide.
#
# ## Regression: the DMFT against the exact Marchenko-Pastur solution
# Linear teacher, labels `y = nu + 0.5 zeta`, squared error, full-batch GD (`eta = 0.2`) with
# `lambda = 0.1`. At `d -> infinity` this has a closed form through the spectrum of `X^T X / d`
# (`dmft_jax.ridge_gd`). **What to look at:** DMFT - exact against the DMFT's +-2 se band.

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

# %% [markdown]
# **Regression.** The DMFT curves lie on the exact ones (about `m = 0.92`, `q = 1.03`, test MSE
# 0.19 and training loss 0.13 at late times, read off the figure). The largest deviations
# over time, in standard errors, are 1.83 (`m`), 2.38 (`q`), 1.52 (test MSE) and 1.41 (training
# loss). The test MSE difference, about 0.0006 at late times, is well inside the band. `q`
# leaves it from about `t = 3` on (about 0.0105 against a band of 0.009). The differences at
# different times come from one solve and are strongly correlated: this is one 2.4-standard-error
# deviation among four quantities, worth rechecking at larger `N`, not a demonstrated bias.
