"""Hyperparameter optimisation through the DMFT with optax.

``tune`` minimises an objective of the :class:`~dmft_jax.Solution` (default: ``eps_gen`` at
the final step; the problem may be a :class:`~dmft_jax.Committee`, tuned through JAX's own
reverse mode and without the noise report) over a chosen subset of ``lam``, ``R0``, ``eta``,
``b``, ``tau`` by gradient descent through the whole solver (pathwise derivatives; likelihood-ratio weights for the
parameters that shape the discrete draws, see :mod:`dmft_jax._engine.process`).

Schedule parameters are tunable as ``"eta.<field>"`` (e.g. ``"eta.init"``, ``"eta.rate"``,
``"eta.values"`` of :mod:`dmft_jax._algorithms.schedules`), kept positive by ``softplus``; those of a
batch-fraction schedule as ``"b.<field>"``: ``init``, ``floor``, ``values`` (fractions) by a
``sigmoid`` into ``(0, 1)``, ``rate`` by ``softplus``.

Constraints: ``lam >= 0`` and ``R0 > 0`` by projection (the optimiser moves the value itself,
which is then clipped to ``lam >= 0``, ``R0 >= 1e-8``; so ``lam = 0`` is a valid start and an
optimum on the boundary is reached); the others by reparametrisation (unconstrained ``theta``):
``eta = softplus``, ``b = sigmoid`` (so ``b < 1``),
``tau = tau_min + softplus`` with ``tau_min = eta max(1, b / (1 - b))`` (persistent SGD's
``tau >= eta`` and ``b eta <= (1 - b) tau``).

Horizon: the number of steps ``T = floor(t_max / eta)`` is fixed by the initial ``eta``;
when ``eta`` is tuned the objective is taken after ``T`` steps (a fixed budget of updates),
not at a fixed time.

Random numbers: ``refresh=False`` (default) keeps one key, so the objective is a smooth
deterministic function (common random numbers) whose optimum carries the Monte Carlo error
of one solve; ``refresh=True`` draws a new key each step (stochastic gradient, unbiased
in expectation; use a decaying learning rate).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._util import as_dtype, as_key, cast_tree
from .._solvers.adjoint import AutodiffAdjoint, SweepAdjoint
from .._algorithms.algorithms import AbstractAlgorithm
from .._algorithms.bounds import expand
from .._problem.readouts import Committee
from .._solve.control_variates import ControlVariates
from .._solve.standard_errors import AbstractErrors, GroupErrors
from .._problem.problem import Problem
from .._response.response import ExactResponse, as_response
from .._results.results import RESULTS, AbstractOutcome, Result
from .._solve.configure import committee_keywords, configure, trajectories_of
from .._solve.progress import NoProgressMeter, steps_meter
from .._solve.solve import solve
from .._solvers.sweep import CausalSweep
from .._engine.timegrid import count_steps
from .tune_noise import announce, noise_report, resolve_errors

PROBLEM_PARAMS = ("lam", "R0")


class TuneResult(AbstractOutcome):
    """``params``: tuned values; ``objective``: its value at the tuned point; ``history``:
    objective and parameters per step; ``problem``/``algorithm``: the tuned objects;
    ``solution``: the solve at the tuned point; ``result``: the outcome (that solve's).

    With ``errors`` (default :class:`~dmft_jax.GroupErrors`): ``objective_se``, the standard
    error of ``objective``; ``start_objective``, the objective at the start (same key);
    ``improvement = objective - start_objective`` and ``improvement_se``, the standard error
    of that difference from replicas that share their random numbers at both points (common
    random numbers: far below ``objective_se`` when the two points are close);
    ``within_noise``: ``|improvement| < 2 improvement_se``. ``None`` without errors."""

    params: dict
    objective: Any
    history: dict
    problem: Problem
    algorithm: AbstractAlgorithm
    solution: Any
    result: Result
    objective_se: Any = None
    start_objective: Any = None
    improvement: Any = None
    improvement_se: Any = None

    @property
    def within_noise(self):
        """``True`` when the improvement is within two standard errors of zero (a zero
        improvement included); ``None`` without errors or when a replica failed (NaN)."""
        if self.improvement_se is None or not np.isfinite(self.improvement_se):
            return None
        return bool(abs(float(self.improvement)) <= 2 * float(self.improvement_se))


def _project(theta):
    """The projected parameters: ``lam >= 0``, ``R0 >= 1e-8``."""
    bounds = {"lam": 0.0, "R0": 1e-8}
    return {n: (jnp.maximum(v, bounds[n]) if n in bounds else v) for n, v in theta.items()}


def _base(problem):
    """The :class:`Problem` whose scalars are tuned (a committee's own problem)."""
    return problem.problem if isinstance(problem, Committee) else problem


def _declared(algorithm) -> dict:
    """Every tunable name of ``algorithm`` (its declared fields, a schedule's array fields as
    ``name.<field>``) -> ``(field, sub-field or None, bound)``, in the declared order."""
    out = {}
    for name, bound in algorithm.tunable().items():
        for full, b in expand(name, getattr(algorithm, name, None), bound).items():
            out[full] = (name, full[len(name) + 1:] or None, b)
    return out


def _get(algorithm, field, sub):
    value = getattr(algorithm, field)
    return value if sub is None else getattr(value, sub)


def _set(algorithm, field, sub, value):
    if sub is None:
        return eqx.tree_at(lambda a: getattr(a, field), algorithm, value, is_leaf=lambda x: x is None)
    return eqx.tree_at(lambda a: getattr(getattr(a, field), sub), algorithm, value)


def _to_theta(problem, algorithm, names, T):
    theta = {}
    for n in names:
        if n in PROBLEM_PARAMS:
            value = float(getattr(_base(problem), n))
            if n == "R0" and not value > 0:
                raise ValueError("R0: tuning R0 needs a start R0 > 0 (the pathwise derivative in R0 is undefined "
                                 "at R0 = 0)")
            theta[n] = value
    declared = _declared(algorithm)
    for n, (field, sub, bound) in declared.items():  # in order: a bound may read the fields before it
        if n in names:
            theta[n] = bound.inverse(n, np.asarray(_get(algorithm, field, sub)), algorithm, T)
    return {k: jnp.asarray(v) for k, v in theta.items()}


def _from_theta(theta, problem, algorithm, T):
    """The problem and algorithm at ``theta`` (every tuned value mapped into its declared range,
    in the declared order)."""
    prob_vals = {n: theta[n] for n in PROBLEM_PARAMS if n in theta}
    problem = eqx.tree_at(lambda p: [getattr(_base(p), n) for n in prob_vals], problem, list(prob_vals.values()))
    for n, (field, sub, bound) in _declared(algorithm).items():
        if n in theta:
            algorithm = _set(algorithm, field, sub, bound.forward(theta[n], algorithm, T))
    return problem, algorithm


def _value(problem, algorithm, name):
    """Current value of a tuned parameter (a float, or a list for array schedule fields)."""
    if name in PROBLEM_PARAMS:
        v = np.asarray(getattr(_base(problem), name))
    else:
        field, _, sub = name.partition(".")
        v = np.asarray(_get(algorithm, field, sub or None))
    return float(v) if v.ndim == 0 else v.tolist()


def _outcome(sol, value, history, noise, refresh) -> Result:
    """The tuning's outcome: the tuned solve's, or ``RESULTS.worse`` (with a warning) when the
    objective is worse than at the start: beyond twice the standard error of the difference when
    there are errors, else on the same key (``refresh=False``: the objective is a deterministic
    function, so any increase beyond rounding is real)."""
    start = history["objective"][0]
    if noise.get("improvement_se") is not None and np.isfinite(noise["improvement_se"]):
        worse = noise["improvement"] > 2 * noise["improvement_se"]
    else:
        worse = not refresh and float(value) > start + 1e-9 * (1 + abs(start))
    if not (bool(sol.ok) and worse):
        return sol.result
    import warnings

    warnings.warn(f"dmft_jax.tune: {RESULTS.worse.message} (objective {float(value):.6g}, start {start:.6g})",
                  RuntimeWarning, stacklevel=3)
    return Result.of(RESULTS.worse)


def final_eps_gen(sol):
    """Default objective: generalisation error at the final step."""
    return sol.eps_gen[-1]


def _checked_params(algorithm, params) -> list:
    """The names to tune, each checked against what ``algorithm`` declares
    (:meth:`~dmft_jax.AbstractAlgorithm.tunable`)."""
    allowed = list(PROBLEM_PARAMS) + list(_declared(algorithm))
    if isinstance(params, str) or not all(isinstance(n, str) for n in params):
        raise ValueError(f"params must be a list of names, e.g. [\"lam\", \"eta\"]; got {params!r} (valid names: "
                         f"{', '.join(allowed)})")
    params = list(params)
    if not params:
        raise ValueError("params: give at least one of " + ", ".join(allowed))
    if len(set(params)) != len(params):
        raise ValueError(f"params: each name once; got {params}")
    for n in params:
        if n not in allowed:
            raise ValueError(f"params: {n!r} cannot be tuned for {type(algorithm).__name__}; "
                             f"valid names are {sorted(allowed)}")
    return params


def _legacy_n_chi(response, solve_kwargs):
    if "n_chi" in solve_kwargs:
        import warnings

        warnings.warn("tune(n_chi=...) is deprecated; use response=dj.ExactResponse(n_chi)", DeprecationWarning,
                      stacklevel=3)
        response = as_response(response, solve_kwargs.pop("n_chi"))
    return response


def _mode(mode, response, solve_kwargs, n_params, algorithm=None, has_bias=False):
    """``(mode, adjoint)``: reverse mode by the sweep's adjoint where the solve options allow it."""
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse'; got {mode!r}")
    if "adjoint" in solve_kwargs:
        raise ValueError("adjoint: set by tune's mode, not passed through")
    if any(k in solve_kwargs for k in ("method", "devices", "time_blocks")):
        raise ValueError("tune: pass solver=..., trajectories=dj.Trajectories(sharding=...) (the former "
                         "method/devices/time_blocks keywords "
                         "are not accepted here)")
    adjoint_ok = (isinstance(solve_kwargs.get("solver", CausalSweep()), CausalSweep)
                  and getattr(solve_kwargs.get("trajectories"), "sharding", None) is None
                  and isinstance(as_response(response), ExactResponse)
                  and (algorithm is None or (algorithm.beta is None and algorithm.temperature is None))
                  and not has_bias)
    if mode == "auto":
        mode = "reverse" if adjoint_ok or n_params > 4 else "forward"
    return mode, SweepAdjoint() if mode == "reverse" and adjoint_ok else AutodiffAdjoint()


def _warn_if_stuck(history, params):
    stuck = [n for n in params if len(history[n]) > 1 and all(np.array_equal(history[n][0], v) for v in history[n])]
    if stuck:
        import warnings

        warnings.warn(f"dmft_jax.tune: {', '.join(stuck)} never moved from the start: a zero gradient at every "
                      "step (not tuned), or a gradient pushing against the bound lam >= 0 (the bound is then the "
                      "optimum)", RuntimeWarning, stacklevel=3)


class _TuneStatic(eqx.Module):
    """The options of the objective that are part of its compiled program."""

    T: int = eqx.field(static=True)
    n_traj: int = eqx.field(static=True)
    response: Any = eqx.field(static=True)
    adjoint: Any = eqx.field(static=True)
    objective: Any = eqx.field(static=True)
    mode: str = eqx.field(static=True)
    solve_items: tuple = eqx.field(static=True)


@eqx.filter_jit
def _value_and_grad(theta, k, problem, algorithm, static: _TuneStatic):
    def loss(theta):
        prob, algo = _from_theta(theta, problem, algorithm, static.T)
        sol = solve(prob, algo, n_steps=static.T, n_traj=static.n_traj, response=static.response, key=k,
                    adjoint=static.adjoint, **dict(static.solve_items))
        return static.objective(sol)

    if static.mode == "forward":
        return loss(theta), jax.jacfwd(loss)(theta)
    return jax.value_and_grad(loss)(theta)


def _optimise(value_and_grad, theta, optimizer, steps, fixed_key, base_key, where, progress, log_every,
              meter=None):
    """``steps`` optimiser steps from ``theta``: ``(theta, history)``, the objective and every
    parameter per step. ``fixed_key``: the key of every step (``None``: a fresh key per step
    from ``base_key``); ``where``: ``(problem, algorithm, T, params)`` of the tuned values. A
    non-finite objective or gradient stops it, naming the step and the point."""
    import optax

    problem, algorithm, T, params = where
    state = optimizer.init(theta)
    history = {"objective": [], **{n: [] for n in params}}
    for i in range(steps):
        k = jax.random.fold_in(base_key, i) if fixed_key is None else fixed_key
        value, grads = value_and_grad(theta, k)
        bad = [n for n, g in grads.items() if not np.all(np.isfinite(np.asarray(g)))]
        if not np.isfinite(float(value)) or bad:
            at = ", ".join(f"{n}={_value(*_from_theta(theta, problem, algorithm, T), n)}" for n in params)
            what = "objective" if not bad else "gradient in " + ", ".join(bad)
            raise RuntimeError(f"dmft_jax.tune: non-finite {what} at step {i} (at {at}); the solve there diverged "
                               "or a parameter reached a value where its derivative is undefined: try a smaller "
                               "optimiser learning rate or another start")
        prob, algo = _from_theta(theta, problem, algorithm, T)
        history["objective"].append(float(value))
        for n in params:
            history[n].append(_value(prob, algo, n))
        if progress and (i % log_every == 0 or i == steps - 1):
            vals = ", ".join(f"{n}={np.asarray(history[n][-1]).round(5).tolist()}" for n in params)
            print(f"tune step {i:4d}: objective {float(value):.6f}  {vals}", file=sys.stderr, flush=True)
        updates, state = optimizer.update(grads, state, theta)
        theta = _project(optax.apply_updates(theta, updates))
        if meter is not None:
            meter.step(i, steps)
    return theta, history


def _checked_options(steps, log_every, refresh, progress, objective, optimizer):
    """tune's own options, refused by name: ``(steps, log_every, refresh, progress)``."""
    steps = _validate.integer("steps", steps, 1)
    log_every = _validate.integer("log_every", log_every, 1)
    refresh, progress = _validate.flag("refresh", refresh), _validate.flag("progress", progress)
    if not callable(objective):
        raise ValueError(f"objective must be a function of the Solution returning a number (default: the final "
                         f"eps_gen); got {objective!r}")
    if optimizer is not None and not (callable(getattr(optimizer, "init", None))
                                      and callable(getattr(optimizer, "update", None))):
        raise ValueError(f"optimizer must be an optax GradientTransformation (e.g. optax.adam(0.05)); got "
                         f"{optimizer!r}")
    return steps, log_every, refresh, progress


def tune(
    problem: Problem,
    algorithm: AbstractAlgorithm,
    params: Sequence[str],
    *,
    objective: Callable = final_eps_gen,
    t_max: float = 20.0,
    n_traj: int = 2**14,
    response=None,
    key=0,
    optimizer=None,
    steps: int = 100,
    refresh: bool = False,
    progress: bool = False,
    log_every: int = 10,
    progress_meter=None,
    mode: str = "auto",
    errors: AbstractErrors | str | None = "auto",
    **solve_kwargs,
) -> TuneResult:
    """Minimise ``objective(solve(...))`` over ``params`` with ``optimizer`` (default
    ``optax.adam(0.05)`` on the unconstrained parameters) for ``steps`` steps.

    ``mode``: ``"reverse"`` (the sweep's adjoint, :class:`~dmft_jax.SweepAdjoint`: all parameters
    for ~2.2-2.8x a solve), ``"forward"`` (a JVP per parameter, ~4x a solve each) or ``"auto"``
    (reverse unless a ``ProbeResponse``, ``DampedIteration`` or sharding excludes the adjoint; then
    forward up to 4 parameters, else JAX's reverse mode). ``response``, ``**solve_kwargs``: as ``solve``.

    ``errors``: standard errors of the tuned objective and of its improvement, a warning when
    that is within the noise (:class:`TuneResult`): an :class:`~dmft_jax.AbstractErrors`,
    ``None`` or ``"auto"`` (``GroupErrors`` with the largest of 16, 8, 4 groups that splits
    ``n_traj``); about three solves more.

    ``progress_meter`` counts the optimiser steps (default: a tqdm bar for a run estimated
    above a few seconds on a CPU); ``progress=True`` also prints the objective and the
    parameters every ``log_every`` steps; a meter in ``solve_kwargs`` is the inner solves'."""
    response = _legacy_n_chi(response, solve_kwargs)
    problem = committee_keywords(problem, solve_kwargs)
    solve_kwargs["trajectories"] = trajectories_of(solve_kwargs.pop("trajectories", None), solve_kwargs)
    params = _checked_params(algorithm, params)
    steps, log_every, refresh, progress = _checked_options(steps, log_every, refresh, progress, objective, optimizer)
    T = count_steps(algorithm, t_max)
    import optax  # here, not at import of dmft_jax (0.1 s a process that does not tune saves)
    optimizer, theta, base_key = optimizer or optax.adam(0.05), _to_theta(problem, algorithm, params, T), as_key(key)
    mode, adjoint = _mode(mode, response, solve_kwargs, len(params), algorithm,
                          isinstance(problem, Committee) or problem.bias is not None)
    solve_kwargs.setdefault("progress_meter", NoProgressMeter())  # the steps' meter: tune's own
    static = _TuneStatic(T, n_traj, response, adjoint, objective, mode, tuple(sorted(solve_kwargs.items())))
    errors = resolve_errors(errors, n_traj, solve_kwargs["trajectories"].antithetic)
    config = configure(problem, algorithm, None, n_traj, n_steps=T, response=response, errors=errors,
                       **{k: v for k, v in solve_kwargs.items() if k != "throw"})

    # parameters as arrays of one dtype (a Python float set by eqx.tree_at would be static)
    dtype = as_dtype(solve_kwargs.get("dtype"))
    prob_arr, algo_arr = problem.astype(dtype), cast_tree(algorithm, dtype)

    def value_and_grad(theta, k):  # compiled once per sizes and options, not once per tune() call
        return _value_and_grad(theta, k, prob_arr, algo_arr, static)

    theta, history = _optimise(value_and_grad, theta, optimizer, steps, base_key if not refresh else None, base_key,
                               (problem, algorithm, T, params), progress, log_every,
                               steps_meter(progress_meter, steps, config))
    prob, algo = _from_theta(theta, problem, algorithm, T)
    _warn_if_stuck(history, params)
    sol = solve(prob, algo, n_steps=T, n_traj=n_traj, response=response, key=base_key, errors=errors,
                **solve_kwargs)
    tuned = {n: _value(prob, algo, n) for n in params}
    value = objective(sol)
    noise = {}
    if isinstance(errors, GroupErrors):  # the improvement against the Monte Carlo noise
        start = _from_theta(_to_theta(problem, algorithm, params, T), prob_arr, algo_arr, T)
        corrected = dict(errors=errors) if isinstance(errors, ControlVariates) else {}  # the start corrected alike
        start_value = (objective(solve(*start, n_steps=T, n_traj=n_traj, response=response, key=base_key, **corrected,
                                       **solve_kwargs)) if refresh or corrected else history["objective"][0])
        end = (prob.astype(dtype), cast_tree(algo, dtype))
        noise = noise_report(objective, start, end, base_key, config, errors, start_value, value)
    res = TuneResult(params=tuned, objective=value, history=history, problem=prob, algorithm=algo, solution=sol,
                     result=_outcome(sol, value, history, noise, refresh), **noise)
    announce(res, progress)
    return res
