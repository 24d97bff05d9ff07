"""Convergence of persistent SGD to the stochastic gradient flow as eta = dt -> 0 at fixed
tau (seed two-cluster setting, b = 0.3, tau = 1). The selection paths are coupled across
dt (same key), so successive differences |x(dt) - x(dt/2)| measure the time-discretisation
error; a slope of 1 in log-log is first-order convergence.

    python benchmarks/dt_convergence.py [--t 2.0] [--n-traj 65536]
"""
from __future__ import annotations

import argparse

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--t", type=float, default=2.0)
    ap.add_argument("--n-traj", type=int, default=2**16)
    ap.add_argument("--etas", type=float, nargs="+", default=[0.2, 0.1, 0.05, 0.025, 0.0125])
    args = ap.parse_args()
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, R0=0.01)
    names = ("m", "q", "eps_gen", "train_loss")
    vals = []
    for eta in args.etas:
        s = dj.solve(problem, dj.PersistentSGD(eta, 0.3, 1.0), t_max=args.t, n_traj=args.n_traj,
                     response=dj.ExactResponse(2048), key=0)
        vals.append([float(getattr(s, n)[-1]) for n in names])
    vals = np.array(vals)
    print(f"PersistentSGD(b=0.3, tau=1), observables at t={args.t}, N={args.n_traj}\n")
    print(f"{'eta':>8} " + " ".join(f"{n:>12}" for n in names))
    for eta, v in zip(args.etas, vals):
        print(f"{eta:>8.4f} " + " ".join(f"{x:>12.6f}" for x in v))
    diffs = np.abs(np.diff(vals, axis=0))
    print("\nsuccessive differences |x(eta) - x(eta/2)|")
    print(f"{'eta':>8} " + " ".join(f"{n:>12}" for n in names))
    for eta, d in zip(args.etas, diffs):
        print(f"{eta:>8.4f} " + " ".join(f"{x:>12.2e}" for x in d))
    slopes = np.polyfit(np.log(args.etas[:-1]), np.log(diffs), 1)[0]
    print("\nlog-log slope of the successive differences: " +
          ", ".join(f"{n} {s:.2f}" for n, s in zip(names, slopes)))


if __name__ == "__main__":
    main()
