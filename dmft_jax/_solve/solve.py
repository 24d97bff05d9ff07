"""``solve``: the front door (docs/equations.md, section 2).

The arguments needed daily come first (problem, algorithm, horizon, trajectories, key);
every strategy is an object passed by keyword, carrying its own options:

- ``solver``: :class:`~dmft_jax.CausalSweep` ``(time_blocks)`` (exact, one pass, default) or
  :class:`~dmft_jax.DampedIteration` ``(damping, rtol, atol, max_iter)`` (cross-check);
- ``response``: the ``M_R`` estimator, :class:`~dmft_jax.ExactResponse` ``(n_chi, max_memory)``
  (default) or :class:`~dmft_jax.ProbeResponse` ``(n_probes)``;
- ``adjoint``: :class:`~dmft_jax.AutodiffAdjoint` (default) or :class:`~dmft_jax.SweepAdjoint`
  (hand-written reverse mode of the sweep);
- ``progress_meter``: :class:`~dmft_jax.NoProgressMeter` (default) or :class:`~dmft_jax.TextProgressMeter`;
- ``sharding``: ``None`` (one device), ``"all"`` or a list of devices;
- ``errors``: :class:`~dmft_jax.NoErrors` (default) or :class:`~dmft_jax.GroupErrors`
  ``(groups)``: standard errors of every observable (``sol.eps_gen_se``), about twice the cost.

Cost and accuracy: ``N`` trajectories give the kernels and observables with a Monte Carlo error
``O(1/sqrt(N))``; the exact response (``O(n_chi T^2)`` memory) is estimated on ``n_chi <= N``.
"""
from __future__ import annotations

import dataclasses
import functools

import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._engine import process, weights
from .._validate import traced_checks
from .._util import as_dtype, as_key, cast_tree, seed_of
from .._cache.trace import cached_call
from .._solvers.adjoint import AbstractAdjoint, AutodiffAdjoint, SweepAdjoint
from .._response.standard_errors import AbstractErrors, GroupErrors, NoErrors, no_gradient
from .._algorithms.algorithms import AbstractAlgorithm
from .._solvers.iteration import DampedIteration
from .._problem.losses import check_for_solver
from .._engine.memory import check_memory
from .._problem.problem import Problem
from .progress import AbstractProgressMeter, NoProgressMeter, TextProgressMeter, compile_notice
from .._response.probes import ProbeResponse
from .._response.response import AbstractResponse, ExactResponse, as_response
from .._engine.sharding import device_ids, sharder
from .solution import Solution, SolveConfig, finish, outcome
from .._solvers.base import AbstractSolver, resolve_pivot_rtol
from .._solvers.sweep import CausalSweep
from .._algorithms.schedules import Schedule
from .._engine.timegrid import bucket_steps, count_steps

_DEPRECATED = {
    "n_chi": "response=dj.ExactResponse(n_chi)",
    "method": "solver=dj.CausalSweep() or solver=dj.DampedIteration(...)",
    "damping": "solver=dj.DampedIteration(damping=...)",
    "max_iter": "solver=dj.DampedIteration(max_iter=...)",
    "rtol": "solver=dj.DampedIteration(rtol=...)",
    "atol": "solver=dj.DampedIteration(atol=...)",
    "time_blocks": "solver=dj.CausalSweep(time_blocks)",
    "progress": "progress_meter=dj.TextProgressMeter()",
    "devices": "sharding=",
    "pivot_rtol": "solver=dj.CausalSweep(pivot_rtol=...) (or DampedIteration(pivot_rtol=...))",
}


