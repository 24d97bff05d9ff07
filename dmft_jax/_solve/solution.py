"""The result of a solve: :class:`Solution` (every observable, the kernels, the outcome as
data, statistics) and :class:`SolveConfig`, the static description of the compiled
program (sizes and strategies; never the seed, which is data)."""
from __future__ import annotations

import warnings
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _validate
from .._response.standard_errors import OBSERVABLES, AbstractErrors, NoErrors
from .results import DIVERGENCE_FACTOR, RESULTS, AbstractOutcome, Result

Curve = Float[Array, "*batch steps"]
Square = Float[Array, "*batch steps steps"]


class SolveConfig(eqx.Module):
    """Everything the compiled solve depends on besides the parameters and the key: the
    number of steps ``n_steps`` (``T``), of trajectories ``n_traj`` (``N``), the strategies
    (``solver``, ``response`` resolved to its sizes, ``adjoint``, ``progress_meter``), the
    device ids of the sharding (``None``: one device) and the numerical options."""

    n_steps: int = eqx.field(static=True)
    n_traj: int = eqx.field(static=True)
    solver: Any = eqx.field(static=True)
    response: Any = eqx.field(static=True)
    adjoint: Any = eqx.field(static=True)
    progress_meter: Any = eqx.field(static=True)
    devices: Any = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)
    pivot_rtol: float = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    save_trajectories: int = eqx.field(static=True)
    errors: AbstractErrors = eqx.field(static=True, default=NoErrors())
    moment_matching: bool = eqx.field(static=True, default=True)

    @property
    def n_chi(self) -> int:
        """Trajectories carrying the exact response (0 for other estimators)."""
        return getattr(self.response, "n_chi", 0) or 0

    def to_dict(self) -> dict:
        out = {name: _describe(getattr(self, name)) for name in self.__dataclass_fields__}
        out["n_chi"] = self.n_chi
        return out

    def __getitem__(self, name):  # read like the former dict configuration
        return self.n_chi if name == "n_chi" else getattr(self, name)


def _describe(v):
    """A JSON-friendly description of a configuration entry: a strategy as its class name and
    options."""
    if isinstance(v, eqx.Module):
        return {"type": type(v).__name__, **{f: _describe(getattr(v, f)) for f in v.__dataclass_fields__}}
    if isinstance(v, tuple):
        return list(v)
    return v


def se_property(name: str) -> property:
    def get(self):
        return None if self.se is None else self.se[name]

    get.__doc__ = f"The standard error of ``{name}`` (``None`` when solved without ``errors=``)."
    get.__name__ = f"{name}_se"
    return property(get)


class Solution(AbstractOutcome):
    """Result of :func:`dmft_jax.solve` (or, batched, of :func:`dmft_jax.solve_grid`).

    Arrays are indexed by the time step ``k = 0..T`` (after any leading batch axes):
    ``t``, ``m``, ``q = C(t,t)``, ``eps_gen``, ``train_loss``, ``train_acc``, ``lam_hat``,
    ``mu`` are ``(T+1,)``; ``C``, ``C_perp``, ``R``, ``M_C``, ``M_R`` are ``(T+1, T+1)``.
    ``result`` is the outcome (:class:`~dmft_jax._solve.results.Result`; ``message``, ``ok``);
    ``stats`` counts the noise-factor pivots clipped to zero (``n_clipped``; the step-``T``
    pivot, which enters no noise, is not counted), those among them that were negative beyond
    the rounding floor (``n_negative``: float32 lost positive definiteness) and the
    fixed-point iterations (``n_iter``, 0 for the sweep). ``seed`` is the integer key (``-1``
    for a key array). ``se`` holds the standard errors (``solve(errors=dj.GroupErrors())``;
    ``None`` otherwise) of ``m, q, eps_gen, train_loss, train_acc, lam_hat, mu, C, R, M_C,
    M_R``, also read as ``sol.eps_gen_se`` etc.; ``stats["n_groups_failed"]`` counts the
    replicas that failed (their standard errors are then NaN). ``trajectories`` holds ``u, g, r, s, c, y`` of the first
    ``save_trajectories`` trajectories when requested. A grid solution also has ``grid``:
    the gridded parameters' values, shaped like the grid.
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
    config: SolveConfig = eqx.field(static=True)
    trajectories: Any = None
    grid: Any = None
    se: Any = None
    bias: Any = None  # b[0..T] of a learnable bias (Problem(bias=...)); None without one

    kind: ClassVar[str] = "solution"
    base_arrays: ClassVar[tuple] = ("t", "m", "q", "C", "C_perp", "R", "P", "eps_gen", "train_loss", "train_acc",
                               "lam_hat", "mu", "M_C", "M_R", "status", "n_clipped", "n_negative", "n_iter")

    @property
    def saved_arrays(self) -> tuple:
        """The names :func:`dmft_jax.save` writes (with ``<name>_se`` when there are errors)."""
        return self.base_arrays + (("bias",) if self.bias is not None else ()) + (
            tuple(f"{n}_se" for n in OBSERVABLES) if self.se is not None else ())

    m_se, q_se, eps_gen_se, train_loss_se, train_acc_se, lam_hat_se, mu_se, C_se, R_se, M_C_se, M_R_se = (
        se_property(n) for n in OBSERVABLES)

    @property
    def n_clipped(self):
        return self.stats["n_clipped"]

    @property
    def n_negative(self):
        return self.stats["n_negative"]

    @property
    def n_iter(self):
        return self.stats["n_iter"]

    def __getitem__(self, name: str):
        """``sol["eps_gen"]`` is ``sol.eps_gen`` (the former grid interface)."""
        return getattr(self, name)

    def save(self, path, *, overwrite: bool = False):
        """Write ``<path>.npz`` and ``<path>.json`` (see :func:`dmft_jax._tools.io.save`)."""
        from .._tools.io import save

        return save(self, path, overwrite=overwrite)

    def plot(self, simulation=None, **kwargs):
        from .._tools.plot import compare

        return compare(self, simulation, **kwargs)


def outcome(fields: dict, q, converged, valid=True, check=-1, checks=()) -> Result:
    """The outcome of a solve from its observables (traced); ``valid``: the parameters passed
    their checks (else ``check`` indexes the first of ``checks`` that failed)."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fields.values()]))
    exploding = jnp.max(jnp.abs(q)) > DIVERGENCE_FACTOR * (1 + jnp.abs(q[0]))
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
    if throw:
        checked = eqx.error_if(code, code != RESULTS.successful, f"{who} failed")
        sol = eqx.tree_at(lambda s: s.result.code, sol, checked)
    return sol
