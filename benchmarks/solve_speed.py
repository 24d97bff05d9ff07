"""Speed of dmft_jax.solve against a plain NumPy implementation of the same equations.

Seed two-cluster setting (lambda=0, alpha=2, Delta=0.5, 1/tau=0.6, eta=0.2, R0=0.01,
b=0.3), T = 100 steps (t_max = 20), N trajectories, exact response on N_chi = min(N, 4096)
of them in both codes. Times are the best of --repeat rounds in which all variants take
turns, after one warm-up (JAX compile time is reported separately). Usage:

    python benchmarks/solve_speed.py [--sizes 4096 65536] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import dmft_jax as dj  # noqa: E402
from _timing import best_interleaved, timed  # noqa: E402
from numpy_baseline import solve_numpy  # noqa: E402

PARAMS = dict(alpha=2.0, delta=0.5, lam=0.0, R0=0.01, rho=0.5, eta=0.2, b=0.3, tau=1 / 0.6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    p = PARAMS
    problem = dj.Problem(dj.TwoCluster(p["rho"]), "logistic", p["alpha"], p["delta"], p["lam"], p["R0"])
    algo = dj.PersistentSGD(p["eta"], p["b"], p["tau"])
    T = args.steps
    t_max = T * p["eta"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"jax {jax.__version__} ({jax.devices()[0].platform}), numpy {np.__version__}")
    print(f"seed two-cluster setting, T={T}, N_chi=min(N, 4096), best of {args.repeat}\n")
    header = f"{'N':>7} {'N_chi':>6} {'numpy f64 [s]':>14} {'jax f64 [s]':>12} {'ratio':>6} {'jax f32 [s]':>12} {'ratio':>6} {'compile f64 [s]':>16}"
    print(header)
    print("-" * len(header))
    extra = []
    for N in args.sizes:
        n_chi = min(N, 4096)
        runs = {}
        for label, nc in (("equal work", n_chi), ("small", min(N, 256))):
            for dtype in (jnp.float64, jnp.float32):
                runs[label, dtype] = (lambda nc=nc, dtype=dtype: dj.solve(
                    problem, algo, t_max=t_max, n_traj=N, response=dj.ExactResponse(nc), key=0, dtype=dtype).m.block_until_ready())
        first = {name: timed(f) for name, f in runs.items()}  # compile and first run
        runs["numpy"] = lambda: solve_numpy(**p, T=T, n_traj=N, n_chi=n_chi, seed=0)
        t = best_interleaved(runs, args.repeat)
        t_np = t["numpy"]
        f64, f32 = t["equal work", jnp.float64], t["equal work", jnp.float32]
        compile_s = first["equal work", jnp.float64] - f64
        print(f"{N:>7} {n_chi:>6} {t_np:>14.2f} {f64:>12.3f} {t_np / f64:>6.1f} "
              f"{f32:>12.3f} {t_np / f32:>6.1f} {compile_s:>16.1f}", flush=True)
        extra.append((N, t_np, {dt: t["small", dt] for dt in (jnp.float64, jnp.float32)}))
    print("\nat equal accuracy rather than equal work: benchmarks/work_precision.py shows the same error")
    print("for n_chi = 256 as for 4096 at T = 100 (the other kernels' Monte Carlo error dominates);")
    print("JAX with n_chi = 256 against the NumPy code above (n_chi = min(N, 4096)):")
    for N, t_np, small in extra:
        print(f"{N:>7} {256:>6} {t_np:>14.2f} {small[jnp.float64]:>12.3f} {t_np / small[jnp.float64]:>6.1f} "
              f"{small[jnp.float32]:>12.3f} {t_np / small[jnp.float32]:>6.1f}")


if __name__ == "__main__":
    main()
