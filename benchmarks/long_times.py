"""Long horizons (issue 25): the cost of a compressed history against the full one, and its
accuracy against the exact scheme and against exact answers.

Prints three tables (all float64, the seed setting: two clusters, rho = 0.5, alpha = 2,
Delta = 0.5, lam = 0, R0 = 0.01, persistent SGD eta = 0.2, b = 0.3, tau = 1/0.6,
ProbeResponse(4)):

1. cost: wall time of a solve (second call, compile excluded; the first call's compile
   given apart) for T = 1000 ... 20000 steps with ``CompressedHistory()`` and, as the
   baseline in the same run, the full history up to ``--full-max`` steps; ms per step and
   the log-log slope of the time against T;
2. accuracy against the full history at T = 1000 and 2000 on the same keys: the largest
   difference of eps_gen and the largest relative difference of q, beside eps_gen's standard
   error (GroupErrors(16) of the full solve) and the embedded pair's own estimate;
3. exact answers at long times: GD on ridge regression (TeacherRegression(0.5), squared
   error, alpha = 2, lam = 0.1 and 0) against dmft_jax.ridge_gd up to t = --ridge-t;
4. the issue's target size: T = 5000 steps (t = 1000), N = 16384, the default compressed
   history with its error estimate;
5. with ``--gradient``: jax.grad of eps_gen(T) in lam against the forward solve at T = 5000;
   with ``--erm``: GD with ridge (lam = 0.1, 0.05) at T = 5000 against the ERM fixed point;
6. with ``--moonshot`` (alone, in its own process, for its peak memory): T = 50000 (t = 10^4),
   N = 16384.

    python benchmarks/long_times.py                       # N = 4096, T up to 20000
    python benchmarks/long_times.py --n-traj 2048 --full-max 1000 --steps 500 1000 2000 5000 10000 20000 \
        --ridge-n 2048 --gradient --erm                   # the committed run
    python benchmarks/long_times.py --moonshot            # T = 50000, N = 16384: time and peak memory
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402

PROBLEM = dj.Problem(model=dj.TwoCluster(rho=0.5), loss=dj.Logistic(), alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
ALGO = dj.PersistentSGD(eta=0.2, b=0.3, tau=1 / 0.6)


def timed(history, T, N, key=0, errors=None, problem=PROBLEM, algo=ALGO, twice=True):
    """(solution, seconds of the second call, seconds of the first call)."""
    kw = dict(n_steps=T, n_traj=N, key=key, response=dj.ProbeResponse(4), progress_meter=dj.NoProgressMeter(),
              solver=dj.CausalSweep(buckets=False, history=history), errors=errors)
    t0 = time.perf_counter()
    sol = dj.solve(problem, algo, **kw)
    jax.block_until_ready(sol.q)
    first = time.perf_counter() - t0
    if not twice:
        return sol, first, first
    t0 = time.perf_counter()
    sol = dj.solve(problem, algo, **kw)
    jax.block_until_ready(sol.q)
    return sol, time.perf_counter() - t0, first


def cost(args):
    print(f"## cost (N = {args.n_traj}, ProbeResponse(4), float64; {platform.machine()} CPU x{os.cpu_count()}, "
          f"jax {jax.__version__})\n")
    print("| history | T | t | solve s | ms / step | first call s | slope vs previous |")
    print("|---|---|---|---|---|---|---|")
    for name, history, steps in (("full", dj.FullHistory(), [T for T in args.steps if T <= args.full_max]),
                                 ("compressed", dj.CompressedHistory(estimate=False), args.steps)):
        prev = None
        for T in steps:
            _, sec, first = timed(history, T, args.n_traj)
            slope = "" if prev is None else f"{np.log(sec / prev[1]) / np.log(T / prev[0]):.2f}"
            print(f"| {name} | {T} | {T * 0.2:g} | {sec:.1f} | {1e3 * sec / T:.2f} | {first:.1f} | {slope} |",
                  flush=True)
            prev = (T, sec)
    print()


def accuracy(args):
    print(f"## against the full history, same keys (N = {args.n_traj})\n")
    print("| T | max abs d eps_gen | eps_gen se (full, GroupErrors(16)) | max rel d q | embedded estimate eps_gen / q "
          "| full s | compressed s |")
    print("|---|---|---|---|---|---|---|")
    for T in args.accuracy_steps:
        ref, t_full, _ = timed(dj.FullHistory(), T, args.n_traj, errors=dj.GroupErrors(16), twice=False)
        sol, t_comp, _ = timed(dj.CompressedHistory(), T, args.n_traj, twice=False)
        de = np.max(np.abs(np.asarray(sol.eps_gen) - np.asarray(ref.eps_gen)))
        dq = np.max(np.abs(np.asarray(sol.q) - np.asarray(ref.q)) / np.abs(np.asarray(ref.q)))
        se = float(np.max(np.asarray(ref.eps_gen_se)))
        est = f"{float(sol.stats['history_error']):.1e} / {float(sol.stats['history_error_q']):.1e}"
        print(f"| {T} | {de:.1e} | {se:.1e} | {dq:.1e} | {est} | {t_full:.0f} | {t_comp:.0f} |", flush=True)
    print()


def ridge(args):
    print(f"## GD on ridge regression against the exact solution (N = {args.ridge_n}, CompressedHistory(), "
          f"GroupErrors(16), t up to {args.ridge_t:g})\n")
    print("| lam | T | max abs d m | max d m / se | max rel d q | max d q / se | max abs d eps_gen | max d eps / se "
          "| result | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    algo = dj.GD(0.2)
    T = int(round(args.ridge_t / 0.2))
    for lam in (0.1, 0.0):
        problem = dj.Problem(dj.TeacherRegression(0.5), "squared_error", alpha=2.0, lam=lam, R0=1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sol, sec, _ = timed(dj.CompressedHistory(), T, args.ridge_n, key=1, errors=dj.GroupErrors(16),
                                problem=problem, algo=algo, twice=False)
        exact = dj.ridge_gd(problem, algo, n_steps=T)
        row = [f"{lam:g}", str(T)]
        for name in ("m", "q", "eps_gen"):
            x, se = np.asarray(getattr(sol, name)), np.asarray(getattr(sol, name + "_se"))
            d = np.abs(x - getattr(exact, name))
            scale = np.abs(getattr(exact, name)) if name == "q" else 1.0
            row += [f"{np.max(d / scale):.1e}", f"{np.max(d[1:] / se[1:]):.1f}"]
        print("| " + " | ".join(row) + f" | {sol.result} | {sec:.0f} |", flush=True)
    print()


def target(args):
    print(f"## the issue's target: T = {args.target_steps}, N = {args.target_n}, CompressedHistory() with its error "
          "estimate, float64\n")
    sol, sec, first = timed(dj.CompressedHistory(), args.target_steps, args.target_n)
    print(f"solve {sec:.1f} s (second call; first call {first:.1f} s), {1e3 * sec / args.target_steps:.2f} ms / step, "
          f"history_error {float(sol.stats['history_error']):.1e}, result {sol.result}\n", flush=True)


def erm_long(args):
    """Full-batch GD with ridge on two clusters run to t = 0.2 T against the ERM fixed point
    (dmft_jax.erm): GD on a strongly convex loss converges to the minimiser."""
    T, N = args.target_steps, args.erm_n
    print(f"## GD with ridge at t = {0.2 * T:g} against the ERM (two clusters, rho = 0.5, alpha = 2, Delta = 0.5, "
          f"logistic, eta = 0.2, N = {N}, CompressedHistory(), GroupErrors(16))\n")
    print("| lam | eps_gen(T) | ERM eps_gen | d eps_gen | eps_gen se | rel d q | rel d m | history_error | s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for lam in (0.1, 0.05):
        problem = dj.Problem(dj.TwoCluster(rho=0.5), dj.Logistic(), alpha=2.0, delta=0.5, lam=lam, R0=0.01)
        sol, sec, _ = timed(dj.CompressedHistory(), T, N, errors=dj.GroupErrors(16), problem=problem, algo=dj.GD(0.2),
                            twice=False)
        ref = dj.erm(problem)
        eps, se = float(sol.eps_gen[-1]), float(sol.eps_gen_se[-1])
        print(f"| {lam:g} | {eps:.5f} | {float(ref.eps_gen):.5f} | {eps - float(ref.eps_gen):+.1e} | {se:.1e} | "
              f"{float(sol.q[-1]) / float(ref.q) - 1:+.1e} | {float(sol.m[-1]) / float(ref.m) - 1:+.1e} | "
              f"{float(sol.stats['history_error']):.1e} | {sec:.0f} |", flush=True)
    print()


def peak_rss_gb() -> float:
    """The process's peak resident memory so far (GB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def gradient(args):
    """jax.grad of eps_gen(T) in lam through a compressed solve (checkpointed reverse mode),
    against the forward solve, same size and keys."""
    T, N = args.target_steps, args.gradient_n
    print(f"## gradient: jax.grad of eps_gen(T) in lam, T = {T}, N = {N}, CompressedHistory(estimate=False)\n")
    kw = dict(n_steps=T, n_traj=N, key=0, response=dj.ProbeResponse(4), progress_meter=dj.NoProgressMeter(),
              solver=dj.CausalSweep(buckets=False, history=dj.CompressedHistory(estimate=False)))
    f = lambda lam: dj.solve(eqx.tree_at(lambda p: p.lam, PROBLEM, lam), ALGO, **kw).eps_gen[-1]
    lam = jnp.asarray(0.01)
    times = {}
    for name, fn in (("forward", jax.jit(f)), ("gradient", jax.jit(jax.grad(f)))):
        jax.block_until_ready(fn(lam))  # compile
        t0 = time.perf_counter()
        jax.block_until_ready(fn(lam))
        times[name] = time.perf_counter() - t0
    print("| forward s | gradient s | ratio |\n|---|---|---|")
    print(f"| {times['forward']:.1f} | {times['gradient']:.1f} | {times['gradient'] / times['forward']:.2f} |\n",
          flush=True)


