"""Standard errors of a DMFT solve (docs/equations.md, section 2.9).

A solve is a Monte Carlo estimate: ``N`` trajectories estimate the kernels, and every
observable inherits their error through the self-consistency. :class:`GroupErrors` measures
that error by independent replication: ``G`` further solves, each on ``N / G`` fresh
trajectories (``vmap`` over the groups, unsharded), whose spread estimates the variance of one
``N / G`` solve; the standard error of the full solve is that spread over ``sqrt(G)``
(variance ``O(1/N)``). The reported values stay those of the full solve; the group solves
carry no gradient.

Bias and failure: the standard error is itself estimated from ``G`` values (relative error
about ``1/sqrt(2 (G - 1))``, 18% for ``G = 16``; ``|value - exact| < 2 se`` then holds with
probability about 94% rather than 95%). It assumes the ``1/N`` scaling of the variance, which
holds once a group is large (``N / G`` in the hundreds); where an ``N / G`` solve is in
another regime than the ``N`` solve (a group diverges, or clips noise pivots the full solve
does not) the standard error is wrong, and a failed group makes it NaN with a warning. The
error is the Monte Carlo error only: the time discretisation (``dt = eta``) is exact by
construction, and the bias of the self-consistent estimate, ``O(1/N)``, is not included.
"""
from __future__ import annotations

import abc
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._results.solution import OBSERVABLES  # the observables that get a standard error
from .progress import NoProgressMeter


class AbstractErrors(eqx.Module):
    """Interface of an error estimator: ``check`` the sizes, ``estimate`` the standard errors
    (a dict ``name -> array`` shaped like the observable, or ``None``) and the number of
    failed replicas."""

    @abc.abstractmethod
    def check(self, n_traj: int, antithetic: bool) -> None:
        """Raise ``ValueError`` when the estimator cannot run at ``n_traj`` trajectories."""

    @abc.abstractmethod
    def estimate(self, run_group, key, config):
        """``(se, n_failed)`` for a solve of ``config``; ``run_group(key, group_config)``
        solves one replica (traced)."""

    @abc.abstractmethod
    def replicas(self, config):
        """``(G, per-replica response estimator)`` for the memory check, or ``None``."""

    def check_solve(self, problem, algorithm, config) -> None:
        """Raise ``ValueError`` when the estimator cannot run for this problem and configuration
        (nothing to check by default)."""
        return None


class NoErrors(AbstractErrors):
    """No standard errors (the default of :func:`dmft_jax.solve`)."""

    def check(self, n_traj, antithetic):
        return None

    def estimate(self, run_group, key, config):
        return None, None

    def replicas(self, config):
        return None


class GroupErrors(AbstractErrors):
    """Standard errors from ``groups`` independent solves on ``N / groups`` trajectories each
    (module docstring). The exact response runs on ``n_chi / groups`` trajectories of each
    group, the probes on ``N / groups``; ``n_chi`` (or the probed trajectories) must be at
    least ``groups``. Costs about one more solve: a solve with errors takes 1.7-2.4x as long,
    and its first call compiles 2-3x as long (``benchmarks/error_bars.py``). The replicas run
    unsharded: with ``sharding`` they are not split over the devices."""

    groups: int = eqx.field(static=True, default=16)

    def __init__(self, groups=16):
        ok = isinstance(groups, (int, np.integer)) and not isinstance(groups, (bool, np.bool_)) and groups >= 2
        if not ok:
            raise ValueError(f"GroupErrors.groups must be an integer >= 2; got {groups!r}")
        self.groups = int(groups)

    def check(self, n_traj, antithetic):
        g = self.groups
        unit = g * (2 if antithetic else 1)
        if n_traj % unit or n_traj < 2 * g:
            pairs = " (antithetic pairs)" if antithetic else ""
            raise ValueError(f"GroupErrors.groups = {g} must split n_traj = {n_traj} into equal groups of at least 2 "
                             f"trajectories{pairs}: n_traj must be a multiple of {unit} and at least {2 * g}")

    def estimate(self, run_group, key, config):
        return self.summarize(self.replicate(run_group, key, config))

    def replicate(self, run_group, key, config):
        """The ``G`` replicas (a :class:`~dmft_jax.Solution` batched over the groups)."""
        small = group_config(config, self.groups)
        return jax.vmap(lambda k: run_group(k, small))(replica_keys(key, self.groups))

    def summarize(self, reps):
        """``(se, n_failed)`` from the replicas."""
        failed = jnp.sum(reps.result.code != 0)
        scale = 1.0 / jnp.sqrt(self.groups)
        se = {n: None if getattr(reps, n) is None else
              jnp.where(failed > 0, jnp.nan, jnp.std(getattr(reps, n), axis=0, ddof=1) * scale) for n in OBSERVABLES}
        return se, failed

    def replicas(self, config):
        return self.groups, group_config(config, self.groups).response


def replica_keys(key, groups: int):
    """The keys of the ``groups`` replicas of a solve with ``key`` (independent of its draws)."""
    return jax.random.split(jax.random.fold_in(key, 0xE7703), groups)


def group_config(config, groups: int):
    """The :class:`~dmft_jax.SolveConfig` of one group solve: ``N / groups``
    trajectories, the response estimator split likewise, no trajectories saved, no progress,
    one device, no errors of its own."""
    n = config.n_traj // groups
    response = config.response.per_group(groups).resolve(config.n_steps, n, jnp.dtype(config.dtype).itemsize,
                                                         config.K)
    return dataclasses.replace(config, n_traj=n, response=response, save_trajectories=0,
                               progress_meter=NoProgressMeter(), devices=None, errors=NoErrors())


def no_gradient(tree):
    """``tree`` with every inexact array leaf behind ``stop_gradient``."""
    return jax.tree_util.tree_map(lambda x: lax.stop_gradient(x) if eqx.is_inexact_array(x) else x, tree)
