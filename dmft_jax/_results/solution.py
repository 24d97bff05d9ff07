"""The result of a solve, for every number of units: :class:`Solution` (every observable,
the kernels, the outcome as data, statistics); its static configuration is
:class:`~dmft_jax.SolveConfig` (sizes and strategies; never the seed, which is data)."""
from __future__ import annotations

import warnings
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _validate
from .results import DIVERGENCE_FACTOR, RESULTS, AbstractOutcome, Result

# the observables that get a standard error with errors=GroupErrors(...) (sol.<name>_se)
OBSERVABLES = ("m", "q", "eps_gen", "train_loss", "train_acc", "lam_hat", "mu", "C", "C_perp", "R", "M_C", "M_R")

# [*batch, steps] (+ a committee's unit axes) and [*batch, steps, steps] (+ unit axes)
Curve = Float[Array, "..."]
Square = Float[Array, "..."]


def gain_property(name: str) -> property:
    def get(self):
        return self.stats.get(f"cv_gain_{name}")

    get.__doc__ = (f"The variance ratio of ``{name}`` without and with control variates, per time (1 where it "
                   "fell back; ``None`` without ``errors=dj.ControlVariates()``).")
    get.__name__ = f"cv_gain_{name}"
    return property(get)


def se_property(name: str) -> property:
    def get(self):
        return None if self.se is None else self.se[name]

    get.__doc__ = f"The standard error of ``{name}`` (``None`` when solved without ``errors=``)."
    get.__name__ = f"{name}_se"
    return property(get)


class Solution(AbstractOutcome):
    """Result of :func:`dmft_jax.solve` (or, batched, of :func:`dmft_jax.solve_grid`), for a
    single unit and for a committee of ``K`` units alike.

    Arrays are indexed by the time step ``k = 0..T`` (after any leading batch axes). For a
    single unit (a :class:`~dmft_jax.Problem`): ``t``, ``m``, ``q = C(t,t)``, ``eps_gen``,
    ``train_loss``, ``train_acc``, ``lam_hat``, ``mu`` are ``(T+1,)``; ``C``, ``C_perp``,
    ``R``, ``P``, ``M_C``, ``M_R`` are ``(T+1, T+1)``. For a :class:`~dmft_jax.Committee` the
    same names carry unit axes: ``m`` ``(T+1, K)``, ``q`` (also read as ``Q``) ``(T+1, K, K)``,
    ``lam_hat`` ``(T+1, K, K)``, ``mu`` ``(T+1, K)``, ``C``, ``C_perp``, ``R``, ``P``, ``M_C``,
    ``M_R`` ``(T+1, T+1, K, K)`` (``[k, l]`` the block of times ``k, l``; ``P`` ``(T+1, K, K)``),
    and ``eps_gen`` is the test error of a fresh sample (regression: the mean squared error
    against the noiseless target), with ``eps_gen_integral_se`` the error of its integral alone
    (Monte Carlo, or on ``config.quadrature`` points an estimate of the quadrature error from
    above; ``None`` for a single unit, whose ``eps_gen`` is in closed form).
    ``result`` is the outcome (:class:`~dmft_jax.results.Result`; ``message``, ``ok``);
    ``stats`` counts the noise-factor pivots clipped to zero (``n_clipped``; the step-``T``
    pivot, which enters no noise, is not counted), those among them that were negative beyond
    the rounding floor (``n_negative``: float32 lost positive definiteness) and the
    fixed-point iterations (``n_iter``, 0 for the sweep). ``seed`` is the integer key (``-1``
    for a key array). ``se`` holds the standard errors (``solve(errors=dj.GroupErrors())``;
    ``None`` otherwise) of every name in :data:`OBSERVABLES`, also read as ``sol.eps_gen_se``
    etc.; ``stats["n_groups_failed"]`` counts the replicas that failed (their standard errors
    are then NaN). ``trajectories`` holds ``u, g, r, s, c, y`` of the first
    ``save_trajectories`` trajectories when requested (a single unit). A grid solution also
    has ``grid``: the gridded parameters' values, shaped like the grid.
    """

    t: Curve
    m: Curve
    q: Curve
    C: Square
    C_perp: Square
    R: Square
    P: Curve
    eps_gen: Curve
    train_loss: Curve
    train_acc: Curve
    lam_hat: Curve
    mu: Curve
    M_C: Square
    M_R: Square
    result: Result
    stats: dict
    seed: Any
    problem: Any
    algorithm: Any
    config: Any = eqx.field(static=True)  # dmft_jax.SolveConfig
    trajectories: Any = None
    grid: Any = None
    se: Any = None
    bias: Any = None  # b[0..T] of a learnable bias (Problem(bias=...)); None without one
    eps_gen_integral_se: Any = None  # a committee's test-error integral alone (None: closed form)

    kind: ClassVar[str] = "solution"
    base_arrays: ClassVar[tuple] = ("t", "m", "q", "C", "C_perp", "R", "P", "eps_gen", "train_loss", "train_acc",
                               "lam_hat", "mu", "M_C", "M_R", "status", "n_clipped", "n_negative", "n_iter")

    @property
    def saved_arrays(self) -> tuple:
        """The names :func:`dmft_jax.save` writes (with ``<name>_se`` when there are errors)."""
        optional = tuple(n for n in ("bias", "eps_gen_integral_se") if getattr(self, n) is not None) + tuple(
            n for n in ("history_error", "history_error_q") if n in self.stats) + tuple(  # a compressed history's estimate
            f"cv_gain_{n}" for n in ("m", "q", "eps_gen", "train_loss") if f"cv_gain_{n}" in self.stats)
        # a compressed history's solution has no two-time squares (C, C_perp, R, P: None)
        base = tuple(n for n in self.base_arrays if getattr(self, n) is not None)
        se = tuple(f"{n}_se" for n in OBSERVABLES if self.se[n] is not None) if self.se is not None else ()
        return base + optional + se

    m_se, q_se, eps_gen_se, train_loss_se, train_acc_se, lam_hat_se, mu_se, C_se, C_perp_se, R_se, M_C_se, M_R_se = (
        se_property(n) for n in OBSERVABLES)
    Q_se = q_se
    cv_gain_m, cv_gain_q, cv_gain_eps_gen, cv_gain_train_loss = (
        gain_property(n) for n in ("m", "q", "eps_gen", "train_loss"))

    @property
    def Q(self):
        """A committee's overlaps ``Q = W W^T / d`` ``(T+1, K, K)``: ``q`` under its committee name."""
        return self.q

    @property
    def K(self) -> int:
        """The number of units (1 for a single unit)."""
        return self.config.K

    @property
    def n_clipped(self):
        return self.stats["n_clipped"]

    @property
    def n_negative(self):
        return self.stats["n_negative"]

    @property
    def n_iter(self):
        return self.stats["n_iter"]

    @property
    def history_error(self):
        """A compressed history's error estimate of ``eps_gen`` (``None`` without one)."""
        return self.stats.get("history_error")

    @property
    def history_error_q(self):
        """A compressed history's error estimate of ``q`` (relative; ``None`` without one)."""
        return self.stats.get("history_error_q")

    def __getitem__(self, name: str):
        """``sol["eps_gen"]`` is ``sol.eps_gen`` (the former grid interface)."""
        return getattr(self, name)

    def save(self, path, *, overwrite: bool = False):
        """Write ``<path>.npz`` and ``<path>.json`` (see :func:`dmft_jax._results.io.save`)."""
        from .io import save

        return save(self, path, overwrite=overwrite)

    def plot(self, simulation=None, **kwargs):
        from .plot import compare

        return compare(self, simulation, **kwargs)


