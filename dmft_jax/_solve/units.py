"""Committee-machine solves (docs/equations.md, section 6.2): the options and their checks
(:func:`configure_committee`), the result (:class:`CommitteeSolution`), error replicas, and
:func:`run_committee`. The kernels come from the one causal sweep for every ``K``
(:func:`dmft_jax._solvers.sweep.forward_sweep`, ``K x K`` blocks; a single unit is ``K = 1``); here
the weight side, the test error and the result."""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._engine import process
from .._util import as_dtype, as_key, cast_tree, seed_of
from .._validate import poison, traced_checks
from .._algorithms.algorithms import AbstractAlgorithm
from .._problem.readouts import Committee
from .._engine.test_error import quadrature_size, test_error
from .._response.standard_errors import AbstractErrors, GroupErrors, NoErrors, no_gradient, replica_keys
from .._problem.losses import check_for_solver
from .._engine.memory import device_bytes
from .._engine.past import padded_size
from .._problem.problem import AbstractModel
from .progress import NoProgressMeter
from .._response.response import AbstractResponse, ExactResponse, as_response
from .results import DIVERGENCE_FACTOR, RESULTS, AbstractOutcome, Result
from .._engine.sharding import device_ids, sharder
from .solution import finish, se_property
from .._solvers.base import AbstractSolver, resolve_pivot_rtol
from .._solvers.sweep import CausalSweep
from .._engine.timegrid import chunk_width, count_steps
from .._engine.weights import correlation_blocks, response_blocks


# the committee observables that get a standard error with errors=GroupErrors(...)
OBSERVABLES = ("m", "Q", "eps_gen", "train_loss", "train_acc", "lam_hat", "mu", "C_perp", "R", "M_C", "M_R")


class CommitteeSolveConfig(eqx.Module):
    """The static sizes and options of a committee solve: ``response`` is the resolved
    estimator (for ``K`` units), ``errors`` the error estimator, ``devices`` the ids of the
    devices the trajectories are split over (``None``: one), ``solver`` and
    ``progress_meter`` the strategies of :func:`dmft_jax.solve` (the same engine as a single
    unit's)."""

    n_steps: int = eqx.field(static=True)
    n_traj: int = eqx.field(static=True)
    K: int = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)
    moment_matching: bool = eqx.field(static=True)
    cross_memory: bool = eqx.field(static=True)
    symmetric: bool = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    response: Any = eqx.field(static=True)
    errors: AbstractErrors = eqx.field(static=True, default=NoErrors())
    devices: tuple | None = eqx.field(static=True, default=None)
    quadrature: int = eqx.field(static=True, default=0)  # points of the test error's quadrature (0: Monte Carlo)
    solver: Any = eqx.field(static=True, default=CausalSweep())
    progress_meter: Any = eqx.field(static=True, default=NoProgressMeter())

    @property
    def n_chi(self) -> int:
        """Trajectories carrying the exact response (0 with probes)."""
        return getattr(self.response, "n_chi", 0)

    def to_dict(self) -> dict:
        out = {n: getattr(self, n) for n in ("n_steps", "n_traj", "n_chi", "K", "antithetic", "moment_matching",
                                            "cross_memory", "symmetric", "dtype", "quadrature")}
        errors = {"type": type(self.errors).__name__, **({"groups": self.errors.groups}
                                                          if isinstance(self.errors, GroupErrors) else {})}
        return {**out, "response": self.response.to_dict(), "errors": errors,
                "devices": None if self.devices is None else list(self.devices), "solver": type(self.solver).__name__}