def solve(
    problem: Problem,
    algorithm: AbstractAlgorithm,
    t_max: float = 20.0,
    n_traj: int = 2**15,
    key=0,
    *,
    solver: AbstractSolver | None = None,
    response: AbstractResponse | None = None,
    adjoint: AbstractAdjoint | None = None,
    progress_meter: AbstractProgressMeter | None = None,
    sharding=None,
    errors: AbstractErrors | None = None,
    n_steps: int | None = None,
    antithetic: bool = True,
    moment_matching: bool = True,
    dtype=None,
    throw: bool = False,
    save_trajectories: int = 0,
    **deprecated,
) -> Solution:
    """Solve the DMFT of ``problem`` trained by ``algorithm`` up to ``t_max``.

    Parameters
    ----------
    problem, algorithm : the learning problem and the training algorithm.
    t_max : final time; ``T = floor(t_max / eta)`` steps of ``dt = eta`` (with a schedule,
        the first ``T`` whose steps add up to ``t_max``).
    n_traj : Monte Carlo trajectories ``N`` (even when ``antithetic``).
    key : ``int`` seed or ``jax.random`` key. The same key gives the same result.
    solver, response, adjoint, progress_meter, sharding, errors : the strategies (module
        docstring).
    n_steps : number of steps, instead of ``t_max``; required when ``eta`` is traced.
    antithetic : pair trajectories with opposite Gaussian noise (default on).
    moment_matching : rescale the Gaussian draws to mean square exactly 1 over the
        trajectories (default on; 1.5x smaller mean-squared error of late-time ``eps_gen`` at
        no cost, docs/equations.md section 2.8.7).
    dtype : working dtype (default: JAX's default float, float64 if x64 is enabled).
    throw : raise ``RuntimeError`` when the result is not success (otherwise a warning is
        emitted for concrete results and the result is returned as data).
    save_trajectories : keep ``u``, ``g``, ``r`` histories of this many trajectories.

    Deprecated keywords (a ``DeprecationWarning`` says what replaced each): ``n_chi``,
    ``method``, ``damping``, ``max_iter``, ``rtol``, ``atol``, ``time_blocks``, ``progress``,
    ``devices``, ``pivot_rtol``, and ``adjoint=True/False``.
    """
    from .._problem.readouts import Committee

    if isinstance(problem, Committee):  # K hidden units: the K x K block sweep (docs/equations.md, section 6.2)
        return _solve_committee(problem, algorithm, t_max, n_traj, key, solver=solver, response=response,
                                adjoint=adjoint, progress_meter=progress_meter, sharding=sharding, errors=errors,
                                n_steps=n_steps, antithetic=antithetic, moment_matching=moment_matching,
                                dtype=dtype, throw=throw, save_trajectories=save_trajectories, **deprecated)
    key = as_key(key), seed_of(key)
    config = configure(problem, algorithm, t_max, n_traj, solver=solver, response=response, adjoint=adjoint,
                       progress_meter=progress_meter, sharding=sharding, errors=errors, n_steps=n_steps,
                       antithetic=antithetic, moment_matching=moment_matching, dtype=dtype,
                       save_trajectories=save_trajectories, **deprecated)
    dtype = jnp.dtype(config.dtype)
    T = config.n_steps
    run = None if deprecated else _bucket(config, problem, algorithm, response)
    n_real = n_live = None
    if run is not None:  # arrays sized for the bucket: the sweep stops after T steps, and
        # trajectories past N are left out of every average
        as_int = lambda n: jax.device_put(np.asarray(n, dtype=jnp.result_type(int)))
        n_real, n_live = as_int(T), as_int(config.n_traj)
    else:
        run = config
    with compile_notice(config.progress_meter, f"the sweep for T = {run.n_steps}, N = {config.n_traj}"):
        args = (problem.astype(dtype), cast_tree(algorithm, dtype), key[0], jax.device_put(np.asarray(key[1])),
                run, n_real, n_live)
        # the trace cache (trace_cache.py) holds single-device programs without host callbacks
        meter = config.progress_meter
        exportable = run.devices is None and (isinstance(meter, NoProgressMeter) or (
            type(meter) is TextProgressMeter and not meter.steps))
        sol = cached_call(_solve_sweep, _solve_jit, args) if exportable else _solve_jit(*args)
    if run is not config:
        sol = _cut(sol, T, config)
    return finish(sol, throw)


