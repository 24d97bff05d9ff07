"""The DMFT of committee machines (docs/equations.md, section 6.2): the causal sweep of
section 2 with a ``K``-vector effective process and every kernel a ``K x K`` block.

Per step ``k``, on ``N`` trajectories (the draws of :func:`dmft_jax.process.draw`, with one
stream of ``u0`` and of the noise ``zeta`` per unit; unit 0's are the single-unit ones):

- fields ``r = m[k] proj + u[k]`` (``N x K``), ``g = s grad_r Lambda``, ``H = s Hess_r Lambda``;
- ``lam_hat[k] = alpha Delta E[H]``, ``mu[k] = alpha E[g proj]``,
  ``M_C[k, j] = alpha Delta E[g[k] g[j]^T]``, ``M_R[k, l] = alpha Delta E[H chi[k, l]] / eta_l``
  by the block estimator of ``response`` (``committee_response.py``: ``chi`` exact on
  ``n_chi`` trajectories, or probes);
- the noise: the causal Cholesky factor of ``Delta M_C`` over the flattened (time, unit) index,
  extended by ``K`` rows per step (the single-unit row update, pivots clipped and counted);
- ``u`` and ``m`` advanced with matrix products (with heavy-ball momentum and Langevin noise as in
  sections 5.1 and 5.2, per unit), the estimator's state likewise.

After the sweep the weight side: ``R``, ``P``, ``C_perp`` (blocks), ``Q[k] = m m^T + C_perp[k, k]``,
and the test error ``P(y f(r) <= 0)`` of a fresh sample, ``r = m proj + sqrt(Delta) C_perp^(1/2) z``:
the last unit integrated analytically when the read-out gives its root, the rest by quadrature
(small ``K``) or over the trajectories' samples with fresh ``z``; without a root an indicator.

``errors=GroupErrors(G)`` adds ``G`` replica solves on ``N / G`` trajectories (vmapped);
``sharding`` splits the trajectory axis over devices; ``dmft_jax.solve_grid`` vmaps
:func:`solve_traced` over points. Everything is plain ``jax``: ``jax.grad``/``jax.jvp`` and
``jax.vmap`` go through a solve (likelihood-ratio weights for the laws of the discrete draws, as
in the single-unit sweep).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr

from . import _validate, process
from ._validate import traced_checks
from ._util import as_dtype, as_key, cast_tree, seed_of
from .algorithms import AbstractAlgorithm
from .committee import Committee
from .committee_response import ExactBlocks, block_estimator
from .errors import AbstractErrors, GroupErrors, NoErrors, no_gradient, replica_keys
from .losses import check_for_solver
from .memory import device_bytes
from .noise import NoiseFactor, noise_row
from .problem import AbstractMixture
from .response import ExactResponse
from .results import DIVERGENCE_FACTOR, RESULTS, AbstractOutcome, Result
from .sharding import device_ids, sharder
from .teacher import TeacherStudent
from .timegrid import count_steps


# the committee observables that get a standard error with errors=GroupErrors(...)
OBSERVABLES = ("m", "Q", "eps_gen", "train_loss", "train_acc", "lam_hat", "mu", "C_perp", "R", "M_C", "M_R")


class CommitteeSolveConfig(eqx.Module):
    """The static sizes and options of a committee solve: ``response`` is the block estimator
    (:class:`~dmft_jax.committee_response.ExactBlocks` or ``ProbeBlocks``), ``errors`` the error
    estimator, ``devices`` the ids of the devices the trajectories are split over (``None``: one)."""

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
                "devices": None if self.devices is None else list(self.devices)}


def _se_property(name: str) -> property:
    def get(self):
        return None if self.se is None else self.se[name]

    get.__doc__ = f"The standard error of ``{name}`` (``None`` when solved without ``errors=``)."
    return property(get)


class CommitteeSolution(AbstractOutcome):
    """The DMFT of a committee machine, indexed by step: ``m`` ``(T+1, K)``, ``Q`` ``(T+1, K, K)``,
    the kernels ``lam_hat`` ``(T+1, K, K)``, ``mu`` ``(T+1, K)``, ``M_C`` and ``M_R``
    ``(T+1, T+1, K, K)`` (``[k, l]`` the block of times ``k, l``), the weight-side ``R`` and
    ``C_perp`` (same layout), ``eps_gen``, ``train_loss`` and ``train_acc``.

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
        _se_property(n) for n in OBSERVABLES)

    def save(self, path, *, overwrite: bool = False):
        """Write ``<path>.npz`` and ``<path>.json`` (see :func:`dmft_jax.io.save`)."""
        from .io import save

        return save(self, path, overwrite=overwrite)


