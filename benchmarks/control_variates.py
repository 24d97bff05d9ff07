"""Control variates (``errors=dj.ControlVariates(...)``) against the plain Monte
Carlo estimate, at equal wall time (docs/equations.md, section 2.12).

For each setting (T = 100 steps of eta = 0.2, t = 20) and each variant, ``--keys`` solves of
``--n`` trajectories: the variance of ``eps_gen``, ``q`` and the training loss over the keys
(their mean-squared error, the bias being checked separately), the median wall time of a
solve (compiled; the same machine, interleaved), and their product. The table prints the
ratio ``var_plain time_plain / (var_cv time_cv)``: how many times smaller the mean-squared
error of the control-variate estimate is at equal wall time. Then, per variant: its bias
(mean over the keys against a reference solve of ``--ref-n`` trajectories with its own
standard error, in combined standard errors) and the coverage of ``+-2 se`` around the
keys' mean (a solve's ``se`` against the spread it should describe).

Variants (all with ``ProbeResponse(4)``; the library's default response, ``ExactResponse``,
costs 3.5x more per solve at N = 4096 for an error of the same size, so the baseline here is
the cheaper one):

- ``plain``: ``dj.solve(...)`` without errors (no replicas);
- ``cv``: ``errors=ControlVariates()``, one surrogate matched at margin 0 (16 replicas: the
  error bars come with it);
- ``cv2``: ``ControlVariates(at=(0, 1))``, two surrogates.

Settings: the seed setting (two clusters, logistic, persistent SGD, lambda = 0); GD with
lambda = 0.05; teacher-student (label noise 0.1) with SGD; regression with the pseudo-Huber
loss and persistent SGD. Three clusters and committees have no linear surrogate (their
read-out is not linear): listed as not applicable.

    python benchmarks/control_variates.py [--keys 64] [--n 2048] [--ref-n 131072] [--settings seed gd teacher regression]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np  # noqa: E402

import dmft_jax as dj  # noqa: E402

SETTINGS = {
    "seed": (dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, R0=0.01), dj.PersistentSGD(0.2)),
    "gd": (dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.05, R0=0.01), dj.GD(0.2)),
    "teacher": (dj.Problem(dj.TeacherStudent(0.1), "logistic", alpha=2.0, lam=0.01, R0=0.01, m0=0.05),
                dj.SGD(0.2, b=0.3)),
    "regression": (dj.Problem(dj.TeacherRegression(0.5), dj.PseudoHuber(1.0), alpha=2.0, R0=0.1),
                   dj.PersistentSGD(0.2)),
}
NOT_APPLICABLE = {
    "three clusters": (dj.Problem(dj.ThreeCluster(0.5, 0.7), "logistic", m0=0.05), dj.PersistentSGD(0.2)),
    "committee K = 2": (dj.Committee(dj.Problem(dj.TwoCluster(0.5), "logistic", R0=0.01), dj.SoftCommittee(2)),
                        dj.PersistentSGD(0.2)),
}
VARIANTS = {"plain": dj.NoErrors(), "cv": dj.ControlVariates(), "cv2": dj.ControlVariates(at=(0.0, 1.0))}
NAMES = ("eps_gen", "q", "train_loss")
TIMES = (5.0, 10.0, 20.0)


def run(problem, alg, n, key, errors):
    t0 = time.perf_counter()
    sol = dj.solve(problem, alg, t_max=20.0, n_traj=n, key=key, response=dj.ProbeResponse(4), errors=errors)
    jax.block_until_ready(sol.eps_gen)
    return sol, time.perf_counter() - t0


def setting(name, keys, n, ref_n):
    problem, alg = SETTINGS[name]
    ref = dj.solve(problem, alg, t_max=20.0, n_traj=ref_n, key=10**6, response=dj.ProbeResponse(4),
                   errors=dj.GroupErrors(16))
    idx = [int(round(t / 0.2)) for t in TIMES]
    vals = {v: {o: [] for o in NAMES} for v in VARIANTS}
    ses = {v: {o: [] for o in NAMES} for v in VARIANTS}
    wall = {v: [] for v in VARIANTS}
    for v, vr in VARIANTS.items():  # compile each variant once, outside the timings
        run(problem, alg, n, 0, vr)
    for k in range(keys):
        for v, vr in VARIANTS.items():  # interleaved: the machine's drift enters every variant alike
            sol, dt = run(problem, alg, n, 1 + k, vr)
            wall[v].append(dt)
            for o in NAMES:
                vals[v][o].append(np.asarray(getattr(sol, o))[idx])
                ses[v][o].append(np.asarray(sol.se[o])[idx] if sol.se is not None else np.full(len(idx), np.nan))
    time_of = {v: float(np.median(wall[v])) for v in VARIANTS}
    var = {v: {o: np.var(np.stack(vals[v][o]), axis=0, ddof=1) for o in NAMES} for v in VARIANTS}
    print(f"\n## {name}: N = {n}, {keys} keys, T = 100 (t = 20); reference N = {ref_n}")
    print("solve (median): " + ", ".join(f"{v} {time_of[v]:.2f} s" for v in VARIANTS))
    head = " | ".join(f"{o} t={t:g}" for o in NAMES for t in TIMES)
    print(f"| variant | {head} |")
    print("|---" * (1 + len(NAMES) * len(TIMES)) + "|")
    for v in VARIANTS:
        if v == "plain":
            continue
        ratios = [var["plain"][o][i] * time_of["plain"] / (var[v][o][i] * time_of[v]) for o in NAMES
                  for i in range(len(TIMES))]
        print(f"| {v}: MSE ratio at equal time | " + " | ".join(f"{r:.1f}" for r in ratios) + " |")
        ratios = [var["plain"][o][i] / var[v][o][i] for o in NAMES for i in range(len(TIMES))]
        print(f"| {v}: variance ratio at equal N | " + " | ".join(f"{r:.1f}" for r in ratios) + " |")
    for v in VARIANTS:
        cells = []
        for o in NAMES:
            x = np.stack(vals[v][o])
            r, r_se = np.asarray(getattr(ref, o))[idx], np.asarray(ref.se[o])[idx]
            z = (x.mean(axis=0) - r) / np.sqrt(x.var(axis=0, ddof=1) / keys + r_se**2)
            s = np.stack(ses[v][o])
            cover = np.mean(np.abs(x - x.mean(axis=0)) < 2 * s) if np.all(np.isfinite(s)) else np.nan
            cells.append(f"{o}: bias " + "/".join(f"{a:+.1f}" for a in z) + f" se, coverage {cover:.0%}")
        print(f"- {v}: " + "; ".join(cells))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=64)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--ref-n", type=int, default=131072)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = ap.parse_args()
    print(f"# control_variates: {platform.machine()} CPU x{os.cpu_count()}, jax {jax.__version__}, float64; "
          f"times {TIMES}; MSE = variance over the keys (bias below, in standard errors of the key mean and the "
          "reference); coverage: +-2 se around the keys' mean")
    for name in args.settings:
        setting(name, args.keys, args.n, args.ref_n)
    for name, (problem, alg) in NOT_APPLICABLE.items():
        try:
            dj.solve(problem, alg, t_max=1.0, n_traj=64, errors=dj.ControlVariates())
        except ValueError as err:
            print(f"- {name}: not applicable ({err})")


if __name__ == "__main__":
    main()
