"""The single-unit gradient through SweepAdjoint split into its halves, for comparing two
revisions where whole-gradient timings are too noisy (issue 24): XLA's cost analysis of the
compiled forward-with-residuals, backward and whole-gradient programs (deterministic), and
with ``--time`` the best of 4 calls of each and of a plain solve. Seed two-cluster setting,
persistent SGD, T = 100, float64, the exact response on min(N, 4096) trajectories.

    python benchmarks/adjoint_split.py [--n 4096] [--time]
    PYTHONPATH=/path/to/a/worktree/of/398278a python benchmarks/adjoint_split.py   # the base

(run it from outside the repository when PYTHONPATH names another tree, so that the tree on
PYTHONPATH is the one imported). Prints one JSON line.
"""
import argparse
import json
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import dmft_jax as dj  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--time", action="store_true", help="also time each program (best of 4 calls)")
    args = ap.parse_args()
    P = lambda lam: dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=lam, R0=0.01)
    A = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    kw = dict(t_max=20.0, n_traj=args.n, key=0, response=dj.ExactResponse(min(args.n, 4096)))
    f = lambda lam: dj.solve(P(lam), A, adjoint=dj.SweepAdjoint(), **kw).eps_gen[-1]
    fwd = jax.jit(lambda lam: jax.vjp(f, lam))
    y, vjp = fwd(0.01)
    bwd = jax.jit(lambda v, ct: v(ct))
    grad = jax.jit(jax.grad(f))

    def cost(fn, *a):
        c = fn.lower(*a).compile().cost_analysis()
        c = c[0] if isinstance(c, list) else c
        return {k: c.get(k) for k in ("flops", "bytes accessed")}

    out = {"dmft_jax": dj.__file__, "cost": {"fwd": cost(fwd, 0.01), "bwd": cost(bwd, vjp, jnp.ones_like(y)),
                                             "grad": cost(grad, 0.01)}}
    if args.time:
        def best(fn):
            jax.block_until_ready(fn())
            b = float("inf")
            for _ in range(4):
                t0 = time.perf_counter()
                jax.block_until_ready(fn())
                b = min(b, time.perf_counter() - t0)
            return b

        out["seconds"] = dict(fwd=best(lambda: fwd(0.01)), bwd=best(lambda: bwd(vjp, jnp.ones_like(y))),
                              grad=best(lambda: grad(0.01)), solve=best(lambda: dj.solve(P(0.01), A, **kw).eps_gen))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