def configure_committee(committee: Committee, algorithm: AbstractAlgorithm, t_max, n_traj, *, response=None,
                        n_chi=None, errors=None, sharding=None, n_steps=None, antithetic=True, moment_matching=True,
                        cross_memory=True, symmetric=False, dtype=None, batch: int = 1) -> CommitteeSolveConfig:
    """Validate a committee solve's inputs (named errors) and return its static configuration;
    ``batch``: points solved at once (a grid), for the memory check."""
    if not isinstance(committee, Committee):
        raise ValueError(f"committee must be a dmft_jax.Committee; got {type(committee).__name__}")
    if not isinstance(algorithm, AbstractAlgorithm):
        raise ValueError(f"algorithm must be GD, SGD, PersistentSGD or a subclass of dmft_jax.AbstractAlgorithm; "
                         f"got {type(algorithm).__name__}")
    problem = committee.problem
    model = problem.model
    if not isinstance(model, (AbstractMixture, TeacherStudent)):
        raise ValueError(f"problem.model: the committee DMFT covers TwoCluster, ThreeCluster and TeacherStudent "
                         f"(classification); got {type(model).__name__}")
    problem.check_scalars()
    check_for_solver(problem.loss)
    T = count_steps(algorithm, t_max, n_steps)
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
    estimator = block_estimator(response, n_traj)
    errors = NoErrors() if errors is None else errors
    if not isinstance(errors, (NoErrors, GroupErrors)):
        raise ValueError(f"errors: committee machines take dmft_jax.NoErrors() or dmft_jax.GroupErrors(groups); "
                         f"got {errors!r}")
    errors.check(n_traj, antithetic)
    if isinstance(errors, GroupErrors) and estimator.n < errors.groups:
        name = "n_chi" if isinstance(estimator, ExactBlocks) else "ProbeResponse.n_traj"
        raise ValueError(f"{name} = {estimator.n} is below GroupErrors.groups = {errors.groups}: each replica needs at "
                         "least one response trajectory; raise it or lower groups")
    devices = device_ids(sharding)
    if devices is not None and n_traj % len(devices):
        raise ValueError(f"sharding: n_traj = {n_traj} must split evenly over {len(devices)} devices")
    if symmetric:
        _check_exchangeable(committee)
    dtype = as_dtype(dtype)
    K = committee.K
    replicas = 2 if isinstance(errors, GroupErrors) else 1  # the G replicas hold as much as the full solve
    need = batch * replicas * dtype.itemsize * (estimator.numbers(T + 1, K) + 4 * (T + 1) * n_traj * K
                                                + 4 * ((T + 1) * K) ** 2)
    avail = device_bytes()
    if avail is not None and need > 0.6 * avail:
        raise ValueError(f"n_traj: the solve over T = {T} steps with K = {K} units, {type(response).__name__ if response else 'ExactResponse'} "
                         f"{estimator.to_dict()} and {batch} point(s) at once needs about {need / 2**30:.1f} GiB, above "
                         f"60% of the device's {avail / 2**30:.1f} GiB; lower n_traj, the response's size or T (or "
                         "batch_size in a grid)")
    return CommitteeSolveConfig(n_steps=T, n_traj=n_traj, K=K, antithetic=bool(antithetic),
                                moment_matching=bool(moment_matching), cross_memory=bool(cross_memory),
                                symmetric=bool(symmetric), dtype=str(dtype), response=estimator, errors=errors,
                                devices=devices, quadrature=quadrature_size(committee))


