"""Batched solves over a grid of hyperparameters: one compilation for the whole grid.

``dj.solve_grid(problem, algorithm, {"lam": [...], "b": [...]}, t_max=..., ...)`` sets the
named hyperparameters point by point (validated like single solves, so a bad value is
refused with its name before anything runs), stacks them as array leaves and runs
``jax.vmap`` of the jitted solver over the points. Every point shares the static shape
(``T``, ``N``, estimator), so the grid compiles once; a second grid of the same size and
options compiles nothing.

The result is a batched :class:`~dmft_jax.Solution` whose arrays have the grid's shape in
front (``g.eps_gen[i, j]`` is the curve of point ``(i, j)``) and whose ``grid`` holds the
parameters' values per point. Failed points are data: a point whose solve diverges gets its
own ``result`` and the others are unaffected (points never mix). A single warning
summarises the failures unless ``throw=True``.

Gridded parameters: ``lam, alpha, delta, R0, m0`` (problem), ``rho`` and ``L`` (model),
``eta, b, tau`` (algorithm; constant ``eta`` only). When ``eta`` is gridded the number of
steps cannot follow ``t_max / eta`` (it is a static shape): pass ``n_steps``.
"""
from __future__ import annotations

import itertools
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._util import as_key, cast_tree, seed_of
from .._algorithms.schedules import Schedule
from .._results.solution import Solution, finish
from .. import _validate
from .._validate import modules, run_checks
from .._problem.readouts import Committee
from .._solve.configure import committee_keywords, configure
from .._solve.solve import solve_traced

PROBLEM = ("lam", "alpha", "delta", "R0", "m0")
MODEL = ("rho", "L")
ALGORITHM = ("eta", "b", "tau", "beta", "temperature")


GridSolution = Solution  # the former name of a grid's result


def _targets(problem, algorithm, names):
    if isinstance(problem, Committee):  # the committee's own problem and the algorithm are gridded
        if "m0" in names:
            raise ValueError("params: m0 of a committee is one overlap per unit; grid it by building the Committee "
                             "objects yourself (Committee(problem, readout, m0=[...]))")
        if "L" in names:
            raise ValueError("params: L (the three-cluster read-out's threshold) plays no part in a committee, whose "
                             "read-out f replaces the model's; put a threshold into f")
        problem = problem.problem
    declared = algorithm.tunable()  # what the algorithm declares (a user-written one too)
    model_params = _model_params(problem.model)
    for n in names:
        if n in PROBLEM:
            continue
        if n == "bias":
            if problem.bias is None:
                raise ValueError("params: the problem has no learnable bias (build it with Problem(..., bias=b0) to "
                                 "grid its initial value)")
            continue
        if n in MODEL or n in model_params:
            if n not in model_params:
                raise ValueError(f"params: {type(problem.model).__name__} has no parameter {n!r}")
            continue
        if n in ALGORITHM or n in declared:
            if n not in declared:
                hint = (f" (build it with {type(algorithm).__name__}(..., {n}=...) to grid {n})"
                        if n in ("beta", "temperature") else "")
                raise ValueError(f"params: {type(algorithm).__name__} has no parameter {n!r}{hint}")
            if isinstance(getattr(algorithm, n), Schedule):
                raise ValueError(f"params: {n} is a schedule; grid its fields by building the algorithms yourself")
            continue
        bias = ("bias",) if problem.bias is not None else ()
        griddable = PROBLEM + bias + model_params + tuple(n for n in declared
                                                          if not isinstance(getattr(algorithm, n, None), Schedule))
        raise ValueError(f"params: unknown hyperparameter {n!r}; this problem and algorithm can grid "
                         f"{', '.join(griddable)}")


def _model_params(model) -> tuple:
    """The model's numeric parameters, what a grid may set: its numeric fields (``rho``, ``L``,
    ``label_noise``, ...), neither class variables (``default_delta``, ``unit_delta``: set by
    eqx.tree_at they failed with a pytree error) nor static fields or functions (a teacher's
    ``f``)."""
    return tuple(name for name, _ in _validate.numeric_fields(model))


def set_params(problem, algorithm, values: dict):
    """Return ``(problem, algorithm)`` with the named hyperparameters replaced (a committee's
    in its own problem)."""
    if isinstance(problem, Committee):
        p, algorithm = set_params(problem.problem, algorithm, values)
        return eqx.tree_at(lambda c: c.problem, problem, p), algorithm
    for n, v in values.items():
        if n in PROBLEM or n == "bias":
            problem = eqx.tree_at(lambda p, n=n: getattr(p, n), problem, v)
        elif n in _model_params(problem.model):
            problem = eqx.tree_at(lambda p, n=n: getattr(p.model, n), problem, v)
        else:
            algorithm = eqx.tree_at(lambda a, n=n: getattr(a, n), algorithm, v)
    return problem, algorithm


def _validate_point(problem, algorithm, n_steps):
    """The construction-time checks of every object (named errors with the valid range) and
    the algorithm's constraints over the steps."""
    for _, obj in modules(problem, algorithm):  # every object: a committee's read-out, the loss, schedules
        run_checks(obj)
    algorithm.check_steps(algorithm.step_sizes(n_steps))


