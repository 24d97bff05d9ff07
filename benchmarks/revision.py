"""The single-unit solve and its gradient against an earlier revision, measured in the same run.

The structural work of issue 24 (one engine for every K, update rules as strategies, one
solve and one Solution) must keep a single unit's speed: this checks out ``--base`` (default
398278a, the last revision with the single-unit engine of its own) into a temporary git
worktree and times, in fresh processes taking turns (base, this tree, base, ...), the seed
two-cluster setting at T = 100 steps (t_max = 20, eta = 0.2, persistent SGD b = 0.3, 1/tau = 0.6):

- ``solve``: ``dj.solve`` with the exact response on min(N, 4096) trajectories;
- ``grad``: ``jax.grad`` of the final eps_gen in ``lam`` through the hand-written adjoint
  (``SweepAdjoint``), the route ``dj.tune`` takes;
- ``grad_ad`` (with ``--autodiff``): the same through JAX's own reverse mode
  (``AutodiffAdjoint``; minutes to compile and about 7 GB at N = 4096).

Each process compiles first (not timed) and reports the best of ``--repeat`` calls; the table
gives the best over ``--rounds`` processes per tree and the ratio this tree / base. Usage:

    python benchmarks/revision.py [--base REV] [--sizes 4096 16384] [--rounds 3] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKER = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import dmft_jax as dj
N, repeat, autodiff = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
P = lambda lam: dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=lam, R0=0.01)
A = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
kw = dict(t_max=20.0, n_traj=N, key=0, response=dj.ExactResponse(min(N, 4096)))
runs = {
    "solve": lambda: dj.solve(P(0.01), A, **kw).eps_gen.block_until_ready(),
    "grad": jax.jit(jax.grad(lambda lam: dj.solve(P(lam), A, adjoint=dj.SweepAdjoint(), **kw).eps_gen[-1])),
}
if autodiff:  # JAX's own reverse mode of the rolled sweep: minutes to compile, GBs of memory
    runs["grad_ad"] = jax.jit(jax.grad(lambda lam: dj.solve(P(lam), A, **kw).eps_gen[-1]))
out = {}
for name, fn in runs.items():
    call = (lambda fn=fn: fn()) if name == "solve" else (lambda fn=fn: fn(0.01).block_until_ready())
    call()  # compile
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter(); call(); best = min(best, time.perf_counter() - t0)
    out[name] = best
print(json.dumps(out))
"""


def run(tree: str, n: int, repeat: int, autodiff: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    env.pop("DMFT_JAX_CACHE_DIR", None)
    done = subprocess.run([sys.executable, "-c", WORKER, str(n), str(repeat), "1" if autodiff else "0"], capture_output=True, text=True,
                          env=env, cwd=tempfile.gettempdir(), timeout=3600)
    if done.returncode:
        raise SystemExit(f"the worker failed in {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="398278a")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--autodiff", action="store_true", help="also JAX's own reverse mode (slow to compile, ~7 GB)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="dmft-base-")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", base, args.base], check=True,
                   capture_output=True)
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    try:
        print(f"# single unit, this tree ({head}, uncommitted changes included) against {args.base}; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, float64, T = 100")
        print("| N | quantity | base (s) | this tree (s) | this / base |")
        print("|---|---|---|---|---|")
        for n in args.sizes:
            best = {"base": {}, "new": {}}
            for _ in range(args.rounds):  # the trees take turns
                for label, tree in (("base", base), ("new", ROOT)):
                    for k, v in run(tree, n, args.repeat, args.autodiff).items():
                        best[label][k] = min(best[label].get(k, float("inf")), v)
            for k in best["base"]:
                b, t = best["base"][k], best["new"][k]
                print(f"| {n} | {k} | {b:.3f} | {t:.3f} | {t / b:.2f} |", flush=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base], capture_output=True)


if __name__ == "__main__":
    main()