class CommitteeSolution(AbstractOutcome):
    """The DMFT of a committee machine, indexed by step: ``m`` ``(T+1, K)``, ``Q`` ``(T+1, K, K)``,
    the kernels ``lam_hat`` ``(T+1, K, K)``, ``mu`` ``(T+1, K)``, ``M_C`` and ``M_R``
    ``(T+1, T+1, K, K)`` (``[k, l]`` the block of times ``k, l``), the weight-side ``R`` and
    ``C_perp`` (same layout), ``eps_gen`` (regression: the mean squared error against the
    noiseless target), ``train_loss`` and ``train_acc`` (regression: the fraction of samples
    where output and label have the same sign, as for a single unit).

    ``eps_gen_integral_se``: the Monte Carlo error of the test-error integral alone (at the
    solve's own ``m`` and ``Q``; where it is computed by quadrature, on ``config.quadrature``
    points, the difference from a rule with half the nodes per dimension, an estimate of the
    quadrature error from above). ``se``: with ``errors=dj.GroupErrors()``, the standard errors
    of the whole solve (the kernels' Monte Carlo error included) of every observable in
    :data:`OBSERVABLES`, also read as ``sol.eps_gen_se``, ``sol.Q_se``, ...; ``None`` otherwise.
    ``stats``: ``n_clipped`` noise-factor pivots clipped to zero (rounding or a rank-deficient
    ``M_C`` estimate, as in :class:`~dmft_jax.Solution`), ``n_negative`` those clipped because
    they came out negative beyond rounding, and with errors ``n_groups_failed``, the failed
    replicas (their standard errors are then NaN).
    A grid's result (:func:`dmft_jax.solve_grid`) has the grid's shape in front of every array
    and its points in ``grid``."""

    t: Any
    m: Any
    Q: Any
    C_perp: Any
    R: Any
    lam_hat: Any
    mu: Any
    M_C: Any
    M_R: Any
    eps_gen: Any
    eps_gen_integral_se: Any
    train_loss: Any
    train_acc: Any
    result: Result
    seed: Any
    problem: Committee
    algorithm: AbstractAlgorithm
    config: CommitteeSolveConfig
    stats: Any = None
    se: Any = None
    grid: Any = None

    kind: ClassVar[str] = "committee_solution"
    base_arrays: ClassVar[tuple] = ("t", "m", "Q", "C_perp", "R", "lam_hat", "mu", "M_C", "M_R", "eps_gen",
                                    "eps_gen_integral_se", "train_loss", "train_acc", "status", "n_clipped",
                                    "n_negative")

    @property
    def n_clipped(self):
        return self.stats["n_clipped"]

    @property
    def n_negative(self):
        return self.stats["n_negative"]

    @property
    def saved_arrays(self) -> tuple:
        """The names :func:`dmft_jax.save` writes (with ``<name>_se`` when there are errors)."""
        return self.base_arrays + (tuple(f"{n}_se" for n in OBSERVABLES) if self.se is not None else ())

    m_se, Q_se, eps_gen_se, train_loss_se, train_acc_se, lam_hat_se, mu_se, C_perp_se, R_se, M_C_se, M_R_se = (
        se_property(n) for n in OBSERVABLES)

    def save(self, path, *, overwrite: bool = False):
        """Write ``<path>.npz`` and ``<path>.json`` (see :func:`dmft_jax._tools.io.save`)."""
        from .._tools.io import save

        return save(self, path, overwrite=overwrite)


# the options of a committee solve (configure_committee's keywords)
OPTIONS = ("solver", "progress_meter", "response", "n_chi", "errors", "sharding", "n_steps", "antithetic",
           "moment_matching", "cross_memory", "symmetric", "dtype")


def committee_options(options: dict) -> dict:
    """The committee-solve options among ``options`` (the keywords of ``dj.solve`` or
    ``dj.solve_grid``). What is not built for ``K > 1`` (the hand-written ``SweepAdjoint``,
    ``save_trajectories``) is refused by name unless it is the default, as is an unknown
    keyword."""
    from .._solvers.adjoint import AutodiffAdjoint

    defaults = {"adjoint": (lambda v: type(v) is AutodiffAdjoint, "the hand-written SweepAdjoint is built for a "
                            "single unit (K = 1); committees are differentiated by AutodiffAdjoint, the default"),
                "save_trajectories": (lambda v: v == 0, "saved trajectories are built for a single unit (K = 1)")}
    out = {}
    for name, value in options.items():
        if name in OPTIONS:
            out[name] = value
        elif name in defaults:
            ok, why = defaults[name]
            if not (value is None or ok(value)):
                raise ValueError(f"{name}: not available for committee machines: {why}")
        else:
            raise ValueError(f"{name}: not an option of a committee solve (its options: {', '.join(OPTIONS)})")
    return out