def _solve_committee(committee, algorithm, t_max, n_traj, key, *, throw, **options):
    """:func:`solve` of a committee machine (the block sweep, committee_solve.py); the
    strategies it does not have are refused by name, and its own options (``symmetric``,
    ``cross_memory``) are passed on."""
    from .units import committee_options, run_committee

    _warn_deprecated([n for n in _DEPRECATED if options.get(n) is not None], stacklevel=4)  # for every K alike
    return run_committee(committee, algorithm, t_max, n_traj, key, throw=throw, **committee_options(options))


def _bucket(config: SolveConfig, problem, algorithm, response):
    """The configuration of the shape bucket a top-level solve runs in (``T`` and ``N`` rounded
    up by :func:`~dmft_jax._engine.timegrid.bucket_steps`), or ``None``: no bucket for another solver
    or adjoint, a schedule (its checks would see the padded steps), traced inputs (the result
    is cut to ``T + 1`` times on the host), a ``max_memory`` bound, or a bucket that does not
    fit in memory. ``N`` keeps its size (only ``T`` is bucketed) for an estimator other than
    the two built in, or when the padded ``N`` would not split into the error groups or over
    the devices. ``response``: the estimator as passed to ``solve`` (re-sized for the bucket)."""
    solver = config.solver
    if not (isinstance(solver, CausalSweep) and solver.buckets and isinstance(config.adjoint, AutodiffAdjoint)):
        return None
    is_schedule = lambda x: isinstance(x, Schedule)
    leaves = jax.tree_util.tree_leaves((problem, algorithm), is_leaf=is_schedule)
    if any(is_schedule(x) or not _validate.is_concrete(x) for x in leaves):
        return None
    if getattr(config.response, "max_memory", None) is not None:  # a memory bound sized for T
        return None
    T_b, N, N_b = bucket_steps(config.n_steps), config.n_traj, bucket_steps(config.n_traj)
    unit = (config.errors.groups if isinstance(config.errors, GroupErrors) else 1) * (2 if config.antithetic else 1)
    devices = 1 if config.devices is None else len(config.devices)
    if N_b % unit or N_b % devices or not isinstance(config.response, (ExactResponse, ProbeResponse)) \
            or not jax.config.jax_threefry_partitionable:  # else a larger draw does not start with the smaller
        N_b = N
    dtype = jnp.dtype(config.dtype)
    try:  # the estimator re-sized, and the bucket's arrays must fit too (else no bucket)
        est = as_response(response).resolve(T_b, N_b, dtype.itemsize)
        run = dataclasses.replace(config, n_steps=T_b, n_traj=N_b, response=est)
        check_memory(T_b, N_b, est, dtype, 1, solver.blocks(T_b), config.errors.replicas(run))
    except ValueError:
        return None
    return run


_SQUARES = ("C", "C_perp", "R", "M_C", "M_R")


def _cut(sol: Solution, T: int, config: SolveConfig) -> Solution:
    """A bucketed solution cut to its ``T + 1`` times (on the host, so that no program is
    compiled per ``T``; one transfer each way), with the configuration of ``T`` steps."""
    size = T + 1
    names = ("t", "m", "q", "C", "C_perp", "R", "P", "eps_gen", "train_loss", "train_acc", "lam_hat", "mu", "M_C",
             "M_R") + (("bias",) if sol.bias is not None else ())
    cut = lambda name, a: a[:size, :size] if name in _SQUARES else a[:size]
    tree = {"fields": {n: getattr(sol, n) for n in names}, "se": sol.se,
            "trajectories": {k: v for k, v in (sol.trajectories or {}).items() if k in ("u", "g", "r", "s")}}
    host = jax.device_get(tree)
    host["fields"] = {n: cut(n, a) for n, a in host["fields"].items()}
    if host["se"] is not None:
        host["se"] = {n: cut(n, a) for n, a in host["se"].items()}
    host["trajectories"] = {k: a[:size] for k, a in host["trajectories"].items()}
    dev = jax.device_put(host)
    changes = dict(dev["fields"], se=dev["se"])
    if sol.trajectories is not None:
        changes["trajectories"] = dict(sol.trajectories, **dev["trajectories"])
    return dataclasses.replace(sol, config=config, **changes)