def moonshot(args):
    """The issue's moonshot: T = 50000 (t = 10^4), N = 16384, in a process of its own (its peak
    memory is the process's)."""
    T, N = args.moonshot_steps, args.target_n
    print(f"## moonshot: T = {T} (t = {0.2 * T:g}), N = {N}, CompressedHistory() with its error estimate\n")
    sol, sec, _ = timed(dj.CompressedHistory(), T, N, twice=False)
    print(f"solve {sec:.1f} s (first call, compile included), {1e3 * sec / T:.2f} ms / step, peak memory "
          f"{peak_rss_gb():.2f} GB, history_error {float(sol.stats['history_error']):.1e}, result {sol.result}\n",
          flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-traj", type=int, default=4096)
    p.add_argument("--steps", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    p.add_argument("--full-max", type=int, default=2000, help="the largest T solved with the full history")
    p.add_argument("--accuracy-steps", type=int, nargs="+", default=[1000, 2000])
    p.add_argument("--ridge-n", type=int, default=4096)
    p.add_argument("--ridge-t", type=float, default=1000.0)
    p.add_argument("--skip-cost", action="store_true")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-ridge", action="store_true")
    p.add_argument("--target-steps", type=int, default=5000)
    p.add_argument("--target-n", type=int, default=16384)
    p.add_argument("--skip-target", action="store_true")
    p.add_argument("--gradient", action="store_true", help="jax.grad against the forward solve at --target-steps")
    p.add_argument("--gradient-n", type=int, default=4096)
    p.add_argument("--erm", action="store_true", help="GD with ridge at t = 0.2 --target-steps against dmft_jax.erm")
    p.add_argument("--erm-n", type=int, default=16384)
    p.add_argument("--moonshot", action="store_true", help="only the moonshot size (run it alone: peak memory)")
    p.add_argument("--moonshot-steps", type=int, default=50000)
    args = p.parse_args()
    if args.moonshot:
        moonshot(args)
        return
    print("# long horizons: benchmarks/long_times.py\n")
    if not args.skip_cost:
        cost(args)
    if not args.skip_accuracy:
        accuracy(args)
    if not args.skip_ridge:
        ridge(args)
    if not args.skip_target:
        target(args)
    if args.gradient:
        gradient(args)
    if args.erm:
        erm_long(args)


if __name__ == "__main__":
    main()