def solve_committee(committee: Committee, algorithm: AbstractAlgorithm, t_max: float = 20.0, n_traj: int = 2**14,
                    key=0, *, response=None, n_chi: int | None = None, errors=None, sharding=None,
                    n_steps: int | None = None, antithetic: bool = True, moment_matching: bool = True,
                    cross_memory: bool = True, symmetric: bool = False, dtype=None,
                    throw: bool = False) -> CommitteeSolution:
    """Solve the DMFT of ``committee`` trained by ``algorithm`` up to ``t_max``
    (docs/equations.md, section 6.2); also reached through :func:`dmft_jax.solve`.

    ``n_traj``: trajectories ``N``. ``response``: ``dj.ExactResponse(n_chi)`` (the default,
    ``n_chi = min(N, 1024)`` trajectories carry ``chi``, ``(T+1)^2 n_chi K^2`` numbers; ``n_chi=``
    says the same) or ``dj.ProbeResponse(n_probes)`` (``O(n_probes N T K)`` memory: long
    times). ``errors=dj.GroupErrors(G)``: standard errors of every observable from ``G``
    replicas on ``N / G`` trajectories (``sol.eps_gen_se``, ...; about twice the cost).
    ``sharding="all"`` (or a list of devices): the trajectories are split over the devices;
    the result equals the one-device solve to rounding. ``cross_memory`` (default on): keep
    the cross-unit entries ``a != b`` of ``M_R``; ``False`` drops them (to show what they do;
    the result is then not the DMFT). ``symmetric``: the units are exchangeable (equal
    ``m0``, required): every kernel is averaged over the permutations of the units (diagonal
    entries together, off-diagonal entries together), which the exact solution satisfies, so
    that ``m`` and ``Q`` come out exactly exchangeable with less Monte Carlo noise.
    ``antithetic``, ``moment_matching``, ``dtype``, ``throw``: as in :func:`dmft_jax.solve`.
    """
    config = configure_committee(committee, algorithm, t_max, n_traj, response=response, n_chi=n_chi, errors=errors,
                                 sharding=sharding, n_steps=n_steps, antithetic=antithetic,
                                 moment_matching=moment_matching, cross_memory=cross_memory, symmetric=symmetric,
                                 dtype=dtype)
    dtype = jnp.dtype(config.dtype)
    sol = _solve_jit(committee.astype(dtype), cast_tree(algorithm, dtype), as_key(key), jnp.asarray(seed_of(key)),
                     config)
    return finish_committee(eqx.tree_at(lambda s: s.problem, sol, committee), throw)


def finish_committee(sol: CommitteeSolution, throw: bool, who: str = "dmft_jax.solve") -> CommitteeSolution:
    """Warn about (or, with ``throw``, raise on) a failed concrete result and NaN standard errors."""
    import warnings

    n_negative = sol.stats["n_negative"]
    if _validate.is_concrete(n_negative) and sol.m.dtype == jnp.float32 and np.any(np.asarray(n_negative) > 0):
        warnings.warn(f"{who}: float32 lost positive definiteness of the noise covariance: "
                      f"{int(np.max(np.asarray(n_negative)))} Cholesky pivots of Delta M_C came out negative beyond "
                      "the rounding floor and were clipped; float64 keeps this accuracy", RuntimeWarning, stacklevel=3)
    failed = sol.stats.get("n_groups_failed")
    if failed is not None and _validate.is_concrete(failed) and np.any(np.asarray(failed) > 0):
        warnings.warn(f"{who}: the standard errors are NaN: {int(np.max(np.asarray(failed)))} of "
                      f"{sol.config.errors.groups} replica solves on N / groups trajectories failed (each replica is "
                      "too small for this setting; raise n_traj or lower GroupErrors.groups)", RuntimeWarning,
                      stacklevel=3)
    code = sol.result.code
    if _validate.is_concrete(code) and not bool(np.all(np.asarray(code) == RESULTS.successful)):
        if throw:
            raise RuntimeError(f"{who}: {sol.message}")
        warnings.warn(f"{who}: {sol.message}", RuntimeWarning, stacklevel=3)
    return sol


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


def group_config(config: CommitteeSolveConfig, groups: int) -> CommitteeSolveConfig:
    """The configuration of one error replica: ``N / groups`` trajectories, the response
    estimator split likewise, one device, no errors of its own."""
    return dataclasses.replace(config, n_traj=config.n_traj // groups, response=config.response.per_group(groups),
                               errors=NoErrors(), devices=None)