def _warn_deprecated(names, stacklevel: int) -> None:
    """A ``DeprecationWarning`` naming the replacement of each former keyword in ``names``."""
    for name in names:
        warnings.warn(f"solve({name}=...) is deprecated; use {_DEPRECATED[name]}", DeprecationWarning,
                      stacklevel=stacklevel)


def _legacy_options(deprecated, solver, response, adjoint, progress_meter, sharding):
    """Map the former keywords onto strategies, with a ``DeprecationWarning`` each."""
    unknown = set(deprecated) - set(_DEPRECATED) - {"adjoint"}
    if unknown:
        raise TypeError(f"solve() got unexpected keyword arguments {sorted(unknown)}")
    _warn_deprecated(deprecated, stacklevel=5)
    d = dict(deprecated)
    if "n_chi" in d:
        response = as_response(response, d.pop("n_chi"))
    method = d.pop("method", None)
    iteration_opts = {k: d.pop(k) for k in ("damping", "max_iter", "rtol", "atol") if k in d}
    sweep_opts = {k: d.pop(k) for k in ("time_blocks",) if k in d}
    pivot = {"pivot_rtol": d.pop("pivot_rtol")} if "pivot_rtol" in d else {}
    if method is not None and method not in ("sweep", "iteration"):
        raise ValueError(f"method must be 'sweep' or 'iteration'; got {method!r}")
    if iteration_opts and method != "iteration":
        raise ValueError(f"{', '.join(iteration_opts)}: options of the damped iteration, which this solve does not "
                         "use; pass solver=dj.DampedIteration(...) (they were ignored before version 0.2)")
    if method == "iteration":
        solver = DampedIteration(**iteration_opts, **pivot)
    elif sweep_opts or pivot:
        solver = CausalSweep(**sweep_opts, **pivot)
    if d.pop("progress", False):
        progress_meter = TextProgressMeter()
    if "devices" in d:
        sharding = d.pop("devices")
    return solver, response, progress_meter, sharding


