"""The checks of a solve's inputs and its static :class:`~dmft_jax.SolveConfig`, for every
number of units (docs/equations.md, sections 2 and 6.2); the former keywords mapped onto the
strategies that replaced them."""
from __future__ import annotations



from .. import _validate
from .._util import as_dtype, warn_user
from .._algorithms.algorithms import AbstractAlgorithm
from .._engine.generalisation import quadrature_size
from .._engine.sharding import device_ids
from .._problem.losses import check_for_solver
from .._problem.problem import AbstractModel, Problem
from .._problem.readouts import Committee
from .._response.probes import ProbeResponse
from .._response.response import ExactResponse, as_response
from .._engine.history import MIN_ESTIMATE, CompressedHistory, FullHistory
from .._solvers.adjoint import AbstractAdjoint, AutodiffAdjoint, SweepAdjoint
from .._solvers.base import AbstractSolver, resolve_pivot_rtol
from .._solvers.iteration import DampedIteration
from .._solvers.sweep import CausalSweep
from .._engine.timegrid import count_steps
from .config import SolveConfig
from .memory import check_memory, long_run, step_budget
from .progress import AbstractProgressMeter, NoProgressMeter, TextProgressMeter, TqdmProgressMeter
from .standard_errors import AbstractErrors, NoErrors
from .trajectories import FORMER, Trajectories

_DEPRECATED = {
    "n_chi": "response=dj.ExactResponse(n_chi)",
    "method": "solver=dj.CausalSweep() or solver=dj.DampedIteration(...)",
    "damping": "solver=dj.DampedIteration(damping=...)",
    "max_iter": "solver=dj.DampedIteration(max_iter=...)",
    "rtol": "solver=dj.DampedIteration(rtol=...)",
    "atol": "solver=dj.DampedIteration(atol=...)",
    "time_blocks": "solver=dj.CausalSweep(time_blocks)",
    "progress": "progress_meter=dj.TextProgressMeter()",
    "devices": "trajectories=dj.Trajectories(sharding=...)",
    "pivot_rtol": "solver=dj.CausalSweep(pivot_rtol=...) (or DampedIteration(pivot_rtol=...))",
}


def _warn_deprecated(names) -> None:
    """A ``DeprecationWarning`` naming the replacement of each former keyword in ``names``."""
    for name in names:
        warn_user(f"solve({name}=...) is deprecated; use {_DEPRECATED[name]}")


def _legacy_options(deprecated, solver, response, adjoint, progress_meter, sharding):
    """Map the former keywords onto strategies, with a ``DeprecationWarning`` each."""
    unknown = set(deprecated) - set(_DEPRECATED) - {"adjoint"}
    if unknown:
        raise TypeError(f"solve() got unexpected keyword arguments {sorted(unknown)}")
    _warn_deprecated(deprecated)
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
              progress_meter=None, errors=None, n_steps=None, trajectories=None, dtype=None, batch=1,
              **deprecated) -> SolveConfig:
    """Validate the options of :func:`~dmft_jax.solve` for a single unit or a
    :class:`~dmft_jax.Committee` and return the static :class:`~dmft_jax.SolveConfig` of the
    compiled core (``batch`` points are checked against the device memory together)."""
    trajectories = trajectories_of(trajectories, deprecated)
    auto_meter = progress_meter is None and "progress" not in deprecated
    solver, response, adjoint, progress_meter, sharding, errors = _strategies(
        solver, response, adjoint, progress_meter, trajectories.sharding, errors, deprecated)
    antithetic, save = trajectories.antithetic, trajectories.save
    K = check_problem(problem, algorithm)
    n_traj = _validate.integer("n_traj", n_traj, 2)
    dtype = as_dtype(dtype)
    history = solver.history if isinstance(solver, CausalSweep) else FullHistory()
    # saved trajectories are each step's values: the automatic choice keeps the full history for them
    auto = history is None and _compressible(response, algorithm, adjoint) and not save
    # T checked against memory before anything of its size is built (its step sizes included)
    T = count_steps(algorithm, t_max, n_steps, step_budget(n_traj, dtype, K, batch,
                                                           CompressedHistory() if auto else history))
    if isinstance(solver, CausalSweep) and history is None:  # the automatic choice, by the number of steps
        history = CompressedHistory() if auto and T > AUTO_COMPRESS_STEPS else FullHistory()
        solver = CausalSweep(solver.time_blocks, solver.pivot_rtol, solver.buckets, history)
    response = _history_response(history, response, algorithm, adjoint)
    if antithetic and n_traj % 2:
        raise ValueError(f"n_traj must be even when antithetic=True; got {n_traj}")
    errors.check(n_traj, antithetic)
    if save > n_traj:
        raise ValueError(f"Trajectories.save (save_trajectories) must be in [0, n_traj = {n_traj}]; got {save}")
    solver.check(T)
    if history.compressed and history.estimate and n_traj < MIN_ESTIMATE:
        raise ValueError(f"n_traj = {n_traj}: a CompressedHistory's error estimate (the automatic choice beyond "
                         f"{AUTO_COMPRESS_STEPS} steps) compares two compressions on the same trajectories and needs "
                         f"at least {MIN_ESTIMATE} of them (fewer make the estimate itself noise: on 2 it reads 0); "
                         "raise n_traj, "
                         "or pass CausalSweep(history=dj.CompressedHistory(estimate=False)) (no error control) or "
                         "dj.FullHistory()")
    est = as_response(response).resolve(T, n_traj, dtype.itemsize, K)
    ids = device_ids(sharding)
    if ids is not None and n_traj % len(ids):
        raise ValueError(f"sharding: n_traj = {n_traj} must split evenly over {len(ids)} devices")
    adjoint.check(solver, est, ids is not None)
    _check_combinations(problem, algorithm, solver, adjoint, save)
    if auto_meter and batch == 1 and long_run(T, n_traj, est, dtype, K, 1 if isinstance(errors, NoErrors) else 2,
                                              history):
        progress_meter = TqdmProgressMeter()  # a run of more than a few seconds shows its progress
    blocks = solver.blocks(T) if isinstance(solver, CausalSweep) else 1
    pivot_rtol = resolve_pivot_rtol(solver, dtype)
    committee = isinstance(problem, Committee)
    config = SolveConfig(n_steps=T, n_traj=n_traj, solver=solver, response=est, adjoint=adjoint,
                         progress_meter=progress_meter, devices=ids, antithetic=bool(antithetic),
                         moment_matching=bool(trajectories.moment_matching), pivot_rtol=float(pivot_rtol),
                         dtype=str(dtype), save_trajectories=int(save), errors=errors, K=K,
                         cross_memory=problem.cross_memory if committee else True,
                         symmetric=problem.symmetric if committee else False,
                         quadrature=quadrature_size(problem) if committee else 0)
    errors.check_solve(problem, algorithm, config)
    check_memory(T, n_traj, est, dtype, batch, blocks, errors.replicas(config), K, config.quadrature, history)
    return config