def solve_traced(committee, algorithm, key, seed, config) -> CommitteeSolution:
    """The traced solve with its standard errors (``config.errors``): the body of
    :func:`solve_committee` and of a grid's points."""
    out = committee_sweep(committee, algorithm, key, config)
    se, stats = None, out.pop("stats")
    if isinstance(config.errors, GroupErrors):
        G = config.errors.groups
        small = group_config(config, G)
        frozen = no_gradient((committee, algorithm))
        reps = jax.vmap(lambda k: committee_sweep(*frozen, k, small))(replica_keys(key, G))
        failed = jnp.sum(reps["result"].code != RESULTS.successful)
        se = {n: jnp.where(failed > 0, jnp.nan, jnp.std(reps[n], axis=0, ddof=1) / np.sqrt(G)) for n in OBSERVABLES}
        stats["n_groups_failed"] = failed
    return CommitteeSolution(**out, seed=seed, problem=committee, algorithm=algorithm, config=config, se=se,
                             stats=stats)


def _unit_draws(key, problem, algorithm, config, dtype):
    """The randomness: unit 0's ``u0``, ``zeta`` (and Langevin ``zeta_l``) are the single-unit
    draws of ``key``; unit ``a`` takes those of ``fold_in(key, a)``. Returns the single-unit
    draws, ``u0`` ``(N, K)``, ``zeta`` and ``zeta_l`` ``(S, N, K)`` (``None`` without Langevin
    noise)."""
    draw = lambda k: process.draw(k, problem, algorithm, config.n_steps, config.n_traj, config.antithetic, dtype,
                                  config.moment_matching)
    rnd = draw(key)
    others = [draw(jax.random.fold_in(key, a)) for a in range(1, config.K)]
    u0 = jnp.stack([rnd.u0] + [o.u0 for o in others], axis=-1)
    zeta = jnp.stack([rnd.zeta] + [o.zeta for o in others], axis=-1)
    zeta_l = None
    if rnd.zeta_l is not None:
        zeta_l = jnp.stack([rnd.zeta_l] + [o.zeta_l for o in others], axis=-1)
    return rnd, u0, zeta, zeta_l


class _Carry(eqx.Module):
    m: Any  # (K,)
    m_prev: Any  # (K,) m[k-1] (m[-1] = m[0]) for momentum
    u: Any  # (N, K) u[k]
    u_hist: Any  # (S, N, K)
    g_hist: Any  # (S, N, K)
    response: Any  # the block estimator's state (committee_response.py)
    L: Any  # the causal factor's rows so far over the flattened (time, unit) index (noise.NoiseFactor)
    log_w: Any  # (N,)