def solve_grid(problem, algorithm, params: dict, t_max: float = 20.0, n_traj: int = 2**15, key=0, *,
               product: bool = True, batch_size: int | None = None, throw: bool = False,
               **solve_options) -> Solution:
    """Solve the DMFT at every point of a hyperparameter grid in one compiled, vmapped call.

    Parameters
    ----------
    params
        ``{name: values}``; with ``product=True`` (default) the outer product of the
        value lists, else the lists are zipped (equal lengths) into points.
    t_max, n_traj, key, **solve_options
        as :func:`dmft_jax.solve` (the same key, hence the
        same random numbers, at every point: differences between points are smooth).
    batch_size
        solve this many points at a time (``lax.map`` over vmapped chunks) to bound
        memory; default all at once. Memory is ``batch_size`` times
        :func:`dmft_jax.memory_estimate`, checked before allocation.
    throw
        raise if any point fails; default returns failures as ``result`` per point.
    """
    problem = committee_keywords(problem, solve_options)
    product, throw = _validate.flag("product", product), _validate.flag("throw", throw)
    names, points, shape, batch_size, config, values = _prepare(
        problem, algorithm, params, product, batch_size, solve_options,
        lambda batch: configure(problem, algorithm, t_max, n_traj, batch=batch, **solve_options))
    dtype = jnp.dtype(config.dtype)
    sol = _grid_jit(problem.astype(dtype), cast_tree(algorithm, dtype), names, values, as_key(key),
                    jnp.asarray(seed_of(key)), config, batch_size)
    sol = finish(sol, throw, "dmft_jax.solve_grid")
    sol = jax.tree_util.tree_map(lambda a: jnp.reshape(a, shape + a.shape[1:]), sol)
    return eqx.tree_at(lambda s: s.grid, sol, {n: np.reshape(points[:, i], shape) for i, n in enumerate(names)},
                       is_leaf=lambda x: x is None)


def _points(problem, algorithm, params, product):
    """``(names, points (n_points, n_names), grid shape)`` of ``params`` (checked by name)."""
    if not isinstance(params, dict) or not params:
        raise ValueError("params must be a non-empty dict {name: values}")
    names = tuple(params)
    _targets(problem, algorithm, names)
    lists = []
    for n in names:
        if not _validate._is_number(params[n]):
            raise ValueError(f"params[{n!r}] must be a non-empty 1-d list of numbers; got {params[n]!r}")
        v = np.atleast_1d(np.asarray(params[n], dtype=float))
        if v.ndim != 1 or v.size == 0:
            raise ValueError(f"params[{n!r}] must be a non-empty 1-d list of values; got shape {v.shape}")
        lists.append(v)
    if product:
        shape = tuple(len(v) for v in lists)
        points = np.array(list(itertools.product(*lists)), dtype=float).reshape(-1, len(names))
    else:
        if len({len(v) for v in lists}) != 1:
            raise ValueError(f"params: with product=False all value lists need the same length; got "
                             f"{ {n: len(v) for n, v in zip(names, lists)} }")
        points = np.stack(lists, axis=1)
        shape = (points.shape[0],)
    return names, points, shape


def _prepare(problem, algorithm, params, product, batch_size, solve_options, configure_for):
    """The points of a grid, checked by name and validated one by one as single solves would
    be: ``(names, points, shape, batch_size, config, values)``; ``configure_for(batch)`` gives
    the solve configuration (its checks, the memory of ``batch`` points at once)."""
    names, points, shape = _points(problem, algorithm, params, product)
    if "eta" in names and solve_options.get("n_steps") is None:
        raise ValueError("n_steps: eta is gridded, so the number of steps must be given (it is a "
                         "static shape shared by all points)")
    batch_size = _batch(batch_size, points.shape[0])
    config = configure_for(batch_size)
    for row in points:
        p, a = set_params(problem, algorithm, dict(zip(names, row)))
        _validate_point(p, a, config.n_steps)
    return names, points, shape, batch_size, config, jnp.asarray(points, jnp.dtype(config.dtype))


def _batch(batch_size, n_points):
    if batch_size is None:
        return n_points
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size}")
    return min(int(batch_size), n_points)


@eqx.filter_jit
def _grid_jit(problem, algorithm, names, values, key, seed, config, batch_size):
    def one(row):
        p, a = set_params(problem, algorithm, dict(zip(names, row)))
        return solve_traced(p, a, key, config, seed)

    return _over_points(one, values, batch_size)


def _over_points(one, values, batch_size):
    """``one`` over the rows of ``values``: vmapped at once, or ``batch_size`` rows at a time."""
    if batch_size >= values.shape[0]:
        return jax.vmap(one)(values)
    return jax.lax.map(one, values, batch_size=batch_size)


class count_compilations:
    """Context manager counting XLA backend compilations (``.count``) while it is open: the
    check that a grid compiles once (tests, benchmarks)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __enter__(self):
        self.names = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event, duration, **kwargs):
        if event == self.EVENT:
            self.names.append(str(kwargs.get("fun_name", "")))

    @property
    def count(self) -> int:
        """All compilations (small helper programs included)."""
        return len(self.names)

    def count_of(self, name: str) -> int:
        """Compilations of programs whose name contains ``name`` (e.g. ``"_grid_jit"``)."""
        return sum(name in n for n in self.names)

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
        return False
