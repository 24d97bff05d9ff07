"""``solve``: the front door (docs/equations.md, sections 2 and 6.2), one for a single unit
and for a committee of ``K`` units.

The arguments needed daily come first (problem, algorithm, horizon, trajectories, key);
every strategy is an object passed by keyword, carrying its own options:

- ``solver``: :class:`~dmft_jax.CausalSweep` ``(time_blocks)`` (exact, one pass, default) or
  :class:`~dmft_jax.DampedIteration` ``(damping, rtol, atol, max_iter)`` (cross-check);
- ``response``: the ``M_R`` estimator, :class:`~dmft_jax.ExactResponse` ``(n_chi, max_memory)``
  (default) or :class:`~dmft_jax.ProbeResponse` ``(n_probes)``;
- ``adjoint``: :class:`~dmft_jax.AutodiffAdjoint` (default) or :class:`~dmft_jax.SweepAdjoint`
  (hand-written reverse mode of the sweep);
- ``progress_meter``: :class:`~dmft_jax.TqdmProgressMeter`, :class:`~dmft_jax.TextProgressMeter` or
  :class:`~dmft_jax.NoProgressMeter`; default: a tqdm bar for a run estimated above a few
  seconds on a CPU, none for shorter ones;
- ``trajectories``: :class:`~dmft_jax.Trajectories` ``(antithetic, moment_matching, sharding, save)``;
- ``errors``: :class:`~dmft_jax.NoErrors` (default), :class:`~dmft_jax.GroupErrors`
  ``(groups)``: standard errors of every observable (``sol.eps_gen_se``), about twice the cost,
  or :class:`~dmft_jax.ControlVariates` ``(groups, at, observables, fallback)``: the same, with
  ``m, q, eps_gen, train_loss`` corrected by exactly solved quadratic surrogates run on the
  same random numbers (docs/equations.md, section 2.12).

Cost and accuracy: ``N`` trajectories give the kernels and observables with a Monte Carlo error
``O(1/sqrt(N))``; the exact response (``O(n_chi T^2)`` memory) is estimated on ``n_chi <= N``.

Deprecated keywords (a ``DeprecationWarning`` says what replaced each): ``antithetic``,
``moment_matching``, ``sharding`` and ``save_trajectories`` (now
:class:`~dmft_jax.Trajectories`' own), ``n_chi``, ``method``, ``damping``, ``max_iter``,
``rtol``, ``atol``, ``time_blocks``, ``progress``, ``devices``, ``pivot_rtol``,
``adjoint=True/False``, and a committee's ``symmetric`` and ``cross_memory`` (now
:class:`~dmft_jax.Committee`'s own).
"""
from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._engine import process, weights
from .._engine.generalisation import test_error
from .._validate import traced_checks
from .._util import as_key, cast_tree, seed_of
from .._cache.trace import cached_call
from .._solvers.adjoint import AbstractAdjoint, AutodiffAdjoint
from . import control_variates
from .control_variates import ControlVariates
from .standard_errors import AbstractErrors, GroupErrors, no_gradient
from .._algorithms.algorithms import AbstractAlgorithm
from .history_error import history_error
from .memory import check_memory
from .._results.results import RESULTS, Result
from .._problem.network import Network
from .._problem.readouts import Committee
from .progress import AbstractProgressMeter, NoProgressMeter, TextProgressMeter, compile_notice
from .._response.probes import ProbeResponse
from .._response.response import AbstractResponse, ExactResponse, as_response
from .._engine.sharding import sharder
from .._results.solution import Solution, finish, outcome
from .._solvers.base import AbstractSolver
from .._solvers.sweep import CausalSweep
from .._algorithms.schedules import Schedule
from .._engine.timegrid import bucket_steps
from .config import SolveConfig
from .trajectories import Trajectories
from .configure import committee_keywords, configure


