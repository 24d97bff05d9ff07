"""The static anchor: separability threshold figure, ERM error against lambda, and the
long-time full-batch GD DMFT against the ERM fixed point.

Writes docs/figures/alpha_star.png (alpha* against Delta, log-log, rho = 0.1..0.5, with a
bias; the seed slide's figure) and docs/figures/erm_lambda.png (ERM eps_gen against
lambda for several alpha, logistic). Without a bias the balanced model's optimal lambda is
infinite: the lam -> infinity limit of ridge ERM is the Hebbian estimator
w ~ sum_mu y_mu x_mu, Bayes-optimal here, with eps_gen = Q(sqrt(alpha / (Delta (alpha + Delta)))).

    python benchmarks/static_anchor.py
"""
from __future__ import annotations

import os
import time

import jax

jax.config.update("jax_enable_x64", True)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.special import erfc  # noqa: E402

import dmft_jax as dj  # noqa: E402


def main():
    os.makedirs("docs/figures", exist_ok=True)
    # 1. alpha*(Delta, rho)
    deltas = np.logspace(-1.3, 1.0, 30)
    fig, ax = plt.subplots(figsize=(4.8, 3.6), constrained_layout=True)
    print("alpha*(Delta, rho) with a bias")
    print(f"{'Delta':>8} " + " ".join(f"{'rho=' + str(r):>9}" for r in (0.1, 0.2, 0.3, 0.4, 0.5)))
    table = {}
    for rho in (0.1, 0.2, 0.3, 0.4, 0.5):
        table[rho] = [dj.alpha_star(dl, rho) for dl in deltas]
        ax.loglog(deltas, table[rho], label=f"rho = {rho}")
    for i in range(0, len(deltas), 6):
        print(f"{deltas[i]:>8.3f} " + " ".join(f"{table[r][i]:>9.3f}" for r in table))
    ax.set_xlabel("Delta")
    ax.set_ylabel("alpha*")
    ax.set_title("separability threshold (with bias)")
    ax.legend(fontsize=8)
    fig.savefig("docs/figures/alpha_star.png", dpi=130)

    # 2. ERM eps_gen against lambda (logistic), and d eps_gen / d lambda by autodiff
    lams = np.logspace(-3, 2, 26)
    fig, ax = plt.subplots(figsize=(4.8, 3.6), constrained_layout=True)
    print("\nERM (logistic, Delta = 0.5): eps_gen(lambda) and its lambda-derivative (autodiff)")
    for alpha in (1.0, 2.0, 4.0):
        f = lambda lam: dj.erm(dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=alpha, delta=0.5, lam=lam)).eps_gen
        eps = np.array([float(f(lam)) for lam in lams])
        grads = np.array([float(jax.grad(f)(lam)) for lam in lams[::5]])
        hebb = 0.5 * erfc(np.sqrt(alpha / (0.5 * (alpha + 0.5))) / np.sqrt(2))
        line, = ax.semilogx(lams, eps, label=f"alpha = {alpha}")
        ax.axhline(hebb, color=line.get_color(), ls=":", lw=1)
        print(f"alpha={alpha}: eps_gen " + " ".join(f"{e:.4f}" for e in eps[::5]) +
              f" | Hebbian limit {hebb:.4f} | d eps/d lam " + " ".join(f"{g:+.2e}" for g in grads))
    ax.set_xlabel("lambda")
    ax.set_ylabel("eps_gen of the ERM")
    ax.set_title("ridge-logistic ERM (dotted: lam -> inf)")
    ax.legend(fontsize=8)
    fig.savefig("docs/figures/erm_lambda.png", dpi=130)

    # 3. long-time GD DMFT vs ERM
    print("\nfull-batch GD DMFT (eta = dt = 0.5, N = 2^15) vs ERM, logistic, alpha=2, Delta=0.5")
    print(f"{'lam':>6} {'t':>5} {'eps DMFT':>9} {'eps ERM':>9} {'q DMFT':>8} {'q ERM':>8} {'rel q':>8} {'stationary':>10}")
    for lam in (0.1, 0.5):
        p = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=lam, R0=0.01)
        t0 = time.perf_counter()
        sol, ok = dj.gd_long_time(p, eta=0.5, t_max=60.0, n_traj=2**15, response=dj.ExactResponse(2048))
        ref = dj.erm(p)
        print(f"{lam:>6} {float(sol.t[-1]):>5.0f} {float(sol.eps_gen[-1]):>9.5f} {float(ref.eps_gen):>9.5f} "
              f"{float(sol.q[-1]):>8.4f} {float(ref.q):>8.4f} {float(sol.q[-1] / ref.q - 1):>+8.4f} {str(ok):>10}"
              f"   ({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
