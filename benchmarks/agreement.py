"""DMFT against finite-d simulations at several d, with the 1/d extrapolation.

For each setting: one DMFT solve (N = 2^17 trajectories, exact response on 16384), and
simulations at d in --dims (--seeds seeds each). At a few times it prints the DMFT value,
the simulation means +- standard error, and the weighted fit A + B/d over d with the
standard error of A; |DMFT - A| / se(A) is the honest agreement score. Writes the README
figure (two-cluster, largest d) to docs/figures/seed_two_cluster.png.

    python benchmarks/agreement.py [--dims 500 1000 2000 4000] [--seeds 10]
"""
from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402

SETTINGS = {
    "two-cluster PSGD (seed)": (
        dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01),
        dj.PersistentSGD(0.2, 0.3, 1 / 0.6)),
    "two-cluster GD lam=0.1": (
        dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.01),
        dj.GD(0.2)),
    "three-cluster PSGD (m0=0.05)": (
        dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.0, R0=1.0, m0=0.05),
        dj.PersistentSGD(0.2, 0.3, 1 / 0.6)),
}


def fit_inverse_d(dims, means, ses):
    """Weighted least squares of y = A + B/d; returns A and its standard error."""
    X = np.stack([np.ones(len(dims)), 1.0 / np.asarray(dims)], axis=1)
    W = np.diag(1 / np.asarray(ses) ** 2)
    cov = np.linalg.inv(X.T @ W @ X)
    coef = cov @ X.T @ W @ np.asarray(means)
    return coef[0], np.sqrt(cov[0, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dims", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--t-max", type=float, default=20.0)
    ap.add_argument("--n-traj", type=int, default=2**17)
    ap.add_argument("--n-chi", type=int, default=16384)
    args = ap.parse_args()
    for name, (problem, algo) in SETTINGS.items():
        t0 = time.perf_counter()
        sol = dj.solve(problem, algo, t_max=args.t_max, n_traj=args.n_traj, response=dj.ExactResponse(args.n_chi), key=0)
        t_solve = time.perf_counter() - t0
        sims = {}
        for d in args.dims:
            sims[d] = dj.simulate(problem, algo, t_max=args.t_max, d=d, n_seeds=args.seeds, key=d,
                                  batch_size=min(args.seeds, max(1, 20000 // d)))
        print(f"\n== {name}: DMFT N={args.n_traj}, N_chi={args.n_chi} ({t_solve:.1f} s); "
              f"simulations d={args.dims}, {args.seeds} seeds each")
        T = len(sol.t) - 1
        for obs in ("m", "q", "eps_gen", "train_loss", "train_acc"):
            for k in (T // 4, T):
                means = [float(getattr(sims[d], obs)[k]) for d in args.dims]
                ses = [max(float(getattr(sims[d], obs + "_se")[k]), 1e-12) for d in args.dims]
                A, se_A = fit_inverse_d(args.dims, means, ses)
                x = float(getattr(sol, obs)[k])
                sim_txt = "  ".join(f"{m:.4f}±{s:.4f}" for m, s in zip(means, ses))
                print(f"{obs:>10} t={float(sol.t[k]):5.1f}  DMFT {x:.4f} | sim {sim_txt} | "
                      f"A+B/d: A={A:.4f}±{se_A:.4f}  (DMFT-A)/se={(x - A) / se_A:+.1f}")
        if name.startswith("two-cluster PSGD"):
            d = max(args.dims)
            os.makedirs("docs/figures", exist_ok=True)
            sol.plot(sims[d], path="docs/figures/seed_two_cluster.png")
            print("wrote docs/figures/seed_two_cluster.png")


if __name__ == "__main__":
    main()