def solve(
    problem,
    algorithm: AbstractAlgorithm,
    t_max: float = 20.0,
    n_traj: int = 2**15,
    key=0,
    *,
    solver: AbstractSolver | None = None,
    response: AbstractResponse | None = None,
    adjoint: AbstractAdjoint | None = None,
    progress_meter: AbstractProgressMeter | None = None,
    errors: AbstractErrors | None = None,
    n_steps: int | None = None,
    trajectories: Trajectories | None = None,
    dtype=None,
    throw: bool = False,
    **deprecated,
) -> Solution:
    """Solve the DMFT of ``problem`` trained by ``algorithm`` up to ``t_max``.

    Parameters
    ----------
    problem
        a single unit (:class:`~dmft_jax.Problem`) or a committee of ``K`` units
        (:class:`~dmft_jax.Committee`: the ``K x K`` blocks of the same sweep,
        docs/equations.md, section 6.2).
    algorithm
        the training algorithm.
    t_max
        final time; ``T = floor(t_max / eta)`` steps of ``dt = eta`` (with a schedule,
        the first ``T`` whose steps add up to ``t_max``).
    n_traj
        Monte Carlo trajectories ``N`` (even when ``antithetic``).
    key
        ``int`` seed or ``jax.random`` key. The same key gives the same result.
    solver, response, adjoint, progress_meter, errors
        the strategies (module docstring).
    n_steps
        number of steps, instead of ``t_max``; required when ``eta`` is traced.
    trajectories
        :class:`~dmft_jax.Trajectories`: how the ``N`` trajectories are drawn, split over
        devices and kept. Deprecated keywords: the module docstring.
    dtype
        working dtype (default: JAX's default float, float64 if x64 is enabled).
    throw
        raise ``RuntimeError`` when the result is not success (otherwise a warning is
        emitted for concrete results and the result is returned as data). Inside
        ``jit``/``vmap`` the compiled program raises at run time instead, with the same message
        (the outcome and, for an invalid input, the check that failed): ``eqx.filter_jit``
        shows it alone, ``jax.jit`` inside its ``INTERNAL: CpuCallback error`` text.
    """
    problem = committee_keywords(problem, deprecated)
    throw = _validate.flag("throw", throw)
    key = as_key(key), seed_of(key)
    config = configure(problem, algorithm, t_max, n_traj, solver=solver, response=response, adjoint=adjoint,
                       progress_meter=progress_meter, errors=errors, n_steps=n_steps, trajectories=trajectories,
                       dtype=dtype, **deprecated)
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
    units = f", K = {config.K}" if config.K > 1 else ""
    with compile_notice(config.progress_meter, f"the sweep for T = {run.n_steps}, N = {config.n_traj}{units}"):
        args = (problem.astype(dtype), cast_tree(algorithm, dtype), key[0], jax.device_put(np.asarray(key[1])),
                run, n_real, n_live)
        # the trace cache (_cache/trace.py) holds single-device programs without host callbacks
        meter = config.progress_meter
        exportable = run.devices is None and (isinstance(meter, NoProgressMeter) or (
            type(meter) is TextProgressMeter and not meter.steps))
        sol = cached_call(_solve_sweep, _solve_jit, args) if exportable else _solve_jit(*args)
    if run is not config:
        sol = _cut(sol, T, config)
    return finish(sol, throw)


def _bucket(config: SolveConfig, problem, algorithm, response):
    """The configuration of the shape bucket a top-level solve runs in (``T`` and ``N`` rounded
    up by :func:`~dmft_jax._engine.timegrid.bucket_steps`), or ``None``: no bucket for another solver
    or adjoint, a schedule (its checks would see the padded steps), traced inputs (the result
    is cut to ``T + 1`` times on the host), a ``max_memory`` bound, or a bucket that does not
    fit in memory. ``N`` keeps its size (only ``T`` is bucketed) for an estimator other than
    the two built in, or when the padded ``N`` would not split into the error groups or over
    the devices. ``response``: the estimator as passed to ``solve`` (re-sized for the bucket)."""
    solver = config.solver
    if not (isinstance(solver, CausalSweep) and solver.buckets and isinstance(config.adjoint, AutodiffAdjoint)) \
            or solver.history.compressed:  # a compressed history's schedule is sized for its T
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
        est = as_response(response).resolve(T_b, N_b, dtype.itemsize, config.K)
        run = dataclasses.replace(config, n_steps=T_b, n_traj=N_b, response=est)
        check_memory(T_b, N_b, est, dtype, 1, solver.blocks(T_b), config.errors.replicas(run), config.K,
                     config.quadrature)
    except ValueError:
        return None
    return run