def configure(problem, algorithm, t_max, n_traj, *, solver=None, response=None, adjoint=None,
              progress_meter=None, sharding=None, errors=None, n_steps=None, antithetic=True, moment_matching=True,
              dtype=None,
              save_trajectories=0, batch=1, **deprecated) -> SolveConfig:
    """Validate the options of :func:`solve` and return the static :class:`SolveConfig` of
    the compiled core (``batch`` points are checked against the device memory together)."""
    if isinstance(adjoint, bool):
        warnings.warn("solve(adjoint=True/False) is deprecated; use adjoint=dj.SweepAdjoint() or "
                      "dj.AutodiffAdjoint()", DeprecationWarning, stacklevel=3)
        adjoint = SweepAdjoint() if adjoint else AutodiffAdjoint()
    if deprecated:
        solver, response, progress_meter, sharding = _legacy_options(deprecated, solver, response, adjoint,
                                                                     progress_meter, sharding)
    solver = CausalSweep() if solver is None else solver
    adjoint = AutodiffAdjoint() if adjoint is None else adjoint
    progress_meter = NoProgressMeter() if progress_meter is None else progress_meter
    errors = NoErrors() if errors is None else errors
    examples = {"solver": "CausalSweep()", "adjoint": "SweepAdjoint()", "progress_meter": "TextProgressMeter()",
                "errors": "GroupErrors()"}
    for name, value, kind in (("solver", solver, AbstractSolver), ("adjoint", adjoint, AbstractAdjoint),
                              ("progress_meter", progress_meter, AbstractProgressMeter),
                              ("errors", errors, AbstractErrors)):
        if not isinstance(value, kind):
            raise ValueError(f"{name} must be a dmft_jax.{kind.__name__} (e.g. {examples[name]}); got {value!r}")
    check_problem(problem, algorithm)
    T = count_steps(algorithm, t_max, n_steps)
    n_traj = _validate.integer("n_traj", n_traj, 2)
    if antithetic and n_traj % 2:
        raise ValueError(f"n_traj must be even when antithetic=True; got {n_traj}")
    errors.check(n_traj, antithetic)
    if not isinstance(moment_matching, (bool, np.bool_)):
        raise ValueError(f"moment_matching must be True or False; got {moment_matching!r}")
    if isinstance(save_trajectories, bool) or int(save_trajectories) != save_trajectories \
            or not 0 <= save_trajectories <= n_traj:
        raise ValueError(f"save_trajectories must be in [0, n_traj]; got {save_trajectories}")
    dtype = as_dtype(dtype)
    solver.check(T)
    est = as_response(response).resolve(T, n_traj, dtype.itemsize)
    ids = device_ids(sharding)
    adjoint.check(solver, est, ids is not None)
    if isinstance(adjoint, SweepAdjoint) and (algorithm.beta is not None or algorithm.temperature is not None
                                              or problem.bias is not None):
        raise ValueError("adjoint: SweepAdjoint does not cover momentum (beta), Langevin noise (temperature) or a "
                         "learnable bias; use AutodiffAdjoint() (the default)")
    if problem.bias is not None and not isinstance(solver, CausalSweep):
        raise ValueError(f"solver: a learnable bias is solved by CausalSweep only; got {type(solver).__name__}")
    blocks = solver.blocks(T) if isinstance(solver, CausalSweep) else 1
    pivot_rtol = resolve_pivot_rtol(solver, dtype)
    config = SolveConfig(n_steps=T, n_traj=n_traj, solver=solver, response=est, adjoint=adjoint,
                         progress_meter=progress_meter, devices=ids, antithetic=bool(antithetic),
                         moment_matching=bool(moment_matching), pivot_rtol=float(pivot_rtol), dtype=str(dtype),
                         save_trajectories=int(save_trajectories), errors=errors)
    check_memory(T, n_traj, est, dtype, batch, blocks, errors.replicas(config))
    return config


