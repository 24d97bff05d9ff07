# %% [markdown]
# # Static anchor: ERM errors against alpha, and the separability threshold
# Ridge-logistic ERM (lambda = 0.1, Delta = 0.5): generalisation and training error against
# alpha, with the separability threshold alpha*(Delta) of a plane through the origin.

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