# the observables with two time axes (the rest have one)
_SQUARES = ("C", "C_perp", "R", "M_C", "M_R")


def _cut(sol: Solution, T: int, config: SolveConfig) -> Solution:
    """A bucketed solution cut to its ``T + 1`` times (on the host, so that no program is
    compiled per ``T``; one transfer each way), with the configuration of ``T`` steps."""
    size = T + 1
    names = ("t", "m", "q", "C", "C_perp", "R", "P", "eps_gen", "train_loss", "train_acc", "lam_hat", "mu", "M_C",
             "M_R") + tuple(n for n in ("bias", "eps_gen_integral_se") if getattr(sol, n) is not None)
    cut = lambda name, a: a[:size, :size] if name in _SQUARES else a[:size]
    gains = {k: v for k, v in sol.stats.items() if k.startswith("cv_gain_")}  # per time, like the fields
    tree = {"fields": {n: getattr(sol, n) for n in names}, "se": sol.se, "gains": gains,
            "trajectories": {k: v for k, v in (sol.trajectories or {}).items() if k in ("u", "g", "r", "s")}}
    host = jax.device_get(tree)
    host["fields"] = {n: cut(n, a) for n, a in host["fields"].items()}
    if host["se"] is not None:
        host["se"] = {n: cut(n, a) for n, a in host["se"].items()}
    host["trajectories"] = {k: a[:size] for k, a in host["trajectories"].items()}
    host["gains"] = {k: a[:size] for k, a in host["gains"].items()}
    dev = jax.device_put(host)
    changes = dict(dev["fields"], se=dev["se"], stats=dict(sol.stats, **dev["gains"]))
    if sol.trajectories is not None:
        changes["trajectories"] = dict(sol.trajectories, **dev["trajectories"])
    return dataclasses.replace(sol, config=config, **changes)


def _solve_sweep(problem, algorithm, key, seed, config, n_real=None, n_live=None):
    return solve_traced(problem, algorithm, key, config, seed, n_real, n_live)


_solve_jit = eqx.filter_jit(_solve_sweep)  # compiled programs are named after _solve_sweep