def configure_committee(committee: Committee, algorithm: AbstractAlgorithm, t_max, n_traj, *, solver=None,
                        progress_meter=None, response=None, n_chi=None, errors=None, sharding=None, n_steps=None,
                        antithetic=True, moment_matching=True, cross_memory=True, symmetric=False, dtype=None,
                        batch: int = 1) -> CommitteeSolveConfig:
    """Validate a committee solve's inputs (named errors) and return its static configuration;
    ``batch``: points solved at once (a grid), for the memory check."""
    from .progress import AbstractProgressMeter

    solver = CausalSweep() if solver is None else solver
    progress_meter = NoProgressMeter() if progress_meter is None else progress_meter
    for name, value, kind, example in (("solver", solver, AbstractSolver, "CausalSweep()"),
                                       ("progress_meter", progress_meter, AbstractProgressMeter,
                                        "TextProgressMeter()")):
        if not isinstance(value, kind):
            raise ValueError(f"{name} must be a dmft_jax.{kind.__name__} (e.g. {example}); got {value!r}")
    if not isinstance(committee, Committee):
        raise ValueError(f"committee must be a dmft_jax.Committee; got {type(committee).__name__}")
    if not isinstance(algorithm, AbstractAlgorithm):
        raise ValueError(f"algorithm must be GD, SGD, PersistentSGD or a subclass of dmft_jax.AbstractAlgorithm; "
                         f"got {type(algorithm).__name__}")
    problem = committee.problem
    model = problem.model
    if type(model).clean_label is AbstractModel.clean_label:  # a capability, asked of the model
        raise ValueError(f"problem.model: the committee DMFT scores a fresh sample against the model's "
                         f"clean_label(c, h0) (its label without label noise), which {type(model).__name__} does not "
                         "define")
    problem.check_scalars()
    check_for_solver(problem.loss)
    T = count_steps(algorithm, t_max, n_steps)
    solver.check(T)
    resolve_pivot_rtol(solver, as_dtype(dtype))  # checked now, resolved in the traced solve
    n_traj = _validate.integer("n_traj", n_traj, 2)
    for name, flag in (("antithetic", antithetic), ("moment_matching", moment_matching),
                       ("cross_memory", cross_memory), ("symmetric", symmetric)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False; got {flag!r}")
    if antithetic and n_traj % 2:
        raise ValueError(f"n_traj must be even when antithetic=True; got {n_traj}")
    if n_chi is not None:
        if response is not None:
            raise ValueError("n_chi: give either n_chi or response=dj.ExactResponse(n_chi), not both")
        response = ExactResponse(n_chi)
    dtype = as_dtype(dtype)
    K = committee.K
    estimator = as_response(response).resolve(T, n_traj, dtype.itemsize, K)
    errors = NoErrors() if errors is None else errors
    if not isinstance(errors, (NoErrors, GroupErrors)):
        raise ValueError(f"errors: committee machines take dmft_jax.NoErrors() or dmft_jax.GroupErrors(groups); "
                         f"got {errors!r}")
    errors.check(n_traj, antithetic)
    if isinstance(errors, GroupErrors):
        _group_estimator(estimator, errors.groups, T, n_traj, dtype, K)  # each replica's, checked now
    devices = device_ids(sharding)
    if devices is not None and n_traj % len(devices):
        raise ValueError(f"sharding: n_traj = {n_traj} must split evenly over {len(devices)} devices")
    if symmetric:
        _check_exchangeable(committee)
    replicas = 2 if isinstance(errors, GroupErrors) else 1  # the G replicas hold as much as the full solve
    quadrature = quadrature_size(committee)  # two rules' points, (K + 4) numbers each
    size, width = T + 1, chunk_width(T, solver.blocks(T) if isinstance(solver, CausalSweep) else 1)
    padded = padded_size(size, width)
    need = batch * replicas * dtype.itemsize * (estimator.peak_numbers(size, width, K) + 6 * padded * n_traj * K
                                                + 12 * (padded * K) ** 2 + 2 * quadrature * (K + 4))
    avail = device_bytes()
    if avail is not None and need > 0.6 * avail:
        raise ValueError(f"n_traj: the solve over T = {T} steps with K = {K} units, {type(response).__name__ if response else 'ExactResponse'} "
                         f"{estimator.to_dict()} and {batch} point(s) at once needs about {need / 2**30:.1f} GiB, above "
                         f"60% of the device's {avail / 2**30:.1f} GiB; lower n_traj, the response's size or T (or "
                         "batch_size in a grid)")
    return CommitteeSolveConfig(n_steps=T, n_traj=n_traj, K=K, antithetic=bool(antithetic),
                                moment_matching=bool(moment_matching), cross_memory=bool(cross_memory),
                                symmetric=bool(symmetric), dtype=str(dtype), response=estimator, errors=errors,
                                devices=devices, quadrature=quadrature, solver=solver, progress_meter=progress_meter)


def run_committee(committee: Committee, algorithm: AbstractAlgorithm, t_max, n_traj, key, *, throw: bool = False,
                  **options) -> CommitteeSolution:
    """The committee solve behind :func:`dmft_jax.solve` (docs/equations.md, section 6.2).

    Its own options: ``cross_memory`` (default on): keep the cross-unit entries ``a != b`` of
    ``M_R``; ``False`` drops them (to show what they do; the result is then not the DMFT).
    ``symmetric``: the units are exchangeable (equal ``m0``, required): every kernel is averaged
    over the permutations of the units (diagonal entries together, off-diagonal entries
    together), which the exact solution satisfies, so that ``m`` and ``Q`` come out exactly
    exchangeable with less Monte Carlo noise. The shared ones (``response``, ``errors``,
    ``sharding``, ``n_steps``, ``antithetic``, ``moment_matching``, ``dtype``) are those of
    :func:`dmft_jax.solve`; the default response is the exact one on
    :func:`~dmft_jax._response.response.default_n_chi` trajectories (``(T+1)^2 n_chi K^2`` numbers).
    """
    config = configure_committee(committee, algorithm, t_max, n_traj, **options)
    dtype = jnp.dtype(config.dtype)
    sol = _solve_jit(committee.astype(dtype), cast_tree(algorithm, dtype), as_key(key), jnp.asarray(seed_of(key)),
                     config)
    return finish(eqx.tree_at(lambda s: s.problem, sol, committee), throw)


def _check_exchangeable(committee):
    """``symmetric=True`` needs units that are exchangeable: equal ``m0`` and a read-out that
    does not change when the units are permuted (checked on random fields)."""
    m0 = committee.m0
    if not _validate.is_concrete(m0):
        raise ValueError("symmetric: needs concrete initial overlaps m0 (it cannot check traced ones for equality)")
    if not np.all(np.asarray(m0) == np.asarray(m0)[0]):
        raise ValueError(f"symmetric: exchangeable units need equal initial overlaps m0; got "
                         f"{np.asarray(m0).tolist()} (symmetric=False solves unequal ones)")
    K = committee.K
    if K > 1:
        r = np.random.default_rng(0).standard_normal((16, K))
        f = np.asarray(committee.readout(jnp.asarray(r)))
        for perm in (np.roll(np.arange(K), 1), np.r_[1, 0, np.arange(2, K)]):
            if not np.allclose(np.asarray(committee.readout(jnp.asarray(r[:, perm]))), f, rtol=1e-6, atol=1e-9):
                raise ValueError("symmetric: the read-out changes when the units are permuted, so the units are not "
                                 "exchangeable; use symmetric=False")


@eqx.filter_jit
def _solve_jit(committee, algorithm, key, seed, config):
    return solve_traced(committee, algorithm, key, seed, config)


def _group_estimator(est: AbstractResponse, groups: int, T: int, n_traj: int, dtype, K: int) -> AbstractResponse:
    """The response estimator of one of ``groups`` error replicas, resolved for its ``N / groups``
    trajectories."""
    return est.per_group(groups).resolve(T, n_traj // groups, jnp.dtype(dtype).itemsize, K)


def group_config(config: CommitteeSolveConfig, groups: int) -> CommitteeSolveConfig:
    """The configuration of one error replica: ``N / groups`` trajectories, the response
    estimator split likewise, one device, no errors of its own."""
    est = _group_estimator(config.response, groups, config.n_steps, config.n_traj, config.dtype, config.K)
    return dataclasses.replace(config, n_traj=config.n_traj // groups, response=est, errors=NoErrors(), devices=None,
                               progress_meter=NoProgressMeter())


def committee_fields(committee, algorithm, key, config):
    """The traced solve of a committee: the one causal sweep for ``K`` units
    (:func:`~dmft_jax._solvers.sweep.forward_sweep`), then the weight side (``R``, ``P``, ``C_perp`` in
    blocks, ``Q[k] = m m^T + C_perp[k, k]``), the test error of a fresh sample and the outcome.
    Returns the solution's fields."""
    problem = committee.problem
    K, T = config.K, config.n_steps
    dtype = problem.alpha.dtype
    lam = problem.lam
    net = process.Network(problem, committee.readout, committee.m0, None, symmetric=config.symmetric,
                          cross_memory=config.cross_memory)
    rnd = process.draw(key, problem, algorithm, T, config.n_traj, config.antithetic, dtype, config.moment_matching,
                       K=K)
    shard = sharder(config.devices)
    rnd = rnd.map_trajectories(shard)
    out = config.solver.run(net, rnd, T, config.response, jax.random.fold_in(key, 0x5EED),
                            resolve_pivot_rtol(config.solver, dtype),
                            config.progress_meter, shard)
    rows, m, dts = out.rows, out.m, rnd.dts
    R, P = response_blocks(lam, rows.lam_hat, rows.M_R, dts, rnd.update)
    C_perp = correlation_blocks(R, P, rows.M_C, problem.R0, dts, rnd.temperature)
    C_kk = jnp.einsum("kakb->kab", C_perp)
    Q = m[:, :, None] * m[:, None, :] + C_kk
    eps, eps_se = test_error(committee, rnd, m, C_kk, key, config)
    fields = dict(m=m, Q=Q, eps_gen=eps, train_loss=rows.train_loss)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fields.values()]))
    diag = jnp.diagonal(Q, axis1=-2, axis2=-1)
    exploding = jnp.max(jnp.abs(diag)) > DIVERGENCE_FACTOR * (1 + jnp.max(jnp.abs(diag[0])))
    code = jnp.where(finite, jnp.where(exploding, RESULTS.diverged, RESULTS.successful), RESULTS.nonfinite)
    code = jnp.where(out.converged, code, RESULTS.max_iter)  # a damped iteration that did not converge
    # values set under vmap / eqx.tree_at were never checked: the checks run here too, and a
    # point that fails one is an invalid input, named, with no numbers (NaN, NaN gradients)
    checks, valid, first_bad = traced_checks(problem, algorithm, T)
    code = jnp.where(valid, code, RESULTS.invalid_input)
    kernels = dict(lam_hat=rows.lam_hat, mu=rows.mu, M_C=rows.M_C, M_R=rows.M_R, train_loss=rows.train_loss,
                   train_acc=rows.train_acc)
    if checks:
        m, Q, C_perp, R, eps = (poison(valid, x) for x in (m, Q, C_perp, R, eps))
        kernels = {n: poison(valid, x) for n, x in kernels.items()}
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(dts[:T])])
    pivots = out.pivots[:T]  # the step-T rows enter no noise
    n_clipped, n_negative = jnp.sum(pivots <= 0), jnp.sum(pivots < 0)
    return dict(t=t, m=m, Q=Q, C_perp=jnp.transpose(C_perp, (0, 2, 1, 3)), R=R, eps_gen=eps, eps_gen_integral_se=eps_se,
                result=Result.of(code, first_bad, checks),
                stats=dict(n_clipped=n_clipped, n_negative=n_negative, n_iter=jnp.asarray(out.n_iter)), **kernels)


def solve_traced(committee, algorithm, key, seed, config) -> CommitteeSolution:
    """The traced solve with its standard errors (``config.errors``): the body of
    :func:`solve_committee` and of a grid's points."""
    out = committee_fields(committee, algorithm, key, config)
    se, stats = None, out.pop("stats")
    if isinstance(config.errors, GroupErrors):
        G = config.errors.groups
        small = group_config(config, G)
        frozen = no_gradient((committee, algorithm))
        reps = jax.vmap(lambda k: committee_fields(*frozen, k, small))(replica_keys(key, G))
        failed = jnp.sum(reps["result"].code != RESULTS.successful)
        se = {n: jnp.where(failed > 0, jnp.nan, jnp.std(reps[n], axis=0, ddof=1) / np.sqrt(G)) for n in OBSERVABLES}
        stats["n_groups_failed"] = failed
    return CommitteeSolution(**out, seed=seed, problem=committee, algorithm=algorithm, config=config, se=se,
                             stats=stats)