def check_problem(problem, algorithm):
    """Refuse what the DMFT cannot solve, naming it."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dmft_jax.Problem; got {type(problem).__name__}")
    if not isinstance(algorithm, AbstractAlgorithm):
        raise ValueError(f"algorithm must be GD, SGD, PersistentSGD or a subclass of dmft_jax.AbstractAlgorithm; "
                         f"got {type(algorithm).__name__}")
    problem.check_scalars()
    check_for_solver(problem.loss)


def _solve_sweep(problem, algorithm, key, seed, config, n_real=None, n_live=None):
    return solve_traced(problem, algorithm, key, config, seed, n_real, n_live)


_solve_jit = eqx.filter_jit(_solve_sweep)  # compiled programs are named after _solve_sweep


def solve_traced(problem, algorithm, key, config: SolveConfig, seed=-1, n_real=None, n_live=None) -> Solution:
    """The jittable core of :func:`solve` (no validation; ``config`` from :func:`configure`).

    ``n_real`` (traced, optional): solve ``n_real <= config.n_steps`` steps in arrays sized
    for ``config.n_steps`` (a shape bucket, :func:`dmft_jax._engine.timegrid.bucket_steps`): every
    entry past ``n_real`` is zero, to be cut off by the caller. ``n_live`` (traced,
    optional): only the first ``n_live`` of the ``config.n_traj`` trajectories are averaged
    (the rest pad the bucket)."""
    T = config.n_steps
    dtype = problem.alpha.dtype
    key_probe = jax.random.fold_in(key, 0x5EED)  # probes only: the other draws keep the key
    rnd = process.draw(key, problem, algorithm, T, config.n_traj, config.antithetic, dtype, config.moment_matching,
                       n_live)
    shard = sharder(config.devices)
    rnd = rnd.map_trajectories(shard)
    bucket = {} if n_real is None else {"n_real": n_real}
    out = config.adjoint.run(config.solver, process.Network.single(problem), rnd, T, config.response, key_probe,
                             config.pivot_rtol, config.progress_meter, shard, **bucket)
    out = out.single_unit()
    rows, m = out.rows, out.m
    dts = rnd.dts
    R, P = weights.response(problem.lam, rows.lam_hat, rows.M_R, dts, rnd.update)
    C_perp = weights.correlation(R, P, rows.M_C, problem.R0, dts, rnd.temperature)
    C = jnp.outer(m, m) + C_perp
    q = jnp.diagonal(C)
    eps_gen = problem.eps_gen(m, q, out.bias)
    fields = dict(m=m, C=C, R=R, eps_gen=eps_gen, train_loss=rows.train_loss,
                  train_acc=rows.train_acc, lam_hat=rows.lam_hat, mu=rows.mu, M_C=rows.M_C, M_R=rows.M_R)
    if out.bias is not None:
        fields["bias"] = out.bias
    if n_real is not None:  # times past n_real were not solved: zero
        cut = functools.partial(_zero_past, stop=n_real)
        fields = {k: cut(v) for k, v in fields.items()}
        q, C_perp, P = cut(q), cut(C_perp), cut(P)
    checks, valid, first_bad = traced_checks(problem, algorithm, T)
    if checks:  # an invalid point returns no numbers
        nan = lambda x: _validate.poison(valid, x)  # NaN values and NaN gradients
        fields = {k: nan(v) for k, v in fields.items()}
        q, C_perp, P = nan(q), nan(C_perp), nan(P)
    result = outcome(fields, q, out.converged, valid, first_bad, checks)
    pivots = out.pivots[:T]  # the step-T pivot enters no noise (there is no step T -> T+1)
    if n_real is not None:
        pivots = jnp.where(jnp.arange(T) < n_real, pivots, jnp.ones_like(pivots))
    stats = dict(n_clipped=jnp.sum(pivots <= 0), n_negative=jnp.sum(pivots < 0), n_iter=jnp.asarray(out.n_iter))
    traj = None
    n_save = config.save_trajectories
    if n_save:
        state = out.state
        proj = problem.model.projection(rnd.c, rnd.h0, problem.delta)[None, :n_save]
        r = m[:, None] * proj + state.u[:, :n_save] + (0.0 if out.bias is None else out.bias[:, None])
        traj = dict(u=state.u[:, :n_save], g=state.g[:, :n_save], r=r,
                    s=rnd.s[:, :n_save], c=rnd.c[:n_save], y=rnd.y[:n_save])
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(dts[:-1])])
    frozen = no_gradient((problem, algorithm))
    # a replica of N / G trajectories pads to N_bucket / G
    # (N_bucket / replica size is the group count G, exact: errors.check makes N a multiple of G;
    # n_live * size would overflow int32 without x64)
    live_of = lambda c: None if n_live is None else n_live // (config.n_traj // c.n_traj)
    se, n_failed = config.errors.estimate(lambda k, c: solve_traced(*frozen, k, c, n_real=n_real, n_live=live_of(c)),
                                          key, config)
    if se is not None:
        stats["n_groups_failed"] = n_failed
    return Solution(t=t, q=q, C_perp=C_perp, P=P, result=result, stats=stats, seed=seed, problem=problem,
                    algorithm=algorithm, config=config, trajectories=traj, se=se, **fields)


def _zero_past(x, stop):
    """``x`` with every time index past ``stop`` (on every axis of length ``T + 1``) zero."""
    size = x.shape[0]
    keep = jnp.arange(size) <= stop
    mask = keep if x.ndim == 1 else keep[:, None] & keep[None, :]
    return jnp.where(mask, x, jnp.zeros_like(x))