def solve_traced(problem, algorithm, key, config: SolveConfig, seed=-1, n_real=None, n_live=None,
                 estimate_history: bool = True) -> Solution:
    """The jittable core of :func:`solve` for every ``K`` (no validation; ``config`` from
    :func:`~dmft_jax._solve.configure.configure`): the one causal sweep of ``Network.of(problem)``
    (``K x K`` blocks, a single unit being ``K = 1``), the weight side in blocks, the test
    error, the outcome and the standard errors; a single unit's arrays without unit axes.

    ``n_real`` (traced, optional): solve ``n_real <= config.n_steps`` steps in arrays sized
    for ``config.n_steps`` (a shape bucket, :func:`dmft_jax._engine.timegrid.bucket_steps`): every
    entry past ``n_real`` is zero, to be cut off by the caller. ``n_live`` (traced,
    optional): only the first ``n_live`` of the ``config.n_traj`` trajectories are averaged
    (the rest pad the bucket). ``estimate_history``: a compressed history's error estimate (off
    for the solves that make it and for the error replicas)."""
    T, K = config.n_steps, config.K
    net = Network.of(problem)
    base = net.problem
    dtype = base.alpha.dtype
    key_probe = jax.random.fold_in(key, 0x5EED)  # probes only: the other draws keep the key
    history = getattr(config.solver, "history", None)
    # a compressed history draws s and zeta at their step: no (T + 1) x N array
    rnd = process.draw(key, base, algorithm, T, config.n_traj, config.antithetic, dtype, config.moment_matching,
                       n_live, K=K, streamed=history is not None and history.compressed)
    shard = sharder(config.devices)
    rnd = rnd.map_trajectories(shard)
    bucket = {} if n_real is None else {"n_real": n_real}
    out = config.adjoint.run(config.solver, net, rnd, T, config.response, key_probe, config.pivot_rtol,
                             config.progress_meter, shard, **bucket)
    fields, eps_se = _observables(problem, net, rnd, out, key, config)
    frozen = no_gradient((problem, algorithm))
    # a replica of N / G trajectories pads to N_bucket / G
    # (N_bucket / replica size is the group count G, exact: errors.check makes N a multiple of G;
    # n_live * size would overflow int32 without x64)
    live_of = lambda c: None if n_live is None else n_live // (config.n_traj // c.n_traj)
    run_group = lambda prob: lambda k, c: solve_traced(prob, frozen[1], k, c, n_real=n_real, n_live=live_of(c),
                                                       estimate_history=False)
    cv_stats = {}
    if isinstance(config.errors, ControlVariates):  # the same replicas give the se and beta
        reps = config.errors.replicate(run_group(frozen[0]), key, config)
        se, n_failed = config.errors.summarize(reps)
        surrogate_config = control_variates.surrogate_config(config)
        fields, se, cv_stats = config.errors.apply(
            problem, algorithm, key, config, fields, se, reps,
            lambda prob, k: solve_traced(no_gradient(prob), frozen[1], k, surrogate_config, n_real=n_real,
                                         n_live=n_live, estimate_history=False),
            lambda prob: config.errors.replicate(run_group(no_gradient(prob)), key, config))
    else:
        se, n_failed = config.errors.estimate(run_group(frozen[0]), key, config)
    if n_real is not None:  # times past n_real were not solved: zero
        fields = {k: None if v is None else _zero_past(v, n_real, k in _SQUARES) for k, v in fields.items()}
        eps_se = None if eps_se is None else _zero_past(eps_se, n_real, False)
        cv_stats = {k: _zero_past(v, n_real, False) for k, v in cv_stats.items()}
    checks, valid, first_bad = traced_checks(problem, algorithm, T)
    if checks:  # an invalid point returns no numbers (NaN values and NaN gradients)
        fields = {k: None if v is None else _validate.poison(valid, v) for k, v in fields.items()}
    finite = {k: v for k, v in fields.items() if k not in ("C_perp", "P", "q") and v is not None}  # q is checked for divergence
    result = outcome(finite, fields["q"], out.converged, valid, first_bad, checks)
    pivots = out.pivots[:T]  # the step-T pivots enter no noise (there is no step T -> T+1)
    if n_real is not None:
        pivots = jnp.where((jnp.arange(T) < n_real)[:, None], pivots, jnp.ones_like(pivots))
    stats = dict(n_clipped=jnp.sum(pivots <= 0), n_negative=jnp.sum(pivots < 0), n_iter=jnp.asarray(out.n_iter),
                 **cv_stats)
    traj = _trajectories(base, rnd, out, fields, config.save_trajectories) if config.save_trajectories else None
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(rnd.dts[:-1])])
    if se is not None:
        stats["n_groups_failed"] = n_failed
    if estimate_history and history is not None and history.compressed and history.estimate:
        err_eps, err_q = history_error(lambda k, c: solve_traced(*frozen, k, c, estimate_history=False), key, config,
                                       fields)
        stats.update(history_error=err_eps, history_error_q=err_q)
        worse = (err_eps > history.atol) | (err_q > history.rtol) | ~jnp.isfinite(err_eps + err_q)
        result = Result.of(jnp.where((result.code == RESULTS.successful) & worse, RESULTS.history_tolerance,
                                     result.code), result.check, result.checks)
    return Solution(t=t, result=result, stats=stats, seed=seed, problem=problem, algorithm=algorithm, config=config,
                    trajectories=traj, se=se, eps_gen_integral_se=eps_se, **fields)


