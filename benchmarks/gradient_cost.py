"""Cost of one gradient (all continuous hyperparameters at once, reverse mode) against
one forward solve at the same N, T. Seed two-cluster setting, persistent SGD.

Times are the best of ``--repeat`` rounds in which the forward solve and the adjoint
gradient take turns (the plain reverse mode, a slow reference, is the best of two).

Columns: plain JAX reverse mode through the sweep (``adjoint=dj.AutodiffAdjoint()``) and the
hand-written adjoint (``adjoint=dj.SweepAdjoint()``, dmft_jax/adjoint.py); both give the same gradient
to rounding (checked here too).

    python benchmarks/gradient_cost.py [--sizes 4096:1024:50 16384:1024:100]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import jax

jax.config.update("jax_enable_x64", True)
import equinox as eqx  # noqa: E402

import dmft_jax as dj  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _timing import best_interleaved, timed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["4096:1024:50", "16384:1024:100"],
                    help="N:N_chi:T triples")
    ap.add_argument("--repeat", type=int, default=7, help="rounds of forward and adjoint timings (best of)")
    args = ap.parse_args()
    base = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} ({jax.devices()[0].platform}), float64")
    print("gradient of eps_gen(T) w.r.t. (lam, R0, alpha, delta, eta, b, tau) in one reverse pass\n")
    print(f"{'N':>6} {'N_chi':>6} {'T':>4} {'forward [s]':>12} {'autodiff [s]':>13} {'ratio':>6} "
          f"{'adjoint [s]':>12} {'ratio':>6} {'max rel diff':>13}")
    for spec in args.sizes:
        N, n_chi, T = (int(x) for x in spec.split(":"))

        def objective(x, adjoint=False):
            p = eqx.tree_at(lambda p: (p.lam, p.R0, p.alpha, p.delta), base, (x["lam"], x["R0"], x["alpha"], x["delta"]))
            a = dj.PersistentSGD(x["eta"], x["b"], x["tau"])
            return dj.solve(p, a, n_steps=T, n_traj=N, response=dj.ExactResponse(n_chi), key=0,
                            adjoint=dj.SweepAdjoint() if adjoint else dj.AutodiffAdjoint()).eps_gen[-1]

        x0 = dict(lam=0.05, R0=0.01, alpha=2.0, delta=0.5, eta=0.2, b=0.3, tau=1 / 0.6)
        fwd = eqx.filter_jit(objective)
        vg = eqx.filter_jit(jax.value_and_grad(objective))
        va = eqx.filter_jit(jax.value_and_grad(lambda x: objective(x, True)))
        jax.block_until_ready(fwd(x0))
        g_plain = jax.block_until_ready(vg(x0))[1]
        g_adj = jax.block_until_ready(va(x0))[1]
        diff = max(abs(float(g_plain[k] - g_adj[k])) / max(abs(float(g_plain[k])), 1e-12) for k in x0)
        t = best_interleaved({"forward": lambda: fwd(x0), "adjoint": lambda: va(x0)}, args.repeat)
        tf, ta = t["forward"], t["adjoint"]
        tg = min(timed(lambda: vg(x0)) for _ in range(2))  # the slow reference: two runs
        print(f"{N:>6} {n_chi:>6} {T:>4} {tf:>12.3f} {tg:>13.3f} {tg / tf:>6.2f} {ta:>12.3f} {ta / tf:>6.2f} "
              f"{diff:>13.1e}", flush=True)


if __name__ == "__main__":
    main()
