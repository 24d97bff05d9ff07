"""Work-precision chart: error of eps_gen(t) and C(t,t) against wall time, for every M_R
estimator and trajectory count. Every later speed claim refers to this chart.

Seed two-cluster setting (alpha=2, Delta=0.5, lambda=0, R0=0.01, persistent SGD b=0.3,
1/tau=0.6), horizon t = 20: T = 100 steps (eta = 0.2) and T = 400 steps (eta = 0.05).

Reference (stated in the output): one large exact solve with its own key,
N = --ref-n trajectories, exact response on --ref-chi of them. Each configuration is
solved with --keys independent keys (other than the reference's); the error is the RMS over
keys of max_t |eps_gen - eps_ref| and of max_t |q - q_ref| / max_t q_ref. Wall time: the median
over keys of a solve after compilation (compile time is listed separately). The reference
carries its own Monte Carlo error, so errors level off near it.

    python benchmarks/work_precision.py [--steps 100 400] [--keys 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import dmft_jax as dj  # noqa: E402
from solve_speed import PARAMS  # noqa: E402

T_MAX = 20.0


def configs(T):
    """(label, n_traj, estimator) for one horizon."""
    out = []
    chis = (256, 1024, 4096) if T <= 100 else (128, 512)
    for n in (2**13, 2**15):
        for c in chis:
            if c <= n:
                out.append(("exact", n, dj.ExactResponse(c)))
    sizes = (2**13, 2**15, 2**17) if T <= 100 else (2**13, 2**15)
    for n in sizes:
        for p in (1, 4):
            out.append(("probe", n, dj.ProbeResponse(p)))
    return out


def run(problem, algo, n, est, key):
    t0 = time.perf_counter()
    sol = dj.solve(problem, algo, t_max=T_MAX, n_traj=n, response=est, key=key)
    sol.q.block_until_ready()
    return sol, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 400])
    ap.add_argument("--keys", type=int, default=2)
    ap.add_argument("--ref-n", type=int, default=2**18)
    ap.add_argument("--ref-chi", type=int, default=8192)
    ap.add_argument("--out", default="docs/figures")
    args = ap.parse_args()
    p = PARAMS
    problem = dj.Problem(dj.TwoCluster(p["rho"]), "logistic", p["alpha"], p["delta"], p["lam"], p["R0"])
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} ({jax.devices()[0].platform}), float64")
    for T in args.steps:
        eta = T_MAX / T
        algo = dj.PersistentSGD(eta, p["b"], p["tau"])
        # the reference's response memory is held below ~3 GiB
        ref_chi = min(args.ref_chi, int(3 * 2**30 // (8 * (T + 1) ** 2)))
        ref, t_ref = run(problem, algo, args.ref_n, dj.ExactResponse(ref_chi), key=12345)
        print(f"\nT = {T} (eta = {eta:g}, t = {T_MAX:g}); reference: exact response, N = {args.ref_n}, "
              f"N_chi = {ref_chi}, key 12345, {t_ref:.1f} s")
        print(f"{'estimator':<26} {'N':>7} {'time [s]':>9} {'compile [s]':>12} {'err eps_gen':>12} {'rel err q':>10}")
        rows = []
        for label, n, est in configs(T):
            sols, times = [], []
            for i in range(args.keys + 1):  # the first run compiles
                sol, dt = run(problem, algo, n, est, key=i)
                sols.append(sol)
                times.append(dt)
            compile_s = times[0] - np.median(times[1:])
            sols = sols[1:] if args.keys > 1 else sols
            e_eps = np.sqrt(np.mean([np.max(np.abs(s.eps_gen - ref.eps_gen)) ** 2 for s in sols]))
            e_q = np.sqrt(np.mean([np.max(np.abs(s.q - ref.q)) ** 2 for s in sols])) / float(np.max(ref.q))
            t_run = float(np.median(times[1:]))
            name = repr(est).replace("Response", "")
            rows.append((label, n, est, t_run, e_eps, e_q))
            print(f"{name:<26} {n:>7} {t_run:>9.2f} {compile_s:>12.1f} {e_eps:>12.2e} {e_q:>10.2e}", flush=True)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, idx, title in ((axes[0], 4, "max_t |eps_gen - ref|"), (axes[1], 5, "max_t |q - ref| / max_t ref")):
            for label, marker in (("exact", "o"), ("probe", "s")):
                sel = [r for r in rows if r[0] == label]
                for r in sel:
                    size = {2**13: 30, 2**15: 60, 2**17: 110}.get(r[1], 60)
                    txt = f"chi {r[2].n_chi}" if label == "exact" else f"P={r[2].n_probes}"
                    ax.scatter(r[3], r[idx], marker=marker, s=size, color="C0" if label == "exact" else "C1",
                               alpha=0.7)
                    ax.annotate(f"{txt}, N=2^{int(np.log2(r[1]))}", (r[3], r[idx]), fontsize=6)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel("wall time per solve [s]")
            ax.set_title(title, fontsize=9)
        axes[0].scatter([], [], marker="o", color="C0", label="ExactResponse(n_chi)")
        axes[0].scatter([], [], marker="s", color="C1", label="ProbeResponse(n_probes)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"work-precision, seed two-cluster, T = {T}, CPU ({os.cpu_count()} cores), float64", fontsize=9)
        fig.tight_layout()
        path = os.path.join(args.out, f"work_precision_T{T}.png")
        fig.savefig(path, dpi=110)
        print(f"figure: {path}")


if __name__ == "__main__":
    main()