def outcome(fields: dict, q, converged, valid=True, check=-1, checks=()) -> Result:
    """The outcome of a solve from its observables (traced; ``q`` ``(T+1,)`` or a committee's
    ``(T+1, K, K)``, diverged when a self-overlap grows past bounds); ``valid``: the parameters passed
    their checks (else ``check`` indexes the first of ``checks`` that failed)."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fields.values()]))
    diag = q if q.ndim == 1 else jnp.diagonal(q, axis1=-2, axis2=-1)  # a committee's Q_aa
    exploding = jnp.max(jnp.abs(diag)) > DIVERGENCE_FACTOR * (1 + jnp.max(jnp.abs(diag[0])))
    code = jnp.where(finite, jnp.where(exploding, RESULTS.diverged,
                                       jnp.where(converged, RESULTS.successful, RESULTS.max_iter)),
                     RESULTS.nonfinite)
    return Result.of(jnp.where(valid, code, RESULTS.invalid_input), check, checks)


def finish(sol: Solution, throw: bool, who: str = "dmft_jax.solve") -> Solution:
    """Warn about (or, with ``throw``, raise on) a failed concrete result; inside a
    transformation, ``throw`` becomes a runtime error of the compiled program."""
    n_negative = sol.stats["n_negative"]
    if (_validate.is_concrete(n_negative) and sol.m.dtype == jnp.float32
            and np.any(np.asarray(n_negative) > 0)):
        warnings.warn(
            f"{who}: float32 lost positive definiteness of the noise covariance: "
            f"{int(np.max(np.asarray(n_negative)))} Cholesky pivots of Delta M_C came out "
            "negative beyond the rounding floor and were clipped; float64 keeps this accuracy "
            "(jax.config.update('jax_enable_x64', True) and dtype=float64)",
            RuntimeWarning, stacklevel=3)
    failed = sol.stats.get("n_groups_failed")
    if failed is not None and _validate.is_concrete(failed) and np.any(np.asarray(failed) > 0):
        groups = getattr(sol.config.errors, "groups", "the")
        why = ("each replica is too small for this setting; raise n_traj or lower GroupErrors.groups"
               if np.all(sol.result.ok) else "the solve itself failed: see its message")
        warnings.warn(f"{who}: the standard errors are NaN: {int(np.max(np.asarray(failed)))} of {groups} replica "
                      f"solves on N / groups trajectories failed ({why})", RuntimeWarning, stacklevel=3)
    code = sol.result.code
    if _validate.is_concrete(code):
        if np.any(np.asarray(code) != RESULTS.successful):
            if throw:
                raise RuntimeError(f"{who}: {sol.message}")
            warnings.warn(f"{who}: {sol.message}", RuntimeWarning, stacklevel=3)
        return sol
    if throw:  # the message of the outcome, naming the failed check (jax.jit shows it inside its runtime error)
        checks = sol.result.checks
        messages = tuple(f"{who}: {RESULTS(v).message}" for v in range(len(RESULTS))) + tuple(
            f"{who}: {RESULTS.invalid_input.message}; failed: {c}" for c in checks)
        named = (code == RESULTS.invalid_input) & (sol.result.check >= 0)
        index = jnp.where(named, len(RESULTS) + sol.result.check, code)
        checked = eqx.branched_error_if(code, code != RESULTS.successful, index, messages)
        sol = eqx.tree_at(lambda s: s.result.code, sol, checked)
    return sol
