# %% [markdown]
# # Static anchor: ERM errors against alpha, and the separability threshold
#
# **Question.** Where do the dynamics end? For a convex loss with a ridge, full-batch GD
# converges to the empirical-risk minimiser (ERM), whose errors at `d -> infinity` follow from a
# fixed-point (replica) calculation, `dj.erm`. How do they depend on the sample ratio
# `alpha = n/d`?
#
# **Setting.** Two balanced clusters, `Delta = 0.5`, ridge-logistic ERM with `lambda = 0.1`,
# 30 values of `alpha` from 0.5 to 8, no bias. The dotted line is the separability threshold
# `alpha*(Delta)` (`dj.alpha_star`): below it a plane through the origin separates the training
# set with probability tending to 1 as `d -> infinity`.
#
# **What to look at.** The two curves as `alpha` grows, and whether anything happens at
# `alpha*`.

# %%
import matplotlib.pyplot as plt
import numpy as np
import dmft_jax as dj
from _common import SMALL, save

alphas = np.linspace(0.5, 8.0, 6 if SMALL else 30)
rows = []
for a in alphas:
    s = dj.erm(dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=float(a), delta=0.5, lam=0.1))
    rows.append((float(s.eps_gen), float(s.train_error)))
rows = np.array(rows)
fig, ax = plt.subplots(figsize=(5, 3.6), constrained_layout=True)
ax.plot(alphas, rows[:, 0], label="generalisation error")
ax.plot(alphas, rows[:, 1], label="training error")
ax.axvline(dj.alpha_star(0.5, bias=False), color="k", ls=":", label="alpha* (no bias)")
ax.set(xlabel="alpha", title="ridge-logistic ERM, Delta = 0.5, lambda = 0.1")
ax.legend()
save(fig, "nb06_static.png");

# %% [markdown]
# ## What the figure shows
#
# Values read off the figure:
#
# - The generalisation error decreases monotonically with `alpha`, from about 0.167 at
#   `alpha = 0.5` to about 0.117 at `alpha = 2` (the `alpha` of nb01-nb05) and 0.096 at
#   `alpha = 8`: more samples per dimension give a better estimate of the cluster direction.
# - The training error grows from zero at small `alpha` to about 0.05 at `alpha = 8`; the two
#   curves approach each other, as they must when `n / d` grows and the training set becomes
#   representative.
# - The threshold is at `alpha* = 6.7` for `Delta = 0.5`. The curves are smooth through it:
#   with `lambda = 0.1` the minimiser is unique and finite on both sides, and the ridge already
#   gives a non-zero training error (about 0.012 at `alpha = 2`) below `alpha*`. The threshold
#   matters for `lambda -> 0`: below it the unregularised minimiser does not exist (the norm
#   diverges along a separating direction), which is behind the late-time rise of `eps_gen` in
#   nb01 and nb04 at `alpha = 2`.
# - GD with `lambda = 0.1` on the same problem (nb04) is at about 0.116 at `t = 20`, close to
#   its end point, the ERM value of about 0.117 at `alpha = 2`.