def committee_sweep(committee, algorithm, key, config):
    """The traced solve (see the module docstring); returns the solution's fields."""
    problem, readout = committee.problem, committee.readout
    model = problem.model
    K, T = config.K, config.n_steps
    est = config.response
    put = _sharder(config.devices)
    S = T + 1
    dtype = problem.alpha.dtype
    alpha, delta, lam = problem.alpha, problem.delta, problem.lam
    eye = jnp.eye(K, dtype=dtype)
    rnd, u0, zeta, zeta_l = _unit_draws(key, problem, algorithm, config, dtype)
    if config.devices is not None:
        rnd = sharder(config.devices)(rnd)  # the single-unit draws: trajectories last
        u0, zeta = put(u0, 0), put(zeta, 1)
        zeta_l = None if zeta_l is None else put(zeta_l, 1)
    beta, temperature = algorithm.beta, algorithm.temperature
    N = u0.shape[0]
    dts = rnd.dts
    zeta_flat = jnp.transpose(zeta, (0, 2, 1)).reshape(S * K, N)  # row j K + b: zeta[j, :, b]
    rtol = 1e-7 if dtype == jnp.float64 else 1e-4  # the single-unit sweep's pivot floor

    def sample_loss(y, r):  # one sample: r (K,)
        return problem.loss(model.loss_argument(y, readout(r)))

    grad_r = jax.vmap(jax.grad(sample_loss, argnums=1))
    hess_r = jax.vmap(jax.hessian(sample_loss, argnums=1))
    loss_v = jax.vmap(sample_loss)

    def row(carry, k):
        """Kernel row ``k`` and the observables at ``k`` (histories of ``u`` and ``g`` written)."""
        draws = rnd.at_step(k)
        proj = model.projection(draws.c, draws.h0, delta)
        r = proj[:, None] * carry.m[None, :] + carry.u
        g = draws.s_k[:, None] * grad_r(draws.y, r)
        H = draws.s_k[:, None, None] * hess_r(draws.y, r)
        log_w, w = process.likelihood_weights(draws, carry.log_w, k)
        total = jnp.sum(w)
        mean = lambda x: jnp.tensordot(w, x, axes=1) / total
        g_hist = carry.g_hist.at[k].set(g)
        u_hist = carry.u_hist.at[k].set(carry.u)
        x1 = alpha * delta * w[:, None] * g / total
        M_C = jnp.einsum("na,jnb->jab", x1, g_hist)  # M_C[k, j], zero beyond k
        M_R = alpha * delta * est.row(carry.response, k, w, H, dts, delta)
        if not config.cross_memory:
            M_R = M_R * eye
        out = dict(lam_hat=alpha * delta * mean(H), mu=alpha * mean(g * proj[:, None]), M_C=M_C, M_R=M_R,
                   train_loss=alpha * mean(loss_v(draws.y, r)),
                   train_acc=mean((draws.y * readout(r) > 0).astype(dtype)))
        if config.symmetric:
            out.update(lam_hat=exchangeable(out["lam_hat"]), mu=jnp.broadcast_to(jnp.mean(out["mu"]), (K,)),
                       M_C=exchangeable(M_C), M_R=exchangeable(M_R))
        carry = eqx.tree_at(lambda c: (c.u_hist, c.g_hist, c.log_w), carry, (u_hist, g_hist, log_w))
        return carry, out, g, H

    def noise(factor, M_C_row, k):
        """Rows ``(k, 0..K-1)`` of the causal factor of ``Delta M_C`` over the flattened index
        ``(j, b) -> j K + b``, one row at a time as in the single-unit sweep (a pivot below
        ``rtol`` times its variance, rounding or a rank-deficient estimate, is clipped to zero and
        flagged), and the noise ``xi[k]`` (N, K)."""
        A = delta * M_C_row  # (S, K, K): Cov(xi[k]_a, xi[j]_b)
        rows = []
        for a in range(K):
            L_row, factor = noise_row(factor, A[:, a, :].reshape(S * K), k * K + a, rtol)
            rows.append(L_row)
        return factor, (jnp.stack(rows) @ zeta_flat).T

    def step(carry, k):
        carry, out, g, H = row(carry, k)
        L, xi = noise(carry.L, out["M_C"], k)
        dt = dts[k]
        KR = out["M_R"] * dts[:, None, None]  # memory weights eta_l M_R[k, l]
        decay = lam * eye + out["lam_hat"]
        memory = jnp.einsum("lab,lnb->na", KR, carry.u_hist)
        u_next = carry.u + dt * (-carry.u @ decay.T + memory + xi - delta * g)
        response = est.advance(carry.response, k, KR, dt, decay, delta, H, beta)
        m_next = carry.m - dt * (lam * carry.m + out["mu"])
        if temperature is not None:  # Langevin noise on every unit (section 5.2)
            u_next = u_next + jnp.sqrt(2.0 * dt * temperature * delta) * zeta_l[k]
        if beta is not None:  # heavy ball (section 5.1); at k = 0 the previous rows are row 0's
            prev = jnp.maximum(k - 1, 0)
            u_next = u_next + beta * (carry.u - carry.u_hist[prev])
            m_next = m_next + beta * (carry.m - carry.m_prev)
        carry = _Carry(m=m_next, m_prev=carry.m, u=put(u_next, 0), u_hist=put(carry.u_hist, 1),
                       g_hist=put(carry.g_hist, 1), response=est.shard(response, put), L=L, log_w=carry.log_w)
        return carry, out

    init = _Carry(m=committee.m0, m_prev=committee.m0, u=jnp.sqrt(delta) * jnp.sqrt(problem.R0) * u0,
                  u_hist=jnp.zeros((S, N, K), dtype), g_hist=jnp.zeros((S, N, K), dtype),
                  response=est.init(key, S, K, dtype), L=NoiseFactor.empty(S * K, dtype),
                  log_w=jnp.zeros(N, dtype))

    def scan_step(carry, k):
        m_k = carry.m
        carry, out = step(carry, k)
        return carry, (m_k, out)

    carry, (m, rows) = lax.scan(scan_step, init, jnp.arange(T))
    _, last, _, _ = row(carry, T)
    rows = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), rows, last)
    m = jnp.concatenate([m, carry.m[None]])  # (S, K)
    R, P = response_blocks(lam, rows["lam_hat"], rows["M_R"], dts, beta)
    C_perp = correlation_blocks(R, P, rows["M_C"], problem.R0, dts, temperature)
    C_kk = jnp.einsum("kakb->kab", C_perp)
    Q = m[:, :, None] * m[:, None, :] + C_kk
    eps, eps_se = test_error(committee, rnd, m, C_kk, key, config)
    fields = dict(m=m, Q=Q, eps_gen=eps, train_loss=rows["train_loss"])
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fields.values()]))
    diag = jnp.diagonal(Q, axis1=-2, axis2=-1)
    exploding = jnp.max(jnp.abs(diag)) > DIVERGENCE_FACTOR * (1 + jnp.max(jnp.abs(diag[0])))
    code = jnp.where(finite, jnp.where(exploding, RESULTS.diverged, RESULTS.successful), RESULTS.nonfinite)
    # values set under vmap / eqx.tree_at were never checked: the checks run here too, and a
    # point that fails one is an invalid input, named, whatever its numbers
    checks, valid, first_bad = traced_checks(problem, algorithm, T)
    code = jnp.where(valid, code, RESULTS.invalid_input)
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(dts[:T])])
    pivots = carry.L.pivots[: T * K]  # the step-T rows enter no noise
    n_clipped, n_negative = jnp.sum(pivots <= 0), jnp.sum(pivots < 0)
    return dict(t=t, m=m, Q=Q, C_perp=jnp.transpose(C_perp, (0, 2, 1, 3)), R=R, lam_hat=rows["lam_hat"],
                mu=rows["mu"], M_C=rows["M_C"], M_R=rows["M_R"], eps_gen=eps, eps_gen_integral_se=eps_se,
                train_loss=rows["train_loss"], train_acc=rows["train_acc"],
                result=Result.of(code, first_bad, checks), stats=dict(n_clipped=n_clipped, n_negative=n_negative))


