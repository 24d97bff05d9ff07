"""Time to first curve: what a user waits for, in one run.

Seed two-cluster setting (persistent SGD, T = 100, float64), two sizes. For each:

- cold first call: a fresh process with an empty cache folder, ``dj.solve`` once
  (trace, compile, solve), timed inside the process after ``import dmft_jax`` and
  ``dj.enable_compilation_cache`` (timed apart: "enable");
- warm first call: a fresh process (the median of three) with the cache the first one filled (JAX's compiled
  program and dmft-jax's trace cache: no tracing, no compiling);
- redraw: in the warm process, a second solve with new values of alpha, Delta, lam, b, tau,
  eta (no recompilation: parameters are data);
- new t_max / new n_traj: in the warm process, t_max = 21 (T = 105) and N - N/16 trajectories,
  in the shape buckets of T = 100 and N (the compilations of both are counted: 0 expected);
- solve after compile: the same solve again (median of 3);
- NumPy: benchmarks/numpy_baseline.py doing the same work (same N, N_chi, T): its first call,
  and the median of three more (steady state);
- whole process: ``dmft-jax solve`` (no options; N = 32768, with standard errors) twice
  with one cache folder, as a user runs it.

Ratios are against the NumPy baseline measured in the same run.

    python benchmarks/latency.py
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SIZES = ((4096, 256), (32768, 2048))

CHILD = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import dmft_jax as dj
t0 = time.perf_counter()
dj.enable_compilation_cache(sys.argv[3], min_compile_time_secs=0.0)
enable = time.perf_counter() - t0
n, n_chi = int(sys.argv[1]), int(sys.argv[2])
problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
resp = dj.ExactResponse(n_chi)
t0 = time.perf_counter()
dj.solve(problem, algo, 20.0, n, key=0, response=resp).m.block_until_ready()
first = time.perf_counter() - t0
other = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.5, delta=0.4, lam=0.01, R0=0.01)
t0 = time.perf_counter()
# eta changes the step size, not the number of steps: n_steps keeps T = 100
dj.solve(other, dj.PersistentSGD(0.19, 0.35, 1.5), n_steps=100, n_traj=n, key=0, response=resp).m.block_until_ready()
redraw = time.perf_counter() - t0
# shape buckets: T = 105 shares the bucket of T = 100 (112 steps), N - N/16 that of N
with dj.count_compilations() as c:
    t0 = time.perf_counter()
    dj.solve(problem, algo, 21.0, n, key=0, response=resp).m.block_until_ready()
    new_t = time.perf_counter() - t0
    t0 = time.perf_counter()
    dj.solve(problem, algo, 20.0, n - n // 16, key=0, response=resp).m.block_until_ready()
    new_n = time.perf_counter() - t0
again = []
for k in range(1, 4):
    t0 = time.perf_counter()
    dj.solve(problem, algo, 20.0, n, key=k, response=resp).m.block_until_ready()
    again.append(time.perf_counter() - t0)
print(json.dumps(dict(enable=enable, first=first, redraw=redraw, new_t=new_t, new_n=new_n, compiles=c.count,
                      again=sorted(again)[1])))
"""


def child(n, n_chi, cache):
    out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(n_chi), cache], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def numpy_time(n, n_chi):
    sys.path.insert(0, HERE)
    from numpy_baseline import solve_numpy

    t0 = time.perf_counter()
    solve_numpy(2.0, 0.5, 0.0, 0.01, 0.5, 0.2, 0.3, 1 / 0.6, 100, n, n_chi, seed=0)
    return time.perf_counter() - t0


def whole_process(cache):
    times = []
    env = dict(os.environ, DMFT_JAX_CACHE_DIR=cache)
    for i in range(2):
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            subprocess.run(["dmft-jax", "solve", "--out", out], env=env, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
    return times


def main():
    import jax

    print(f"# latency: {platform.machine()} CPU x{os.cpu_count()}, jax {jax.__version__}, float64, seed two-cluster "
          "PSGD, T = 100")
    print("| N | N_chi | NumPy | NumPy, steady | enable (warm) | cold first call | warm first call (cache) | redraw (new parameters) | "
          "new t_max (T = 105) | new n_traj (N - N/16) | compiles for both | solve after compile | cold / NumPy | "
          "warm / after compile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, n_chi in SIZES:
        with tempfile.TemporaryDirectory() as cache:
            cold = child(n, n_chi, cache)
            # three warm processes (this machine's timings vary by 30% run to run): the median
            # by warm first call / solve after compile
            warm = sorted((child(n, n_chi, cache) for _ in range(3)), key=lambda w: w["first"] / w["again"])[1]
        # NumPy's one-off curve (its first call in this process, as before), and its steady
        # state (the median of three more calls), which is up to 2x faster
        base = numpy_time(n, n_chi)
        steady = sorted(numpy_time(n, n_chi) for _ in range(3))[1]
        print(f"| {n} | {n_chi} | {base:.2f} s | {steady:.2f} s | {warm['enable']:.2f} s | {cold['first']:.2f} s | {warm['first']:.2f} s | "
              f"{warm['redraw']:.3f} s | {warm['new_t']:.3f} s | {warm['new_n']:.3f} s | {warm['compiles']} | "
              f"{warm['again']:.3f} s | {cold['first'] / base:.2f}x | "
              f"{warm['first'] / warm['again']:.2f}x |")
    with tempfile.TemporaryDirectory() as cache:
        first, second = whole_process(cache)
    print(f"\n`dmft-jax solve` as a whole process (N = 32768, standard errors from 16 replicas): first run "
          f"{first:.1f} s (empty cache), second run {second:.1f} s (cache filled)")


if __name__ == "__main__":
    main()
