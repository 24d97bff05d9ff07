"""DMFT against finite-d simulations at several d, with the 1/d extrapolation.

For each setting (the seed's, and three per model or algorithm variant of docs/equations.md,
section 5): one DMFT solve (N = 2^17 trajectories, exact response on 16384), and
simulations at d in --dims (--seeds seeds each). At a few times it prints the DMFT value,
the simulation means +- standard error, and the weighted fit A + B/d over d with the
standard error of A; |DMFT - A| / se, with se combining se(A) and the DMFT's own standard
error (GroupErrors(16)), is the honest agreement score. Writes the README
figure (two-cluster, largest d) to docs/figures/seed_two_cluster.png.

    python benchmarks/agreement.py [--dims 500 1000 2000 4000] [--seeds 10] [--only teacher bias ...]
    python benchmarks/agreement.py --long        # to t = 1000 with a compressed history, read at t = 100, 300, 1000

A table at the end gives each setting's largest |DMFT - A| / se.
"""
from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402

SEED_SETTINGS = {
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

# issue 15: three settings unlike each other per new model or algorithm variant (a ridge, label
# noise, rho != 1/2 among them)
TS = dj.TeacherStudent
REG = dj.TeacherRegression
TC = dj.TwoCluster
EXTENSION_SETTINGS = {
    "teacher-student PSGD noise=0.1 lam=0.05": (dj.Problem(TS(0.1), alpha=2.0, lam=0.05, R0=1.0),
                                                 dj.PersistentSGD(0.2, 0.3, 1.0)),
    "teacher-student GD lam=0.1": (dj.Problem(TS(0.0), alpha=1.5, lam=0.1, R0=0.5), dj.GD(0.2)),
    "teacher-student SGD noise=0.2 alpha=3": (dj.Problem(TS(0.2), alpha=3.0, lam=0.0, R0=1.0, m0=0.1),
                                               dj.SGD(0.2, 0.5)),
    "regression PSGD noise=0.5 lam=0.05": (dj.Problem(REG(0.5), alpha=2.0, lam=0.05, R0=1.0),
                                            dj.PersistentSGD(0.2, 0.3, 1.0)),
    "regression GD alpha=0.5 ridgeless": (dj.Problem(REG(0.3), alpha=0.5, lam=0.0, R0=0.5, m0=0.2), dj.GD(0.1)),
    "regression tanh teacher pseudo-Huber SGD": (dj.Problem(REG(0.2, f=jnp.tanh), "pseudo_huber", alpha=3.0,
                                                            lam=0.1, R0=1.0), dj.SGD(0.2, 0.4)),
    "momentum PSGD beta=0.6 rho=0.3": (dj.Problem(TC(0.3), alpha=2.0, delta=0.5, lam=0.1, R0=0.5),
                                       dj.PersistentSGD(0.1, 0.3, 1.0, beta=0.6)),
    "momentum GD beta=0.8 teacher noise=0.1": (dj.Problem(TS(0.1), alpha=1.5, lam=0.05, R0=1.0),
                                               dj.GD(0.1, beta=0.8)),
    "momentum SGD beta=0.5 three-cluster": (
        dj.Problem(dj.ThreeCluster(0.5, 0.7), alpha=2.0, delta=0.05, lam=0.01, R0=1.0, m0=0.05),
        dj.SGD(0.1, 0.3, beta=0.5)),
    "Langevin GD T=0.1 teacher noise=0.1": (dj.Problem(TS(0.1), alpha=1.5, lam=0.05, R0=1.0),
                                            dj.GD(0.2, temperature=0.1)),
    "Langevin PSGD T=0.05 rho=0.3": (dj.Problem(TC(0.3), alpha=2.0, delta=0.5, lam=0.1, R0=0.5),
                                     dj.PersistentSGD(0.2, 0.3, 1.0, temperature=0.05)),
    "Langevin+momentum regression": (dj.Problem(REG(0.3), alpha=2.0, lam=0.0, R0=1.0),
                                     dj.SGD(0.1, 0.5, beta=0.5, temperature=0.02)),
    "bias PSGD rho=0.2": (dj.Problem(TC(0.2), alpha=2.0, delta=0.5, lam=0.05, R0=0.5, bias=0.0),
                          dj.PersistentSGD(0.2, 0.3, 1.0)),
    "bias GD rho=0.7 lam=0.1 b0=0.5": (dj.Problem(TC(0.7), alpha=3.0, delta=1.0, lam=0.1, R0=0.2, bias=0.5),
                                       dj.GD(0.2)),
    "bias teacher noise=0.1 momentum": (dj.Problem(TS(0.1), alpha=1.5, lam=0.05, R0=1.0, bias=0.5),
                                        dj.GD(0.2, beta=0.5)),
}
SETTINGS = {**SEED_SETTINGS, **EXTENSION_SETTINGS}

# issue 25: long times (t = 1000, 5000 steps), solved with a CompressedHistory and probes, read at
# t = 100, 300, 1000 against simulations at d = 1000 - 4000
LONG_SETTINGS = {
    "long: two-cluster GD lam=0 (separable)": (
        dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01), dj.GD(0.2)),
    "long: two-cluster PSGD lam=0 (seed)": (
        dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01),
        dj.PersistentSGD(0.2, 0.3, 1 / 0.6)),
    "long: two-cluster PSGD lam=0.05": (
        dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01),
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
    ap.add_argument("--dims", type=int, nargs="+", default=None, help="default 500 1000 2000 4000 (--long: 1000 2000 "
                                                                        "4000)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--t-max", type=float, default=None, help="default 20 (--long: 1000)")
    ap.add_argument("--long", action="store_true", help="the long-time settings (compressed history, ProbeResponse)")
    ap.add_argument("--n-traj", type=int, default=2**17)
    ap.add_argument("--n-chi", type=int, default=16384)
    ap.add_argument("--only", nargs="*", default=None,
                    help="run the settings whose name contains one of these words (e.g. teacher bias)")
    args = ap.parse_args()
    args.dims = args.dims or ([1000, 2000, 4000] if args.long else [500, 1000, 2000, 4000])
    args.t_max = args.t_max or (1000.0 if args.long else 20.0)
    settings = LONG_SETTINGS if args.long else SETTINGS
    chosen = {k: v for k, v in settings.items() if args.only is None or any(w in k for w in args.only)}
    how = (dict(response=dj.ProbeResponse(4), solver=dj.CausalSweep(history=dj.CompressedHistory())) if args.long
           else dict(response=dj.ExactResponse(args.n_chi)))
    summary = []
    for name, (problem, algo) in chosen.items():
        t0 = time.perf_counter()
        sol = dj.solve(problem, algo, t_max=args.t_max, n_traj=args.n_traj, key=0, errors=dj.GroupErrors(16), **how)
        t_solve = time.perf_counter() - t0
        sims = {}
        for d in args.dims:
            sims[d] = dj.simulate(problem, algo, t_max=args.t_max, d=d, n_seeds=args.seeds, key=d,
                                  batch_size=min(args.seeds, max(1, 20000 // d)))
        print(f"\n== {name}: DMFT N={args.n_traj}, N_chi={args.n_chi} ({t_solve:.1f} s); "
              f"simulations d={args.dims}, {args.seeds} seeds each")
        T = len(sol.t) - 1
        worst = 0.0
        observables = ("m", "q", "eps_gen", "train_loss", "train_acc") + (("bias",) if sol.bias is not None else ())
        for obs in observables:
            times = (T // 10, (3 * T) // 10, T) if args.long else (T // 4, T // 2, T)
            for k in times:
                means = [float(getattr(sims[d], obs)[k]) for d in args.dims]
                ses = [max(float(getattr(sims[d], obs + "_se")[k]), 1e-12) for d in args.dims]
                A, se_A = fit_inverse_d(args.dims, means, ses)
                x = float(getattr(sol, obs)[k])
                se_x = float(getattr(sol, obs + "_se")[k]) if obs != "bias" else 0.0  # the bias has no se
                z = (x - A) / np.hypot(se_A, se_x)
                sim_txt = "  ".join(f"{m:.4f}±{s:.4f}" for m, s in zip(means, ses))
                print(f"{obs:>10} t={float(sol.t[k]):5.1f}  DMFT {x:.4f}±{se_x:.4f} | sim {sim_txt} | "
                      f"A+B/d: A={A:.4f}±{se_A:.4f}  (DMFT-A)/se={z:+.1f}")
                worst = max(worst, abs(z))
        summary.append((name, worst))
        if name.startswith("two-cluster PSGD"):
            d = max(args.dims)
            os.makedirs("docs/figures", exist_ok=True)
            sol.plot(sims[d], path="docs/figures/seed_two_cluster.png")
            print("wrote docs/figures/seed_two_cluster.png")
    when = "t = T/10, 3T/10, T" if args.long else "t = T/4, T/2, T"
    print(f"\n| setting | largest |DMFT - A| / se over the observables at {when} |\n|---|---|")
    for name, worst in summary:
        print(f"| {name} | {worst:.2f} |")


if __name__ == "__main__":
    main()