def _sharder(ids):
    """``put(x, axis)``: ``x`` with its trajectory axis ``axis`` split over the devices ``ids``
    (a layout only: the values are unchanged); the identity for one device, or where the axis
    does not split evenly."""
    if ids is None:
        return lambda x, axis: x
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    by_id = {d.id: d for d in jax.devices()}
    mesh = Mesh(np.array([by_id[i] for i in ids]), ("traj",))

    def put(x, axis):
        if x.shape[axis] % len(ids):
            return x
        spec = [None] * x.ndim
        spec[axis] = "traj"
        return lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec(*spec)))

    return put


def exchangeable(B):
    """``K x K`` blocks (last two axes) averaged over the permutations of the units: every
    diagonal entry becomes the mean diagonal entry, every off-diagonal one the mean
    off-diagonal entry."""
    K = B.shape[-1]
    if K == 1:
        return B
    eye = jnp.eye(K, dtype=B.dtype)
    diag = jnp.einsum("...aa->...", B)[..., None, None] / K
    off = (jnp.sum(B, axis=(-2, -1))[..., None, None] - diag * K) / (K * (K - 1))
    return diag * eye + off * (1 - eye)


def response_blocks(lam, lam_hat, M_R, dts, beta=None):
    """``R[k, l]`` (``K x K`` blocks, ``R[l+1, l] = I``) and ``P[k]`` (``P[0] = I``): section 2.4
    with matrix products (and ``beta (R[k] - R[k-1])`` with momentum, ``P[-1] = P[0]``).
    ``lam_hat`` ``(S, K, K)``, ``M_R`` ``(S, S, K, K)``."""
    S, K = lam_hat.shape[0], lam_hat.shape[1]
    dtype = lam_hat.dtype
    eye = jnp.eye(K, dtype=dtype)
    RP = jnp.zeros((S, S + 1, K, K), dtype).at[0, S].set(eye)  # column S holds P

    def body(RP, k):
        dt = dts[k]
        decay = eye - dt * (lam * eye + lam_hat[k])
        new = jnp.einsum("ab,lbc->lac", decay, RP[k]) + dt * jnp.einsum("jab,jlbc->lac", M_R[k] * dts[:, None, None],
                                                                           RP)
        if beta is not None:
            new = new + beta * (RP[k] - RP[jnp.maximum(k - 1, 0)])
        new = new.at[k].add(eye)
        return RP.at[k + 1].set(new), None

    RP, _ = lax.scan(body, RP, jnp.arange(S - 1))
    return RP[:, :S], RP[:, S]


