"""Wall time of the main command and of a finite-d simulation of the same curve.

- ``dmft-jax solve`` with no options (seed two-cluster setting, T = 100, N = 32768,
  float64), timed as a whole process (import, compile, solve, files, plot);
- ``dj.simulate`` of the same setting at d = 2000 with 10 seeds (T = 100), first call
  (with compile) and a second call.

    python benchmarks/wall_times.py
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)
import dmft_jax as dj  # noqa: E402


def main():
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
          f"({jax.devices()[0].platform})\n")
    rows = []
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dmft_jax", "solve", "--out", out], check=True,
                       stdout=subprocess.DEVNULL)
        rows.append(("dmft-jax solve (default, whole process)", time.perf_counter() - t0))
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", 2.0, 0.5, 0.0, 0.01)
    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    for label in ("simulate d=2000, 10 seeds, T=100 (first call)", "simulate d=2000, 10 seeds, T=100 (again)"):
        t0 = time.perf_counter()
        dj.simulate(problem, algo, t_max=20.0, d=2000, n_seeds=10, key=1).m.block_until_ready()
        rows.append((label, time.perf_counter() - t0))
    width = max(len(r[0]) for r in rows)
    print(f"{'job':<{width}}  wall [s]")
    for name, t in rows:
        print(f"{name:<{width}}  {t:8.1f}")


if __name__ == "__main__":
    main()