# a solve of more steps than this, with CausalSweep() as it comes, runs with a CompressedHistory (linear
# cost in T) where it can: the default or probed response, a plain step, the autodiff adjoint
AUTO_COMPRESS_STEPS = 2000


def _compressible(response, algorithm, adjoint) -> bool:
    return (response is None or isinstance(response, ProbeResponse)) and getattr(algorithm, "beta", None) is None \
        and not isinstance(adjoint, SweepAdjoint)


def _history_response(history, response, algorithm, adjoint):
    """The response estimator of a solve with this ``history``: a compressed history takes
    :class:`~dmft_jax.ProbeResponse` (its default) and refuses what it does not cover, by name."""
    if not history.compressed:
        return response
    if isinstance(response, ExactResponse):
        raise ValueError("response: a CompressedHistory needs ProbeResponse(n_probes) (its default); the exact "
                         "response stores chi over every pair of steps, O(T^2) by nature")
    if getattr(algorithm, "beta", None) is not None:
        raise ValueError("algorithm.beta: a CompressedHistory covers plain steps; momentum (beta) is solved with the "
                         "full history (CausalSweep(history=dj.FullHistory()))")
    if isinstance(adjoint, SweepAdjoint):
        raise ValueError("adjoint: SweepAdjoint differentiates the full history's exact response; a CompressedHistory "
                         "is differentiated by AutodiffAdjoint() (the default)")
    return ProbeResponse() if response is None else response


def trajectories_of(trajectories, options: dict) -> Trajectories:
    """The :class:`~dmft_jax.Trajectories` of a solve: ``trajectories`` (default
    ``Trajectories()``) with the former keywords of ``solve`` (``antithetic=``,
    ``moment_matching=``, ``sharding=``, ``save_trajectories=``, popped from ``options``, each
    with a ``DeprecationWarning``) set on it."""
    explicit = trajectories is not None
    trajectories = Trajectories() if trajectories is None else trajectories
    if not isinstance(trajectories, Trajectories):
        raise ValueError(f"trajectories must be a dmft_jax.Trajectories (e.g. Trajectories(antithetic=False)); got "
                         f"{trajectories!r}")
    given = {n: options.pop(n) for n in FORMER if n in options}
    if not given:
        return trajectories
    if explicit:  # one place for each option: the former keyword would silently win
        raise ValueError(f"{', '.join(given)}: given beside trajectories=dj.Trajectories(...); set "
                         f"{', '.join(FORMER[n] for n in given)} in the Trajectories alone")
    for name in given:
        warn_user(f"solve({name}=...) is deprecated; use trajectories=dj.Trajectories({FORMER[name]}=...)")
    fields = {f: getattr(trajectories, f) for f in FORMER.values()}
    fields.update({FORMER[n]: v for n, v in given.items()})
    try:
        return Trajectories(**fields)
    except ValueError as err:
        raise ValueError(f"{', '.join(given)}: {err}") from None