def correlation_blocks(R, P, M_C, R0, dts, temperature=None):
    """``C_perp[k, a, l, b]`` = ``R0 (P[k] P[l]^T)_ab + sum_{i, j} eta_i eta_j (R[k, i] M_C[i, j] R[l, j]^T)_ab``
    with ``M_C[i, j] = M_C[j, i]^T`` above the diagonal (plus ``2 T_L sum_i eta_i R[k, i] R[l, i]^T``
    with Langevin noise); returned as ``(S, K, S, K)``."""
    S, K = P.shape[0], P.shape[1]
    flat = lambda X: jnp.transpose(X, (0, 2, 1, 3)).reshape(S * K, S * K)  # [k, l, a, b] -> [(k, a), (l, b)]
    lower = flat(M_C)
    strict = flat(M_C * (jnp.arange(S)[:, None] > jnp.arange(S)[None, :])[:, :, None, None])
    M = lower + strict.T
    Rw = flat(R) * jnp.repeat(dts, K)[None, :]
    P2 = P.reshape(S * K, K)
    C = R0 * P2 @ P2.T + Rw @ M @ Rw.T
    if temperature is not None:
        C = C + 2.0 * temperature * (Rw @ flat(R).T)
    return C.reshape(S, K, S, K)


# quadrature of the test error: Gauss-Legendre nodes on [-8, 0] and [0, 8] per Gaussian
# dimension (the normal density in the weights; its mass beyond 8 is 1e-15), used while the
# product grid over the model's atoms stays within QUADRATURE_POINTS
HALF_NODES, QUADRATURE_POINTS = 20, 200_000


def quadrature_size(committee) -> int:
    """Points of the test error's product quadrature (0: Monte Carlo). The quadrature needs the
    read-out's root (the last field integrated exactly) and the model's atoms; the other
    ``K - 1`` fields and ``h0`` take ``2 HALF_NODES`` nodes each."""
    model = committee.problem.model
    atoms = model.test_atoms()
    has_root = jax.eval_shape(lambda: committee.readout.root_last(jnp.zeros((1, committee.K - 1)))) is not None
    if atoms is None or not has_root:
        return 0
    size = atoms[0].shape[0] * (2 * HALF_NODES) ** committee.K
    return size if size <= QUADRATURE_POINTS else 0


def _nodes(dims: int, half: int):
    """Product Gauss-Legendre nodes ``(n, dims)``, ``half`` per half-line and dimension, and
    their weights (the normal density included)."""
    x, w = np.polynomial.legendre.leggauss(half)
    t, wt = 4.0 * (x + 1.0), 4.0 * w * np.exp(-0.5 * (4.0 * (x + 1.0)) ** 2) / np.sqrt(2 * np.pi)
    t, wt = np.concatenate([-t, t]), np.concatenate([wt, wt])
    grid = np.stack(np.meshgrid(*([t] * dims), indexing="ij"), -1).reshape(-1, dims)
    weights = np.prod(np.stack(np.meshgrid(*([wt] * dims), indexing="ij"), -1).reshape(-1, dims), axis=1)
    return grid, weights


