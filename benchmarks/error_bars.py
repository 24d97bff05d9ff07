"""Standard errors of a solve (``errors=dj.GroupErrors()``): coverage and cost.

Coverage: for each setting, ``--keys`` independent solves with ``N = --n`` trajectories and
their standard errors, against a reference solve with ``--ref-n`` trajectories and its own key
(its error, also printed, must be at least 5x smaller than the standard errors tested). For
each observable and reported time the table gives the fraction of keys with
``|value - reference| / se < 2`` (target 90-98%) and the ratio of the empirical spread of
the values over keys to the mean standard error (target 1). Times whose standard error is
zero (t = 0) are left out.

Cost: wall time of a solve with standard errors against the plain solve, after compilation,
and the first call (compile included) of each, in one run.

Settings: the seed two-cluster persistent SGD (T = 100); three clusters with persistent SGD
b = 0.3 (steep transition near t = 7, step 35); three clusters with full-batch GD (steep near
t = 2, step 10).

    python benchmarks/error_bars.py [--keys 400] [--n 2048] [--groups 16] [--ref-n 65536]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402

OBS = ("m", "q", "eps_gen", "train_loss", "train_acc")
THREE = dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", alpha=2.0, delta=0.05, lam=0.0, R0=1.0, m0=0.05)
SETTINGS = {
    "two-cluster PSGD": (dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01),
                         dj.PersistentSGD(0.2, 0.3, 1 / 0.6), (10, 25, 50, 100)),
    "three-cluster PSGD (steep at k=35)": (THREE, dj.PersistentSGD(0.2, 0.3, 1 / 0.6), (10, 25, 35, 50, 100)),
    "three-cluster GD (steep at k=10)": (THREE, dj.GD(0.2), (5, 10, 25, 100)),
}


def coverage(problem, algo, steps, args):
    errors = dj.GroupErrors(args.groups)
    ref = dj.solve(problem, algo, 20.0, args.ref_n, key=10**6, errors=errors)
    vals = {o: [] for o in OBS}
    ses = {o: [] for o in OBS}
    for k in range(args.keys):
        s = dj.solve(problem, algo, 20.0, args.n, key=k, errors=errors)
        for o in OBS:
            vals[o].append(np.asarray(getattr(s, o))[list(steps)])
            ses[o].append(np.asarray(getattr(s, o + "_se"))[list(steps)])
    rows = []
    for o in OBS:
        v, se = np.array(vals[o]), np.array(ses[o])
        r, r_se = np.asarray(getattr(ref, o))[list(steps)], np.asarray(getattr(ref, o + "_se"))[list(steps)]
        for j, k in enumerate(steps):
            if not np.all(se[:, j] > 0):
                continue
            z = (v[:, j] - r[j]) / se[:, j]
            rows.append((o, k, np.mean(np.abs(z) < 2), np.std(v[:, j], ddof=1) / np.mean(se[:, j]),
                         np.mean(se[:, j]) / max(r_se[j], 1e-300), np.mean(z)))
    return rows


def cost(args):
    problem, algo, _ = SETTINGS["two-cluster PSGD"]
    out = []
    kinds = (("plain", None), ("errors", dj.GroupErrors(args.groups)))
    for n in (args.n, 32768):
        first, reps = {}, {name: [] for name, _ in kinds}
        for name, errors in kinds:
            t0 = time.perf_counter()
            dj.solve(problem, algo, 20.0, n, key=0, errors=errors).m.block_until_ready()
            first[name] = time.perf_counter() - t0
        for k in range(1, 6):  # alternate, so that machine noise hits both alike
            for name, errors in kinds:
                t0 = time.perf_counter()
                dj.solve(problem, algo, 20.0, n, key=k, errors=errors).m.block_until_ready()
                reps[name].append(time.perf_counter() - t0)
        out.append((n, {name: (first[name], float(np.median(reps[name]))) for name, _ in kinds}))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=400)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--groups", type=int, default=16)
    ap.add_argument("--ref-n", type=int, default=131072)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="NAME",
                    help="a subset of: " + "; ".join(SETTINGS))
    ap.add_argument("--no-cost", action="store_true", help="skip the cost table")
    args = ap.parse_args()
    print(f"# error_bars: {platform.machine()} CPU x{os.cpu_count()}, jax {jax.__version__}, float64, T = 100 "
          f"(t_max = 20, eta = 0.2); keys = {args.keys}, N = {args.n}, groups = {args.groups}, "
          f"reference N = {args.ref_n}")
    if not args.no_cost:
        print("\n## cost (one process; median of 5 solves after the first, alternating plain and with se)")
        print("| N | plain first call | with se first call | plain solve | with se solve | ratio |")
        print("|---|---|---|---|---|---|")
        for n, t in cost(args):
            print(f"| {n} | {t['plain'][0]:.2f} s | {t['errors'][0]:.2f} s | {t['plain'][1]:.3f} s | "
                  f"{t['errors'][1]:.3f} s | {t['errors'][1] / t['plain'][1]:.2f}x |")
    for name in args.settings:
        problem, algo, steps = SETTINGS[name]
        t0 = time.perf_counter()
        rows = coverage(problem, algo, steps, args)
        print(f"\n## {name} ({time.perf_counter() - t0:.0f} s)")
        print("| observable | step k | coverage of 2 se | spread / mean se | se / reference se | mean z |")
        print("|---|---|---|---|---|---|")
        for o, k, cov, ratio, ref_ratio, zbar in rows:
            flag = "" if 0.90 <= cov <= 0.98 else " (outside 90-98%)"
            print(f"| {o} | {k} | {cov:.3f}{flag} | {ratio:.2f} | {ref_ratio:.1f} | {zbar:+.2f} |")


if __name__ == "__main__":
    main()
