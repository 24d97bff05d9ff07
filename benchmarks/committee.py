"""Committee machines: the K x K block DMFT against finite-d simulations, what the cross-unit
memory does, and what K costs.

Agreement: for each setting, simulations at d = 1000, 2000, 4000 (``--seeds`` each) are fitted
by ``A + B/d`` (weighted least squares); the DMFT (the mean of ``--keys`` independent solves of
``--n-traj`` trajectories, whose spread gives its own standard error) is compared with ``A`` at
t = T/4, T/2, T on ``m_a``, ``Q_aa``, ``Q_ab``, the test error and the training loss:
``z = (DMFT - A) / sqrt(se(A)^2 + se(DMFT)^2)``. With ``cross_memory=False`` (the entries
``a != b`` of ``M_R`` dropped) the same comparison shows whether the cross-unit memory matters.

Cost: one solve after compile, K = 1..4 (soft committee), N and T fixed, against K = 1; the
memory of ``chi`` is ``(T+1)^2 n_chi K^2`` numbers.

    python benchmarks/committee.py                 # everything (about 10 minutes on 2 cores)
    python benchmarks/committee.py --only cost
    python benchmarks/committee.py --only agreement --probes 4   # the probe estimator
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def settings(dj):
    import jax.numpy as jnp

    two = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.3)
    square = dj.Problem(dj.TwoCluster(0.5), "square", alpha=1.5, delta=0.5, lam=0.02, R0=0.05)
    three = dj.Problem(dj.ThreeCluster(0.6, 0.7), "logistic", alpha=3.0, delta=0.1, lam=0.0, R0=0.3, m0=0.1)
    teacher = dj.Problem(dj.TeacherStudent(0.0), "logistic", alpha=3.0, lam=0.01, R0=0.5)
    regression = dj.Problem(dj.TeacherRegression(0.3, f=jnp.tanh), alpha=2.0, lam=0.05, R0=0.3)

    def quadratic(r):  # the committee form of the single-unit quadratic read-out of three clusters
        return jnp.mean(r * r, axis=-1) - 0.49

    return [
        ("two clusters, soft K=2, logistic, PSGD", dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1]),
         dj.PersistentSGD(0.2, 0.3, 2.0), 8.0),
        ("two clusters, soft K=3, square loss, GD (small R0)",
         dj.Committee(square, dj.SoftCommittee(3), m0=[0.2, 0.0, -0.1]), dj.GD(0.2), 8.0),
        ("three clusters, quadratic K=2, logistic, SGD", dj.Committee(three, dj.CustomReadout(2, quadratic),
                                                                      m0=[0.1, 0.05]), dj.SGD(0.2, 0.5), 8.0),
        ("teacher-student, sign K=3 (beta 2), logistic, PSGD",
         dj.Committee(teacher, dj.SignCommittee(3, 2.0), m0=[0.2, 0.1, 0.0]), dj.PersistentSGD(0.2, 0.4, 1.5), 8.0),
        ("teacher regression (tanh teacher, noise 0.3), soft K=2, square loss, PSGD",
         dj.Committee(regression, dj.SoftCommittee(2), m0=[0.3, -0.1]), dj.PersistentSGD(0.2, 0.3, 2.0), 8.0),
        ("two clusters, soft K=2, logistic, SGD with momentum 0.5 and Langevin noise T_L = 0.05",
         dj.Committee(two, dj.SoftCommittee(2), m0=[0.3, -0.1]), dj.SGD(0.2, 0.3, beta=0.5, temperature=0.05), 8.0),
    ]


def sim_curve(sim, name, K):
    if name.startswith("m"):
        a = int(name[1])
        return np.asarray(sim.m[:, a]), np.asarray(sim.m_se[:, a])
    if name.startswith("Q"):
        a, b = int(name[1]), int(name[2])
        return np.asarray(sim.Q[:, a, b]), np.asarray(sim.Q_se[:, a, b])
    if name == "error":
        return np.asarray(sim.test_error), np.asarray(sim.test_error_se)
    return np.asarray(sim.train_loss), np.asarray(sim.train_loss_se)


def dmft_curve(sol, name):
    if name.startswith("m"):
        return np.asarray(sol.m[:, int(name[1])])
    if name.startswith("Q"):
        return np.asarray(sol.Q[:, int(name[1]), int(name[2])])
    return np.asarray(sol.eps_gen if name == "error" else sol.train_loss)


def extrapolate(dims, ys, ses):
    X = np.stack([np.ones(len(dims)), 1.0 / np.asarray(dims, float)], 1)
    W = np.diag(1.0 / np.asarray(ses) ** 2)
    cov = np.linalg.inv(X.T @ W @ X)
    return float((cov @ X.T @ W @ np.asarray(ys))[0]), float(np.sqrt(cov[0, 0]))


def agreement(dj, args):
    import dmft_jax as dj

    response = dj.ProbeResponse(args.probes) if args.probes else dj.ExactResponse(args.n_chi)
    what = f"ProbeResponse({args.probes}) on all N" if args.probes else f"n_chi = {args.n_chi}"
    print(f"## Agreement: DMFT against A + B/d at d = {args.dims}, {args.seeds} seeds each; DMFT {args.keys} keys x "
          f"N = {args.n_traj}, {what}")
    for label, committee, algo, t_max in settings(dj):
        if args.settings and not any(word in label for word in args.settings):
            continue
        K = committee.K
        names = [f"m{a}" for a in range(K)] + [f"Q{a}{b}" for a in range(K) for b in range(a, K)] + ["error", "loss"]
        sims = {d: dj.simulate(committee, algo, t_max, d=d, n_seeds=args.seeds, key=d, n_test=4000)
                for d in args.dims}
        for cross in (True, False) if "square" in label else (True,):
            t0 = time.perf_counter()
            variant = dj.Committee(committee.problem, committee.readout, committee.m0, cross_memory=cross)
            sols = [dj.solve(variant, algo, t_max, args.n_traj, key=k, response=response) for k in range(args.keys)]
            wall = time.perf_counter() - t0
            T = sols[0].t.shape[0] - 1
            worst, lines = 0.0, []
            for k in (T // 4, T // 2, T):
                parts = []
                for name in names:
                    vals = np.array([dmft_curve(s, name)[k] for s in sols])
                    dm, dm_se = vals.mean(), vals.std(ddof=1) / np.sqrt(len(vals))
                    ys, ses = zip(*[(sim_curve(sims[d], name, K)[0][k], sim_curve(sims[d], name, K)[1][k])
                                    for d in args.dims])
                    A, seA = extrapolate(args.dims, ys, ses)
                    z = (dm - A) / np.sqrt(seA**2 + dm_se**2)
                    worst = max(worst, abs(z))
                    parts.append(f"{name} {dm:.4f}/{A:.4f} ({z:+.1f})")
                lines.append(f"  t = {float(sols[0].t[k]):5.2f}: " + ", ".join(parts))
            what = "" if cross else "  [cross-unit M_R dropped]"
            ok = all(bool(s.ok) for s in sols)
            print(f"\n### {label}{what}: largest |z| = {worst:.2f} (DMFT {wall:.0f} s for {args.keys} solves, ok={ok})")
            print("  (each entry: DMFT / A (z))")
            for line in lines:
                print(line)
            if cross:
                M_R = np.mean([np.abs(np.asarray(s.M_R)) for s in sols], axis=0)
                eye = np.eye(K, dtype=bool)
                print(f"  |M_R| summed over the blocks: diagonal {M_R[..., eye].sum():.3g}, cross-unit "
                      f"{M_R[..., ~eye].sum():.3g}")


def _median_time(run) -> float:
    """Median wall time of three runs after a first (compiling) one."""
    run(0)
    times = []
    for k in range(1, 4):
        t0 = time.perf_counter()
        run(k)
        times.append(time.perf_counter() - t0)
    return sorted(times)[1]


def cost(dj, args):
    import jax

    N, T, n_chi, P, G = 2**13, 50, 512, 4, 8
    print(f"\n## Cost of K: soft committee, two clusters, PSGD, N = {N}, T = {T}, float64; one solve after compile "
          f"(median of 3). Exact response on n_chi = {n_chi}; probes: ProbeResponse({P}) on all N; errors: "
          f"GroupErrors({G}) with the exact response")
    problem = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, R0=0.3)
    algo = dj.PersistentSGD(0.2, 0.3, 2.0)
    single = _median_time(lambda k: dj.solve(problem, algo, n_steps=T, n_traj=N, key=k,
                                              response=dj.ExactResponse(n_chi)).m.block_until_ready())
    print(f"\nThe single-unit sweep (dj.solve of the Problem, same sizes, the same engine at K = 1): {single:.2f} s "
          f"(jax {jax.__version__}); 'single' is each time over it, 'K^2' that ratio over K^2 (the target: <= 1.3)\n")
    print("| K | exact | / single | / (single K^2) | chi (MiB) | probes | v, eps (MiB) | exact + errors | / exact |")
    print("|---|---|---|---|---|---|---|---|---|")
    for K in (1, 2, 3, 4):
        committee = dj.Committee(problem, dj.SoftCommittee(K), m0=np.linspace(0.3, -0.1, K))
        timed = lambda **kw: _median_time(lambda k: dj.solve(committee, algo, n_steps=T, n_traj=N, key=k,
                                                                    **kw).m.block_until_ready())
        wall = timed(response=dj.ExactResponse(n_chi))
        probes = timed(response=dj.ProbeResponse(P))
        errors = timed(response=dj.ExactResponse(n_chi), errors=dj.GroupErrors(G))
        mib = (T + 1) ** 2 * n_chi * K * K * 8 / 2**20
        probe_mib = 2 * (T + 1) * N * P * K * 8 / 2**20
        print(f"| {K} | {wall:.2f} s | {wall / single:.2f}x | {wall / single / K**2:.2f} | {mib:.0f} | {probes:.2f} s | "
              f"{probe_mib:.0f} | {errors:.2f} s | {errors / wall:.2f}x |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=("agreement", "cost"), default=("agreement", "cost"))
    parser.add_argument("--settings", nargs="*", default=(), help="only the settings whose label contains one of these")
    parser.add_argument("--dims", nargs="*", type=int, default=(1000, 2000, 4000))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--keys", type=int, default=4)
    parser.add_argument("--n-traj", type=int, default=2**14)
    parser.add_argument("--n-chi", type=int, default=1024)
    parser.add_argument("--probes", type=int, default=0, help="the probe estimator with this many probes (default: "
                        "the exact response on --n-chi trajectories)")
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    import dmft_jax as dj

    print(f"# committee machines: {platform.machine()} CPU x{os.cpu_count()}, jax {jax.__version__}, float64")
    if "agreement" in args.only:
        agreement(dj, args)
    if "cost" in args.only:
        cost(dj, args)


if __name__ == "__main__":
    main()