def test_error(committee, rnd, m, C_kk, key, config):
    """``P(y f(r) <= 0)`` at every step for a fresh sample, ``r = m proj + sqrt(Delta) L z``
    (``L L^T = C_perp[k, k]``, ``y`` the clean label). With the read-out's root the last field
    is integrated exactly, and the rest (``h0``, the first ``K - 1`` entries of ``z`` and the
    model's atoms) by product quadrature when :func:`quadrature_size` allows (its error estimated
    by the difference from the rule with half the nodes), else by Monte Carlo over the solve's ``N`` samples ``(c, h0)`` with fresh ``z`` (smooth);
    without a root by the indicator's Monte Carlo average. Returns the mean and its standard
    error."""
    problem, readout = committee.problem, committee.readout
    model, delta = problem.model, problem.delta
    K = config.K
    dtype = m.dtype
    eye = jnp.eye(K, dtype=dtype)
    tiny = jnp.finfo(dtype).tiny

    def error(m_k, C_k, proj, y, z, exact_last):
        """The error of every point ``(proj, y, z)`` (``z`` ``(P, K)``)."""
        cov = delta * 0.5 * (C_k + C_k.T)
        L = jnp.linalg.cholesky(cov + 1e-12 * jnp.maximum(jnp.trace(cov), tiny) * eye)
        mean = proj[:, None] * m_k[None, :]
        if not exact_last:
            return (y * readout(mean + z @ L.T) <= 0).astype(dtype)
        root = readout.root_last(mean[:, :-1] + z[:, :-1] @ L[:-1, :-1].T)
        base = mean[:, -1] + z[:, :-1] @ L[-1, :-1]
        sd = jnp.maximum(L[-1, -1], tiny)
        # P(r_K <= root): f <= 0. An infinite root (f of one sign for every r_K) is a constant,
        # kept out of the arithmetic so that its derivatives are 0, not inf * 0
        finite = jnp.isfinite(root)
        below = jnp.where(finite, ndtr((jnp.where(finite, root, 0.0) - base) / sd), jnp.where(root > 0, 1.0, 0.0))
        return jnp.where(y > 0, below, 1.0 - below)

    if config.quadrature:
        c_atoms, p_atoms = model.test_atoms()

        def rule(half):  # the points (proj, y, z) and weights over the atoms x nodes
            grid, weights = _nodes(K, half)  # columns: h0, z_1 .. z_{K-1}
            n_atoms, n = c_atoms.shape[0], grid.shape[0]
            c = jnp.repeat(c_atoms.astype(dtype), n)
            h0 = jnp.tile(jnp.asarray(grid[:, 0], dtype), n_atoms)
            z = jnp.tile(jnp.asarray(np.concatenate([grid[:, 1:], np.zeros((n, 1))], 1), dtype), (n_atoms, 1))
            w = (p_atoms.astype(dtype)[:, None] * jnp.asarray(weights, dtype)[None, :]).reshape(-1)
            return model.projection(c, h0, delta), model.clean_label(c, h0), z, w

        fine, coarse = rule(HALF_NODES), rule(HALF_NODES // 2)

        def at(mC):
            value = lambda proj, y, z, w: jnp.sum(w * error(*mC, proj, y, z, True)) / jnp.sum(w)
            est = value(*fine)
            return est, jnp.abs(lax.stop_gradient(est - value(*coarse)))

        return lax.map(at, (m, C_kk))
    c, h0 = rnd.c, rnd.h0
    N = c.shape[0]
    proj, y = model.projection(c, h0, delta), model.clean_label(c, h0)
    lp = model.log_prob(c, rnd.y)
    w = jnp.exp(lp - lax.stop_gradient(lp))  # the law of c (rho) in gradients
    z = jax.random.normal(jax.random.fold_in(key, 0x7E57), (N, K), jnp.float32).astype(dtype)
    exact_last = jax.eval_shape(lambda: readout.root_last(jnp.zeros((1, K - 1), dtype))) is not None

    def at(m_k, C_k):
        err = error(m_k, C_k, proj, y, z, exact_last)
        est = jnp.sum(w * err) / jnp.sum(w)
        pairs = err.reshape(-1, 2).mean(axis=1) if config.antithetic else err
        se = jnp.std(lax.stop_gradient(pairs), ddof=1) / jnp.sqrt(pairs.shape[0])
        return est, se

    return jax.vmap(at)(m, C_kk)
