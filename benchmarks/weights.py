"""The weight side (docs/equations.md, sections 2.4 and 6.2) at K = 1: the block recursion that
serves every K (``dmft_jax._engine.weights``) against the former single-unit recursion on (S, S) arrays,
written out below as the baseline (it is no longer in the package). Prints, per number of
times S: forward and gradient wall time (jit, median of 5 after compile, momentum and Langevin
terms on), their ratios, and the largest relative difference of C_perp and of the gradients.

    python benchmarks/weights.py
"""
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

jax.config.update("jax_enable_x64", True)
from dmft_jax._engine import weights  # noqa: E402


def former_response(lam, lam_hat, M_R, dts, beta):
    size = lam_hat.shape[0]
    eye = jnp.eye(size, dtype=lam_hat.dtype)
    R0 = jnp.zeros((size, size + 1), lam_hat.dtype).at[0, size].set(1.0)

    def body(R, k):
        dt = dts[k]
        row = (1.0 - dt * (lam + lam_hat[k])) * R[k] + dt * ((M_R[k] * dts) @ R)
        row = row + beta * (R[k] - R[jnp.maximum(k - 1, 0)])
        return R.at[k + 1].set(row + jnp.concatenate([eye[k], jnp.zeros((1,), lam_hat.dtype)])), None

    R, _ = lax.scan(body, R0, jnp.arange(size - 1))
    return R[:, :size], R[:, size]


def former_correlation(R, P, M_C, R0, dts, temperature):
    M = jnp.tril(M_C) + jnp.tril(M_C, -1).T
    Rw = R * dts[None, :]
    return R0 * jnp.outer(P, P) + Rw @ M @ Rw.T + 2.0 * temperature * (Rw @ R.T)


def median_time(f, *args, reps=5):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    print(f"## Weight side at K = 1: block recursion (dmft_jax._engine.weights) vs the former scalar one; float64, "
          f"{platform.machine()} CPU, {jax.local_device_count()} device(s)")
    print("| S | forward new | forward former | ratio | gradient new | gradient former | ratio | max rel. diff |")
    print("|---|---|---|---|---|---|---|---|")
    for S in (101, 401, 801):
        rng = np.random.default_rng(0)
        lam_hat = jnp.asarray(rng.uniform(0, 1, S))
        M_R = jnp.asarray(np.tril(rng.normal(size=(S, S)) * 0.01, -1))
        M_C = jnp.asarray(np.tril(rng.normal(size=(S, S)) * 0.1))
        dts = jnp.full(S, 0.2)
        new = lambda lam, h, mr, mc: weights.correlation(*weights.response(lam, h, mr, dts, 0.3), mc, 0.01, dts, 0.05)
        old = lambda lam, h, mr, mc: former_correlation(*former_response(lam, h, mr, dts, 0.3), mc, 0.01, dts, 0.05)
        args = (0.1, lam_hat, M_R, M_C)
        out = {}
        for name, f in (("new", new), ("old", old)):
            fwd = jax.jit(f)
            grad = jax.jit(jax.grad(lambda *a, f=f: jnp.sum(f(*a) ** 2), argnums=(0, 1, 2, 3)))
            out[name] = (median_time(fwd, *args), median_time(grad, *args), fwd(*args), grad(*args))
        rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
        diff = max([rel(out["new"][2], out["old"][2])] + [rel(a, b) for a, b in zip(out["new"][3], out["old"][3])])
        (fn, gn, _, _), (fo, go, _, _) = out["new"], out["old"]
        print(f"| {S} | {fn * 1e3:.1f} ms | {fo * 1e3:.1f} ms | {fn / fo:.2f} | {gn * 1e3:.1f} ms | {go * 1e3:.1f} ms "
              f"| {gn / go:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
