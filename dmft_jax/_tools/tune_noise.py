"""The Monte Carlo noise of a tuning result (docs/equations.md, section 2.9.3): the standard
error of the tuned objective and of its improvement over the start, from replica solves that
share their random numbers at both points."""
from __future__ import annotations

import sys

import equinox as eqx
import jax
import numpy as np

from .._solve.standard_errors import AbstractErrors, GroupErrors, NoErrors, group_config, replica_keys
from .._solve.control_variates import ControlVariates
from .._solve.solve import solve_traced


def resolve_errors(errors, n_traj: int, antithetic: bool) -> AbstractErrors:
    """``tune``'s ``errors`` option as an estimator: ``"auto"`` (:func:`auto_errors`),
    ``None`` (none) or an :class:`~dmft_jax.AbstractErrors`."""
    if isinstance(errors, str):
        if errors != "auto":
            raise ValueError(f"errors must be 'auto', None or a dmft_jax.AbstractErrors; got {errors!r}")
        errors = auto_errors(n_traj, antithetic)
    errors = NoErrors() if errors is None else errors
    if not isinstance(errors, AbstractErrors):
        raise ValueError(f"errors must be a dmft_jax.AbstractErrors (e.g. GroupErrors()) or None; got {errors!r}")
    return errors


@eqx.filter_jit
def replica_objectives(problem, algorithm, key, config, objective, groups):
    """The objective of each of the ``groups`` replicas of a solve (:mod:`dmft_jax._solve.standard_errors`)."""
    small = group_config(config, groups)
    replicas = lambda prob: jax.vmap(lambda k: solve_traced(prob, algorithm, k, small))(replica_keys(key, groups))
    reps = replicas(problem)
    if isinstance(config.errors, ControlVariates):  # the objective of the corrected replicas
        reps = config.errors.corrected_replicas(problem, algorithm, config, reps, replicas)
    return jax.vmap(objective)(reps), reps.result.code


def noise_report(objective, start, end, key, config, errors, start_value, value):
    """``objective_se``, ``start_objective``, ``improvement`` and ``improvement_se``
    (docs/equations.md, section 2.9.3): replicas with common random numbers at the start and
    the tuned point (each a ``(problem, algorithm)`` pair)."""
    g = errors.groups
    before, code0 = (np.asarray(a) for a in replica_objectives(*start, key, config, objective, g))
    after, code1 = (np.asarray(a) for a in replica_objectives(*end, key, config, objective, g))
    failed = int(np.sum((code0 != 0) | (code1 != 0)))
    if failed:
        import warnings

        warnings.warn(f"dmft_jax.tune: {failed} of {g} replica solves failed: the standard errors are NaN (raise "
                      "n_traj or lower GroupErrors.groups)", RuntimeWarning, stacklevel=3)
        before, after = before * np.nan, after * np.nan
    scale = 1.0 / np.sqrt(g)
    return dict(objective_se=float(np.std(after, ddof=1) * scale), start_objective=float(start_value),
                improvement=float(value) - float(start_value),
                improvement_se=float(np.std(after - before, ddof=1) * scale))


def auto_errors(n_traj, antithetic):
    """``GroupErrors(G)`` with the largest ``G`` of 16, 8, 4 that splits ``n_traj``, else ``None``."""
    for g in (16, 8, 4):
        try:
            GroupErrors(g).check(n_traj, antithetic)
            return GroupErrors(g)
        except ValueError:
            pass
    return None


def announce(res, progress: bool):
    """Warn when the improvement is within the noise; print the objective with its error."""
    if res.within_noise:
        import warnings

        warnings.warn(f"dmft_jax.tune: the improvement {res.improvement:.3g} of the objective is within the Monte "
                      f"Carlo noise (its standard error is {res.improvement_se:.2g}, common random numbers): the "
                      "tuned point is not shown to be better than the start; raise n_traj", RuntimeWarning,
                      stacklevel=3)
    if progress and res.improvement_se is not None:
        print(f"tune: objective {float(res.objective):.6f} +- {res.objective_se:.2g}; improvement "
              f"{res.improvement:.3g} +- {res.improvement_se:.2g} over the start", file=sys.stderr, flush=True)