def _strategies(solver, response, adjoint, progress_meter, sharding, errors, deprecated):
    """The strategies of a solve, defaulted, mapped from the former keywords and checked by kind."""
    if isinstance(adjoint, bool):
        warn_user("solve(adjoint=True/False) is deprecated; use adjoint=dj.SweepAdjoint() or dj.AutodiffAdjoint()")
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
    return solver, response, adjoint, progress_meter, sharding, errors


def committee_keywords(problem, options: dict):
    """The former committee options of ``solve`` (``symmetric=``, ``cross_memory=``), now
    :class:`~dmft_jax.Committee`'s own: popped from ``options``, with a ``DeprecationWarning``,
    and set on the committee (refused by name for a single unit)."""
    given = {n: options.pop(n) for n in ("symmetric", "cross_memory") if n in options}
    if not given:
        return problem
    if not isinstance(problem, Committee):
        raise ValueError(f"{', '.join(given)}: options of a committee machine (dj.Committee(..., "
                         f"{next(iter(given))}=...)); this problem is a single unit")
    defaults = {"symmetric": False, "cross_memory": True}
    for name, value in given.items():
        if getattr(problem, name) != defaults[name] and value != getattr(problem, name):
            raise ValueError(f"{name}: the committee was built with {name}={getattr(problem, name)} and the solve "
                             f"asks {name}={value}; set it on dj.Committee(..., {name}=...) alone")
        warn_user(f"solve({name}=...) is deprecated; build the committee with dj.Committee(..., {name}=...)")
    opts = {"symmetric": problem.symmetric, "cross_memory": problem.cross_memory, **given}
    return Committee(problem.problem, problem.readout, problem.m0, **opts)


def _check_combinations(problem, algorithm, solver, adjoint, save_trajectories):
    """What the strategies do not cover, refused by name (the capability and the problem)."""
    committee = isinstance(problem, Committee)
    if isinstance(adjoint, SweepAdjoint):
        if committee:
            raise ValueError(f"adjoint: the hand-written SweepAdjoint is built for a single unit; a committee "
                             f"(K = {problem.K}) is differentiated by AutodiffAdjoint(), the default")
        if algorithm.beta is not None or algorithm.temperature is not None or problem.bias is not None:
            raise ValueError("adjoint: SweepAdjoint does not cover momentum (beta), Langevin noise (temperature) or "
                             "a learnable bias; use AutodiffAdjoint() (the default)")
    if save_trajectories and getattr(getattr(solver, "history", None), "compressed", False):
        raise ValueError(f"Trajectories.save (save_trajectories = {save_trajectories}): a CompressedHistory keeps "
                         "the far past as block averages, not each step's values; save trajectories with the full "
                         "history (CausalSweep(history=dj.FullHistory())) or use Trajectories(save=0)")
    if committee and save_trajectories:
        raise ValueError(f"Trajectories.save (save_trajectories): saved trajectories are built for a single unit; "
                         f"this committee has K = {problem.K} units (use Trajectories(save=0))")
    if not committee and problem.bias is not None and not isinstance(solver, CausalSweep):
        raise ValueError(f"solver: a learnable bias is solved by CausalSweep only; got {type(solver).__name__}")


def check_problem(problem, algorithm) -> int:
    """Refuse what the DMFT cannot solve, naming it; the number of units ``K``."""
    if not isinstance(problem, (Problem, Committee)):
        raise ValueError(f"problem must be a dmft_jax.Problem or a dmft_jax.Committee; got {type(problem).__name__}")
    if not isinstance(algorithm, AbstractAlgorithm):
        raise ValueError(f"algorithm must be GD, SGD, PersistentSGD or a subclass of dmft_jax.AbstractAlgorithm; "
                         f"got {type(algorithm).__name__}")
    base = problem.problem if isinstance(problem, Committee) else problem
    if isinstance(problem, Committee) and type(base.model).clean_label is AbstractModel.clean_label:
        raise ValueError(f"problem.model: the committee DMFT scores a fresh sample against the model's "
                         f"clean_label(c, h0) (its label without label noise), which {type(base.model).__name__} "
                         "does not define")
    _validate.scalar_fields(problem, algorithm)  # every field of every object, the read-out's too
    _validate.recheck(problem, algorithm)  # values set by eqx.tree_at skipped the construction checks
    check_for_solver(base.loss)
    return problem.K if isinstance(problem, Committee) else 1
