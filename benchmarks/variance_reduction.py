"""Variance reduction for the DMFT's Monte Carlo: does stratified sampling of the
per-trajectory draws buy accuracy at equal wall time?

Variants of the draws (the solver and its cost are unchanged; the draws take well under 1%
of a solve, so equal N is equal wall time; the table also times them):

- ``iid``: the estimator before moment matching (independent draws, antithetic pairs;
  ``moment_matching=False``);
- ``lhs``: Latin-hypercube (stratified) draws of the teacher-direction noise ``h0`` and the
  initial field ``u0``: the i-th of N values is ``Phi^-1((pi_i + U_i) / N)`` for a random
  permutation ``pi`` (exact marginal, stratified sample);
- ``strat-c``: exact cluster proportions (two clusters, rho = 1/2: N/2 of each sign,
  randomly placed) instead of independent coin flips;
- ``lhs+strat-c``: both;
- ``moments``: moment matching of the Gaussian draws (the library's default since this
  measurement, ``moment_matching=True``): each step's row of ``zeta`` (the noise of the
  effective process), ``u0`` and ``h0`` rescaled to mean square exactly 1 over the
  trajectories (their means are already exactly 0 by the antithetic pairs).

Measured on the seed two-cluster setting at T = 100 (t = 20): the mean-squared error over
``--keys`` keys of ``eps_gen`` and ``q`` at t = 5 and t = 20 against a reference solve of
``--ref-n`` trajectories (iid, its own key), with a bootstrap 1-sigma range of the MSE ratio.
The stratified variants are patched into ``dmft_jax._engine.process.draw`` for this benchmark only
(they did not pay: benchmarks/results/variance_reduction_cpu2.txt).

    python benchmarks/variance_reduction.py [--keys 48] [--n 2048 8192] [--ref-n 262144] [--plot chart.png]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.scipy.special import ndtri  # noqa: E402

import dmft_jax as dj  # noqa: E402
from dmft_jax._engine import process  # noqa: E402

PROBLEM = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
ALGO = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
IID_DRAW = process.draw
STEPS = (25, 100)


def _lhs_normal(key, like):
    """Stratified standard normals shaped like ``like`` (one value per stratum)."""
    n = like.shape[-1]
    k1, k2 = jax.random.split(key)
    u = (jax.random.permutation(k1, n) + jax.random.uniform(k2, (n,), jnp.float32)) / n
    return ndtri(jnp.clip(u, 1e-7, 1 - 1e-7)).astype(like.dtype)


def patched_draw(lhs: bool, strat_c: bool):
    def draw(key, problem, algorithm, n_steps, n_traj, antithetic, dtype, moment_matching=False):
        r = IID_DRAW(key, problem, algorithm, n_steps, n_traj, antithetic, dtype, moment_matching)
        base = slice(0, None, 2) if antithetic else slice(None)
        pair = (lambda a: jnp.repeat(a, 2, axis=-1)) if antithetic else (lambda a: a)
        mirror = (lambda a: jnp.stack([a, -a], axis=-1).reshape(-1)) if antithetic else (lambda a: a)
        k = jax.random.fold_in(key, 0x57A7)
        kh, ku, kc = jax.random.split(k, 3)
        new = {}
        if lhs:
            new["h0"] = pair(_lhs_normal(kh, r.h0[base]))
            new["u0"] = mirror(_lhs_normal(ku, r.u0[base]))
        if strat_c:
            n = r.c[base].shape[-1]
            c = jnp.where(jax.random.permutation(kc, n) < n // 2, 1.0, -1.0).astype(r.c.dtype)
            new["c"] = new["y"] = pair(c)
        for name, value in new.items():
            r = eqx_replace(r, name, value)
        return r

    return draw


def eqx_replace(r, name, value):
    import equinox as eqx

    return eqx.tree_at(lambda x: getattr(x, name), r, value)


# (lhs, strat-c, moment matching); "moments" is the library's moment_matching=True (default)
VARIANTS = {"iid": (False, False, False), "lhs": (True, False, False), "strat-c": (False, True, False),
            "lhs+strat-c": (True, True, False), "moments": (False, False, True)}


def run(variant, keys, n):
    lhs, strat_c, mm = VARIANTS[variant]
    process.draw = patched_draw(lhs, strat_c) if lhs or strat_c else IID_DRAW
    jax.clear_caches()
    dj.solve(PROBLEM, ALGO, 20.0, n, key=0, trajectories=dj.Trajectories(moment_matching=mm)).m.block_until_ready()
    out, times = [], []
    for k in keys:
        t0 = time.perf_counter()
        s = dj.solve(PROBLEM, ALGO, 20.0, n, key=k, trajectories=dj.Trajectories(moment_matching=mm))
        s.m.block_until_ready()
        times.append(time.perf_counter() - t0)
        out.append([np.asarray(s.eps_gen)[list(STEPS)], np.asarray(s.q)[list(STEPS)]])
    return np.array(out), float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=48)
    ap.add_argument("--n", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--ref-n", type=int, default=262144)
    ap.add_argument("--plot", default=None, help="write the work-precision chart here (PNG)")
    args = ap.parse_args()
    print(f"# variance_reduction: {platform.machine()} CPU x{os.cpu_count()}, jax {jax.__version__}, float64; seed "
          f"two-cluster PSGD, T = 100; N = {args.n}, keys = {args.keys}, reference N = {args.ref_n} (iid)")
    ref = dj.solve(PROBLEM, ALGO, 20.0, args.ref_n, key=10**6, trajectories=dj.Trajectories(moment_matching=False))
    r = np.array([np.asarray(ref.eps_gen)[list(STEPS)], np.asarray(ref.q)[list(STEPS)]])
    keys = range(1, args.keys + 1)
    rng = np.random.default_rng(0)
    labels = ("eps_gen t=5", "eps_gen t=20", "q t=5", "q t=20")
    chart = {}
    for n in args.n:
        results = {v: run(v, keys, n) for v in VARIANTS}
        process.draw = IID_DRAW
        base_sq = (results["iid"][0] - r) ** 2
        print(f"\n## N = {n}: MSE ratio iid / variant (paired bootstrap 16-84%), same keys")
        print("| variant | solve (median) | " + " | ".join(labels) + " |")
        print("|---|---|" + "---|" * len(labels))
        for v, (vals, t_solve) in results.items():
            sq = (vals - r) ** 2
            chart.setdefault(v, []).append((t_solve, np.sqrt(sq.mean(axis=0))))
            cells = []
            for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
                ratio = base_sq[:, i, j].mean() / sq[:, i, j].mean()
                boot = []
                for _ in range(400):
                    idx = rng.integers(0, len(keys), len(keys))
                    boot.append(base_sq[idx, i, j].mean() / sq[idx, i, j].mean())
                cells.append(f"{ratio:.2f} ({np.percentile(boot, 16):.2f}-{np.percentile(boot, 84):.2f})")
            print(f"| {v} | {t_solve:.3f} s | " + " | ".join(cells) + " |")
    print("(every MSE includes the reference's own, about N / ref N of the iid MSE)")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), constrained_layout=True)
        for a, lab in enumerate(labels):
            for v, pts in chart.items():
                axes[a].loglog([p[0] for p in pts], [p[1][a // 2, a % 2] for p in pts], "o-", label=v)
            axes[a].set_title(f"RMS error of {lab}")
            axes[a].set_xlabel("wall time of a solve (s)")
        axes[0].legend()
        fig.savefig(args.plot, dpi=110)
        print(f"chart: {args.plot}")


if __name__ == "__main__":
    main()
