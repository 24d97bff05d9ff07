"""Command line: ``dmft-jax solve`` (DMFT, optionally over a finite-d simulation) and
``dmft-jax simulate``. With no options ``solve`` runs the seed two-cluster setting
(lambda=0, alpha=2, Delta=0.5, 1/tau=0.6, eta=0.2, R0=0.01, b=0.3, t_max=20) and writes
``<out>/solution.npz``, ``<out>/solution.json`` and ``<out>/curves.png``."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

from .._version import __version__


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Each default once: not for a flag, not ``None``, not where the help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _add_problem_args(p):
    g = p.add_argument_group("problem")
    g.add_argument("--model", choices=["two", "three"], default="two", help="two- or three-cluster mixture")
    g.add_argument("--rho", type=float, default=0.5, help="cluster weight rho")
    g.add_argument("--L", type=float, default=0.7, help="three-cluster threshold L")
    g.add_argument("--loss", default="logistic",
                   help="logistic | square | exponential | smooth_hinge | hinge (simulation only)")
    g.add_argument("--sharpness", "--beta", dest="sharpness", type=float, default=10.0,
                   help="smooth_hinge sharpness (--beta is its former name: beta= in Python is the momentum)")
    g.add_argument("--alpha", type=float, default=2.0, help="samples per dimension n/d")
    g.add_argument("--delta", type=float, default=0.5, help="input noise variance Delta")
    g.add_argument("--lam", type=float, default=0.0, help="ridge lambda")
    g.add_argument("--R0", type=float, default=0.01, help="initial weight variance")
    g.add_argument("--m0", type=float, default=None, help="initial magnetisation (default 0; 0.01 for three clusters)")
    a = p.add_argument_group("algorithm")
    a.add_argument("--algorithm", choices=["psgd", "sgd", "gd"], default="psgd",
                   help="persistent SGD, classic SGD or full-batch GD")
    a.add_argument("--eta", type=float, default=0.2, help="learning rate = time step")
    a.add_argument("--eta-decay", type=float, default=None,
                   help="schedule eta_k = floor + (eta - floor) exp(-decay k) (ExponentialDecay)")
    a.add_argument("--eta-floor", type=float, default=0.0, help="floor of --eta-decay")
    a.add_argument("--b", type=float, default=0.3, help="batch fraction")
    a.add_argument("--tau", type=float, default=1 / 0.6, help="persistence time (psgd)")
    a.add_argument("--t-max", type=float, default=20.0, help="final time")
    a.add_argument("--seed", type=int, default=0, help="random seed")
    a.add_argument("--float32", action="store_true", help="work in float32 (default float64)")
    a.add_argument("--out", default="dmft_results", help="output directory")
    a.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    a.add_argument("--no-cache", action="store_true",
                   help="do not use the on-disk compilation cache (dmft_jax.default_cache_dir()); shows a "
                        "progress bar instead (programs with a bar are not cached)")
    a.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="figure format")


# the option behind each parameter a refusal names (the library's words), where a user of the command
# line would not recognise the parameter: "--eta-decay: rate must satisfy rate >= 0"
_FLAGS = {"t_max": "--t-max", "eta": "--eta", "init": "--eta", "rate": "--eta-decay", "floor": "--eta-floor",
          "b": "--b", "tau": "--tau", "alpha": "--alpha", "delta": "--delta", "lam": "--lam", "R0": "--R0",
          "m0": "--m0", "rho": "--rho", "L": "--L", "beta": "--sharpness", "loss": "--loss", "key": "--seed",
          "n_traj": "--n-traj", "n_chi": "--n-chi", "n_probes": "--probes", "GroupErrors.groups": "--groups",
          "groups": "--groups", "response": "--n-chi", "CompressedHistory.window": "--window", "CompressedHistory.per_level": "--per-level",
          "params": "--params", "steps": "--steps", "d": "--d", "n_seeds": "--n-seeds"}


def _flagged(message: str) -> str:
    """A library refusal in the command line's words: the parameter it starts with given as the
    option that sets it (``"rate must ..."`` -> ``"--eta-decay: rate must ..."``, ``"params: each
    name once"`` -> ``"--params: each name once"``)."""
    m = re.match(r"([A-Za-z_][A-Za-z0-9_.]*)(:?)", message)
    if not m or m.group(1) not in _FLAGS:
        return message
    flag = _FLAGS[m.group(1)]
    return f"{flag}{message[m.end(1):]}" if m.group(2) else f"{flag}: {message}"


def _history(dj, args):
    """The history of ``solve --history``; --window and --per-level belong to a compressed one."""
    if args.history != "compressed":
        given = [f for f, v in (("--window", args.window), ("--per-level", args.per_level)) if v is not None]
        if given:
            raise ValueError(f"{given[0]}: applies to --history compressed (this run: --history {args.history})")
        return None if args.history == "auto" else dj.FullHistory()
    return dj.CompressedHistory(32 if args.window is None else args.window,
                                4 if args.per_level is None else args.per_level)


def _build(args):
    import dmft_jax as dj

    model = dj.TwoCluster(args.rho) if args.model == "two" else dj.ThreeCluster(args.rho, args.L)
    loss = dj.SmoothHinge(args.sharpness) if args.loss == "smooth_hinge" else args.loss
    m0 = args.m0 if args.m0 is not None else (0.0 if args.model == "two" else 0.01)
    problem = dj.Problem(model=model, loss=loss, alpha=args.alpha, delta=args.delta, lam=args.lam,
                         R0=args.R0, m0=m0)
    eta = args.eta
    if args.eta_decay is not None:
        eta = dj.ExponentialDecay(args.eta, args.eta_decay, args.eta_floor)
    if args.algorithm == "gd":
        algo = dj.GD(eta)
    elif args.algorithm == "sgd":
        algo = dj.SGD(eta, args.b)
    else:
        algo = dj.PersistentSGD(eta, args.b, args.tau)
    return problem, algo


def _parser():
    fmt = _Defaults
    parser = argparse.ArgumentParser(prog="dmft-jax", description=__doc__, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dmft-jax {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    ps = sub.add_parser("solve", help="solve the DMFT (and optionally simulate beside it)", allow_abbrev=False,
                        formatter_class=fmt)
    _add_problem_args(ps)
    ps.add_argument("--n-traj", type=int, default=2**15, help="Monte Carlo trajectories N")
    ps.add_argument("--n-chi", type=int, default=None, help="trajectories carrying the response (default min(N, 4096))")
    ps.add_argument("--probes", type=int, default=None, metavar="P",
                    help="estimate M_R by P randomized probes per trajectory (ProbeResponse) instead of the exact response")
    ps.add_argument("--history", choices=["auto", "full", "compressed"], default="auto",
                    help="how the sweep keeps the past: the full history (exact scheme, cost ~T^2.4), a compressed "
                         "one (a recent window and blocks of doubling length; cost linear in T, ProbeResponse), or "
                         "auto: compressed beyond 2000 steps")
    ps.add_argument("--window", type=int, default=None,
                    help="steps kept at full resolution (--history compressed; default 32)")
    ps.add_argument("--per-level", type=int, default=None,
                    help="blocks of each length 2, 4, 8, ... (--history compressed; default 4)")
    ps.add_argument("--groups", type=int, default=16, metavar="G",
                    help="standard errors (the DMFT band in the plot) from G replica solves on N/G trajectories "
                         "each (GroupErrors; about twice the solve time); 0: none")
    ps.add_argument("--simulate", "--d", type=int, default=None, metavar="D", dest="simulate",
                    help="overlay a finite-D simulation (--d D as in the simulate command)")
    ps.add_argument("--n-seeds", type=int, default=10, help="simulation seeds")
    pm = sub.add_parser("simulate", help="finite-d simulation only", allow_abbrev=False, formatter_class=fmt)
    _add_problem_args(pm)
    pm.add_argument("--d", type=int, default=1000, help="dimension")
    pm.add_argument("--n-seeds", type=int, default=10, help="simulation seeds")
    pt = sub.add_parser("tune", help="minimise eps_gen at t_max over hyperparameters (optax through the DMFT)",
                        allow_abbrev=False, formatter_class=fmt)
    _add_problem_args(pt)
    pt.add_argument("--params", nargs="+", default=["lam"],
                    help="subset of lam R0 eta b tau (eta.init eta.rate eta.floor with --eta-decay)")
    pt.add_argument("--steps", type=int, default=50, help="optimiser steps")
    pt.add_argument("--lr", type=float, default=0.1, help="adam learning rate (unconstrained parameters)")
    pt.add_argument("--n-traj", type=int, default=2**14, help="Monte Carlo trajectories N")
    pt.add_argument("--n-chi", type=int, default=None, help="response trajectories")
    pt.add_argument("--refresh", action="store_true", help="new random numbers every step")
    pt.add_argument("--groups", type=int, default=16, metavar="G",
                    help="standard errors of the tuned objective and of its improvement from G replica solves "
                         "(GroupErrors); 0: none")
    parser.commands = {"solve": ps, "simulate": pm, "tune": pt}  # each refuses with its own usage
    return parser


def _check_args(parser, args):
    """Refuse bad options before any work is done, and results that would be overwritten; the
    output folder is made only for a run that passed every check (:func:`_made`)."""
    d = args.simulate if args.command == "solve" else getattr(args, "d", None)
    if d is not None and d < 2:
        parser.error(f"{'--simulate/--d' if args.command == 'solve' else '--d'} must be an integer >= 2; got {d}")
    if getattr(args, "n_seeds", 1) < 1:
        parser.error(f"--n-seeds must be an integer >= 1; got {args.n_seeds}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out: {out} exists and is not a folder")
    if out.exists() and not os.access(out, os.W_OK):
        parser.error(f"--out: the folder {out} is not writable")
    names = {"solve": ["solution", "simulation"] if getattr(args, "simulate", None) is not None else ["solution"],
             "simulate": ["simulation"], "tune": ["tune"]}[args.command]
    files = [out / f"{n}.{ext}" for n in names for ext in ("npz", "json")] + [out / f"curves.{args.format}"]
    folders = [str(f) for f in files if f.exists() and not f.is_file()]
    if folders:  # --overwrite cannot replace them: refused before the run, not after it
        parser.error(f"--out: {', '.join(folders)} exist and are not files; remove them or choose another --out")
    if args.command == "tune" and not math.isfinite(args.lr):
        parser.error(f"--lr must be a finite number; got {args.lr}")
    taken = [str(f) for f in files if f.exists()]
    if taken and not args.overwrite:
        parser.error(f"--out: {', '.join(taken)} exist; pass --overwrite to replace them, or another --out")
    return out


def _made(parser, out: Path) -> Path:
    """Make the output folder (after the checks: a refused run leaves nothing behind)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out: cannot create the folder {out} ({err})")
    return out


def _meter(dj, args, label, unit):
    """A tqdm bar without the on-disk cache (a bar's host callback keeps a program out of it);
    with the cache, only the notice of a first compile."""
    return dj.TqdmProgressMeter(label, unit) if args.no_cache else dj.TextProgressMeter(label, unit, steps=False)


def _clean(x):
    """A number as it was meant (``20.000000000000004`` -> ``20.0``: 12 significant digits)."""
    return float(f"{float(x):.12g}")


def _tune(dj, args, problem, algo, out, parser):
    import optax

    from dmft_jax import plot

    try:
        res = dj.tune(problem, algo, args.params, t_max=args.t_max, n_traj=args.n_traj,
                      response=dj.ExactResponse(args.n_chi), key=args.seed, optimizer=optax.adam(args.lr),
                      steps=args.steps, refresh=args.refresh, progress=True, log_every=5,
                      progress_meter=dj.TqdmProgressMeter("tune", "steps"),
                      errors=dj.GroupErrors(args.groups) if args.groups != 0 else None)
    except ValueError as err:
        parser.error(_flagged(str(err)))
    _made(parser, out)
    noise = dict(objective_se=res.objective_se, start_objective=res.start_objective, improvement=res.improvement,
                 improvement_se=res.improvement_se, within_noise=res.within_noise)
    out_data = dict(params=res.params, objective=float(res.objective), **noise, history=res.history,
                    problem=res.problem.to_dict(), algorithm=res.algorithm.to_dict(), status=res.result.code_name,
                    message=res.message)
    (out / "tune.json").write_text(json.dumps(out_data, indent=2))
    plot.compare(res.solution, path=out / f"curves.{args.format}")
    print(json.dumps(dict(params=res.params, objective=float(res.objective), out=str(out)), indent=2))
    if not bool(res.ok):
        print(f"dmft-jax tune: {res.message}", file=sys.stderr)
    return 0 if bool(res.ok) else 1


def main(argv=None):
    top = _parser()
    args = top.parse_args(argv)
    parser = top.commands[args.command]

    import jax

    if not args.float32:
        jax.config.update("jax_enable_x64", True)
    import matplotlib

    matplotlib.use("Agg")  # the command line only writes files: no search for a window toolkit (0.6 s)
    import dmft_jax as dj
    from dmft_jax import io, plot

    try:
        problem, algo = _build(args)
    except ValueError as err:
        parser.error(_flagged(str(err)))
    out = _check_args(parser, args)
    if not args.no_cache:
        try:
            dj.enable_compilation_cache()
        except ValueError as err:  # an unwritable cache folder costs only the compile
            print(f"[dmft-jax] compilation cache off: {err}", file=sys.stderr)
    if args.command == "tune":
        return _tune(dj, args, problem, algo, out, parser)
    summary = {}
    sol = sim = None
    try:
        if args.command == "solve":
            t0 = time.perf_counter()
            resp = dj.ProbeResponse(args.probes) if args.probes is not None else (
                None if args.n_chi is None else dj.ExactResponse(args.n_chi))
            errors = dj.GroupErrors(args.groups) if args.groups != 0 else None
            history = _history(dj, args)
            sol = dj.solve(problem, algo, t_max=args.t_max, n_traj=args.n_traj, key=args.seed, response=resp,
                           progress_meter=_meter(dj, args, "sweep", "steps"), errors=errors,
                           solver=dj.CausalSweep(history=history))
            sol.m.block_until_ready()
            summary["solve_seconds"] = round(time.perf_counter() - t0, 3)
            summary["status"], summary["message"] = sol.result.code_name, sol.message
            io.save(sol, _made(parser, out) / "solution", overwrite=args.overwrite)
            d = args.simulate
        else:
            d = args.d
        if d is not None:
            t0 = time.perf_counter()
            sim = dj.simulate(problem, algo, t_max=args.t_max, d=d, n_seeds=args.n_seeds, key=args.seed + 1,
                              progress_meter=_meter(dj, args, "simulation", "seeds"))
            sim.m.block_until_ready()
            summary["simulate_seconds"] = round(time.perf_counter() - t0, 3)
            summary["simulation_status"], summary["simulation_message"] = sim.result.code_name, sim.message
            io.save(sim, _made(parser, out) / "simulation", overwrite=args.overwrite)
    except ValueError as err:
        parser.error(_flagged(str(err)))
    plot.compare(sol, sim, path=out / f"curves.{args.format}")
    res = sol if sol is not None else sim
    summary.update(t_max=_clean(res.t[-1]), eps_gen=_clean(res.eps_gen[-1]))
    if res.eps_gen_se is not None:
        summary["eps_gen_se"] = _clean(res.eps_gen_se[-1])
    summary.update(train_loss=_clean(res.train_loss[-1]), train_acc=_clean(res.train_acc[-1]), out=str(out))
    print(json.dumps(summary, indent=2))
    return 0 if all(bool(r.ok) for r in (sol, sim) if r is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