def _observables(problem, net, rnd, out, key, config):
    """The observables from the sweep's kernels, in ``K x K`` blocks (docs/equations.md,
    sections 2.4 and 6.2): ``R``, ``P`` and ``C_perp`` from the weight side, ``C`` and
    ``q = C(t, t)`` with the magnetisation, and the test error; a single unit's without unit
    axes. Returns the fields and the standard error of a committee's test-error integral."""
    base, rows, m = net.problem, out.rows, out.m
    if out.q_perp is not None:  # a compressed history: q from the weight side of the loop, no squares
        return _compressed_observables(problem, net, rnd, out, key, config)
    R, P = weights.response_blocks(base.lam, rows.lam_hat, rows.M_R, rnd.dts, rnd.update)
    C_perp = jnp.transpose(weights.correlation_blocks(R, P, rows.M_C, base.R0, rnd.dts, rnd.temperature),
                           (0, 2, 1, 3))  # [k, l, a, b]
    C = C_perp + m[:, None, :, None] * m[None, :, None, :]
    q = jnp.einsum("kkab->kab", C)
    fields = dict(m=m, q=q, C=C, C_perp=C_perp, R=R, P=P, train_loss=rows.train_loss, train_acc=rows.train_acc,
                  lam_hat=rows.lam_hat, mu=rows.mu, M_C=rows.M_C, M_R=rows.M_R)
    if isinstance(problem, Committee):
        eps, eps_se = test_error(problem, rnd, m, jnp.einsum("kkab->kab", C_perp), key, config)
        return dict(fields, eps_gen=eps), eps_se
    one = {"m": m[:, 0], "q": q[:, 0, 0], "mu": rows.mu[:, 0], "lam_hat": rows.lam_hat[:, 0, 0], "P": P[:, 0, 0]}
    fields = {k: one.get(k, v[..., 0, 0] if k in _SQUARES else v) for k, v in fields.items()}
    bias = None if out.bias is None else out.bias[:, 0]
    fields["eps_gen"] = base.eps_gen(fields["m"], fields["q"], bias)
    if bias is not None:
        fields["bias"] = bias
    return fields, None


def _compressed_observables(problem, net, rnd, out, key, config):
    """The observables of a compressed history (docs/equations.md, section 2.10): ``q`` from
    the weight side carried in the loop; the kernels' rows over the slots of each step
    (``M_C[k, s]`` averaged, ``M_R[k, s]`` the eta-weighted sum over the slot) and no
    two-time squares (``C``, ``C_perp``, ``R``, ``P`` are ``None``)."""
    rows, m = out.rows, out.m
    q = out.q_perp + m[:, :, None] * m[:, None, :]
    fields = dict(m=m, q=q, C=None, C_perp=None, R=None, P=None, train_loss=rows.train_loss,
                  train_acc=rows.train_acc, lam_hat=rows.lam_hat, mu=rows.mu, M_C=rows.M_C, M_R=rows.M_R)
    if isinstance(problem, Committee):
        eps, eps_se = test_error(problem, rnd, m, out.q_perp, key, config)
        return dict(fields, eps_gen=eps), eps_se
    one = {"m": m[:, 0], "q": q[:, 0, 0], "mu": rows.mu[:, 0], "lam_hat": rows.lam_hat[:, 0, 0],
           "M_C": rows.M_C[..., 0, 0], "M_R": rows.M_R[..., 0, 0]}
    fields = dict(fields, **one)
    bias = None if out.bias is None else out.bias[:, 0]
    fields["eps_gen"] = net.problem.eps_gen(fields["m"], fields["q"], bias)
    if bias is not None:
        fields["bias"] = bias
    return fields, None


def _trajectories(problem, rnd, out, fields, n_save):
    """``u``, ``g``, the fields ``r``, the selection ``s``, clusters ``c`` and labels ``y`` of
    the first ``n_save`` trajectories of a single unit."""
    state = out.state
    u, g = state.u[:, 0, :n_save], state.g[:, 0, :n_save]
    proj = problem.model.projection(rnd.c, rnd.h0, problem.delta)[None, :n_save]
    bias = fields.get("bias")
    r = fields["m"][:, None] * proj + u + (0.0 if bias is None else bias[:, None])
    return dict(u=u, g=g, r=r, s=rnd.s[:, :n_save], c=rnd.c[:n_save], y=rnd.y[:n_save])


def _zero_past(x, stop, square: bool):
    """``x`` with every time index past ``stop`` zero (the first axis, and the second of a
    ``square`` with two time axes)."""
    size = x.shape[0]
    keep = jnp.arange(size) <= stop
    mask = keep[:, None] & keep[None, :] if square else keep
    return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x, jnp.zeros_like(x))
