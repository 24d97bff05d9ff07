"""The error estimate of a compressed history (docs/equations.md, section 2.10.4): an
embedded pair, as in Runge-Kutta error control. The same random numbers are solved on the first
``n_estimate`` trajectories with the solve's history and with the next coarser one
(:meth:`~dmft_jax.CompressedHistory.coarser`); their difference estimates the compression
error of the coarser, an upper estimate of the solve's own."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from .._response.probes import ProbeResponse
from .._solvers.sweep import CausalSweep
from .progress import NoProgressMeter
from .standard_errors import NoErrors

N_ESTIMATE = 2048  # the default trajectories of the pair


def estimate_size(config) -> int:
    """The trajectories the pair is solved on: ``n_estimate`` (default ``min(N, 2048)``), even
    for antithetic pairs."""
    history = config.solver.history
    n = min(config.n_traj, history.n_estimate or N_ESTIMATE)
    return n - n % 2 if config.antithetic else n


def pair_config(config, history, n: int):
    """The :class:`~dmft_jax.SolveConfig` of one solve of the pair: ``history`` (without an
    estimate of its own) on ``n`` trajectories, no errors, progress or saved trajectories."""
    est = config.response
    probed = None if est.n_traj in (None, config.n_traj) else min(est.n_traj, n)
    response = ProbeResponse(est.n_probes, probed).resolve(config.n_steps, n, jnp.dtype(config.dtype).itemsize,
                                                           config.K)
    old = config.solver
    solver = CausalSweep(old.time_blocks, old.pivot_rtol, old.buckets, dataclasses.replace(history, estimate=False))
    return dataclasses.replace(config, n_traj=n, response=response, solver=solver, save_trajectories=0,
                               progress_meter=NoProgressMeter(), devices=None, errors=NoErrors())


def history_error(run, key, config, fields):
    """``(error of eps_gen, error of q)``: the largest difference over the run of ``eps_gen``
    (absolute) and of ``q`` (relative to ``1 + |q|``, a committee's largest entry) between the
    pair's solves. ``run(key, config)`` solves one configuration; ``fields`` are the solve's own
    observables (the fine solve of the pair when it ran on every trajectory)."""
    history = config.solver.history
    n = estimate_size(config)
    coarse = run(key, pair_config(config, history.coarser(), n))
    if n == config.n_traj:
        fine_eps, fine_q = fields["eps_gen"], fields["q"]
    else:
        fine = run(key, pair_config(config, history, n))
        fine_eps, fine_q = fine.eps_gen, fine.q
    err_eps = jnp.max(jnp.abs(fine_eps - coarse.eps_gen))
    err_q = jnp.max(jnp.abs(fine_q - coarse.q) / (1.0 + jnp.abs(fine_q)))
    return err_eps, err_q
