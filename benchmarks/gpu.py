"""One self-contained GPU run: correctness of float32 on the accelerator against a float64
CPU reference, then timings at the issue's sizes, a table (card first) and scaling fits.

Installs nothing; needs jax with CUDA. Runs in well under 10 minutes on an H100/H200:

    python benchmarks/gpu.py            # full run
    python benchmarks/gpu.py --quick    # tiny sizes (smoke test; works on CPU too)

Sections
1. check: seed two-cluster, T = 50, N = 8192, same key: float32 on the default device vs
   float64 on the CPU (max |eps_gen| difference, max relative q difference, M_R).
2. timings (float32, compile excluded, best of 3):
   - T = 512: ProbeResponse on N = 1e5 (all kernels on 1e5 trajectories) and, for the
     accuracy reference, ExactResponse(16384) on N = 1e5;
   - T = 1000, N = 1e5, ProbeResponse;
   - a 64-point vmapped grid (lam x b) at T = 200 vs 64 sequential solves of the same points.
3. scaling: time vs N (T fixed) and vs T (N fixed), least-squares exponents.
"""
from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402

PROBLEM = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)


def algo(T, t_max=20.0):
    return dj.PersistentSGD(t_max / T, 0.3, 1 / 0.6)


def timed(f, repeat=3):
    out = f()
    jax.block_until_ready(out)  # compile + first run
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f())
        best = min(best, time.perf_counter() - t0)
    return best, out


def solve32(T, N, resp, **kw):
    return lambda: dj.solve(PROBLEM, algo(T), n_steps=T, n_traj=N, response=resp, key=0,
                            dtype=jnp.float32, **kw).q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--probes", type=int, default=4, help="n_probes of ProbeResponse")
    args = ap.parse_args()
    q = args.quick
    dev = jax.devices()[0]
    print(f"card: {getattr(dev, 'device_kind', dev.platform)} ({dev.platform}, {len(jax.devices())} device(s)), "
          f"jax {jax.__version__}")

    # 1. correctness: float32 on the device vs float64 on the CPU
    T, N = (20, 1024) if q else (50, 8192)
    kw = dict(n_steps=T, n_traj=N, response=dj.ExactResponse(min(N, 2048)), key=0)
    dev32 = dj.solve(PROBLEM, algo(T), dtype=jnp.float32, **kw)
    with jax.default_device(jax.devices("cpu")[0]):
        cpu64 = dj.solve(PROBLEM, algo(T), dtype=jnp.float64, **kw)
    d_eps = float(np.max(np.abs(np.asarray(dev32.eps_gen, float) - np.asarray(cpu64.eps_gen))))
    d_q = float(np.max(np.abs(np.asarray(dev32.q, float) - np.asarray(cpu64.q)) / np.asarray(cpu64.q)))
    d_mr = float(np.max(np.abs(np.asarray(dev32.M_R, float) - np.asarray(cpu64.M_R))) / np.max(np.abs(cpu64.M_R)))
    ok = d_eps < 1e-3 and d_q < 5e-3
    print(f"\ncheck (T={T}, N={N}, same key): float32 device vs float64 CPU: max|d eps_gen| {d_eps:.2e}, "
          f"max rel d q {d_q:.2e}, max|d M_R|/max|M_R| {d_mr:.2e} -> {'OK' if ok else 'MISMATCH'}")

    # 2. timings
    N5 = 4096 if q else 100_000
    print(f"\n{'case':<48} {'time [s]':>9} {'target':>8}")
    rows = []
    for T, resp, target in (
        (64 if q else 512, dj.ProbeResponse(args.probes), "<= 1 s"),
        (64 if q else 512, dj.ExactResponse(512 if q else 16384), "(ref)"),
        (128 if q else 1000, dj.ProbeResponse(args.probes), "<= 5 s"),
    ):
        try:
            t, _ = timed(solve32(T, N5, resp))
        except (ValueError, RuntimeError) as e:  # e.g. does not fit in memory
            print(f"T={T}, N={N5}, {resp!r}: {type(e).__name__}: {str(e)[:120]}")
            continue
        rows.append((T, N5, resp, t))
        print(f"{f'T={T}, N={N5}, {resp!r}':<48} {t:>9.3f} {target:>8}", flush=True)

    # grid: 64 points vmapped vs sequential
    Tg, Ng = (20, 1024) if q else (200, 16384)
    grid = {"lam": np.linspace(0.0, 0.2, 8), "b": np.linspace(0.2, 0.6, 8)}
    resp = dj.ProbeResponse(args.probes)
    t_grid, _ = timed(lambda: dj.solve_grid(PROBLEM, algo(Tg), grid, n_steps=Tg, n_traj=Ng, response=resp,
                                            dtype=jnp.float32).q, repeat=1)
    points = [(lam, b) for lam in grid["lam"] for b in grid["b"]]

    def sequential():
        out = []
        for lam, b in points:
            p = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=lam, R0=0.01)
            out.append(dj.solve(p, dj.PersistentSGD(20.0 / Tg, b, 1 / 0.6), n_steps=Tg, n_traj=Ng,
                                response=resp, key=0, dtype=jnp.float32).q)
        return out

    t_seq, _ = timed(sequential, repeat=1)
    print(f"{f'64-point grid T={Tg}, N={Ng}: vmapped':<48} {t_grid:>9.3f}")
    print(f"{'  64 sequential solves':<48} {t_seq:>9.3f}   ratio {t_seq / t_grid:.1f}x (target >= 10x)")

    # 3. scaling exponents (ProbeResponse, float32)
    Ns = [2**10, 2**11, 2**12] if q else [2**14, 2**15, 2**16, 2**17]
    Ts = [32, 64] if q else [128, 256, 512, 1024]
    tN = [timed(solve32(Ts[0] if q else 256, n, resp))[0] for n in Ns]
    tT = [timed(solve32(t, Ns[0] if q else 2**15, resp))[0] for t in Ts]
    sN = np.polyfit(np.log(Ns), np.log(tN), 1)[0]
    sT = np.polyfit(np.log(Ts), np.log(tT), 1)[0]
    print(f"\nscaling (ProbeResponse({args.probes}), float32): time ~ N^{sN:.2f} "
          f"(T={Ts[0] if q else 256}; {', '.join(f'{n}: {t:.3f}s' for n, t in zip(Ns, tN))})")
    print(f"                                   time ~ T^{sT:.2f} "
          f"(N={Ns[0] if q else 2**15}; {', '.join(f'{t}: {x:.3f}s' for t, x in zip(Ts, tT))})")


if __name__ == "__main__":
    main()
