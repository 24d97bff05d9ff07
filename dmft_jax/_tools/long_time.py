"""Where training ends up at long times: the separability threshold ``alpha*(Delta, rho)``
of the two-cluster mixture (below it, at ``lam = 0``, GD runs to infinite norm) and the
long-time limit of full-batch GD run by the DMFT until its order parameters stop moving
(its anchor being the static ERM of :mod:`~dmft_jax._tools.replica`)."""
from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from .. import _validate
from .._problem.problem import Problem
from .._response.response import ExactResponse
from .._results.results import AbstractOutcome, Result


# --------------------------------------------------------------------------------------
# Separability threshold
# --------------------------------------------------------------------------------------
def _gardner_F(a):
    """``E[(xi - a)_+^2]`` for ``xi ~ N(0, 1)``."""
    from scipy.special import ndtr as sndtr

    return (1 + a * a) * sndtr(-a) - a * np.exp(-0.5 * a * a) / np.sqrt(2 * np.pi)


def alpha_star(delta, rho=0.5, bias: bool = True) -> float:
    """Separability threshold ``alpha*(Delta, rho)`` of the two-cluster mixture: for
    ``alpha < alpha*`` a hyperplane (through the origin, or with a bias when ``bias``)
    separates the training set with probability -> 1 as ``d -> infinity``.

    Gardner's volume for the weights orthogonal to the teacher, with sample thresholds set
    by the teacher overlap ``r = m / sqrt(q - m^2)`` and the bias ``s = b / sqrt(q - m^2)``::

        1 / alpha* = min_{r >= 0, s} sum_y P(y) (1 + r^2) F((r + y s) / sqrt(Delta (1 + r^2))),
        F(a) = E[(xi - a)_+^2].

    Without a bias the optimum is ``s = 0`` and ``alpha*`` does not depend on ``rho``;
    ``Delta -> infinity`` gives Cover's ``alpha* = 2``.
    """
    if not isinstance(bias, (bool, np.bool_)):
        raise ValueError(f"bias must be True (a hyperplane with a bias) or False (through the origin); got {bias!r}")
    from scipy.optimize import minimize

    delta = float(delta)
    rho = float(rho)
    if not delta > 0:
        raise ValueError(f"delta must be > 0; got {delta}")
    if not 0 < rho < 1:
        raise ValueError(f"rho must satisfy 0 < rho < 1; got {rho}")

    def objective(x):
        r = np.exp(x[0])
        s = x[1] if bias else 0.0
        scale = np.sqrt(delta * (1 + r * r))
        return (1 + r * r) * (rho * _gardner_F((r + s) / scale) + (1 - rho) * _gardner_F((r - s) / scale))

    best = np.inf
    for r0 in (-3.0, 0.0, 2.0):
        for s0 in ((0.0, 1.0, -1.0) if bias else (0.0,)):
            res = minimize(objective, np.array([r0, s0]), method="Nelder-Mead",
                           options=dict(xatol=1e-10, fatol=1e-14, maxiter=4000))
            best = min(best, res.fun)
    return float(1.0 / best)


# --------------------------------------------------------------------------------------
# Long-time limit of full-batch gradient descent
# --------------------------------------------------------------------------------------
class LongTimeGD(AbstractOutcome):
    """Result of :func:`gd_long_time`: the last ``solution`` and whether ``(m, q)`` had
    become ``stationary`` (the outcome is the solution's ``result``). Unpacks as
    ``(solution, stationary)``."""

    solution: Any
    stationary: bool = eqx.field(static=True)
    result: Result

    def __iter__(self):
        return iter((self.solution, self.stationary))


def gd_long_time(problem: Problem, eta: float = 0.5, t_max: float = 60.0, *, rtol: float = 1e-3,
                 max_doublings: int = 2, n_traj: int = 2**14, response=None, key=0,
                 **solve_kwargs) -> LongTimeGD:
    """Run the DMFT of full-batch GD until ``(m, q)`` stop moving.

    Solves up to ``t_max``; if the relative change of ``m`` or ``q`` over the last 10% of
    the horizon exceeds ``rtol / 10`` (i.e. a drift of more than ``rtol`` per horizon), the
    horizon is doubled, at most ``max_doublings`` times. ``response`` defaults to
    ``ExactResponse(min(1024, n_traj))``. Returns a :class:`LongTimeGD` (unpacks as ``(solution, stationary)``).
    """
    from .._algorithms.algorithms import GD
    from .._solve.solve import solve

    if not isinstance(problem, Problem):
        raise ValueError(f"problem: gd_long_time runs a single unit (a dmft_jax.Problem); got "
                         f"{type(problem).__name__}")
    _validate.positive("rtol", rtol)
    max_doublings = _validate.integer("max_doublings", max_doublings, 0)
    n_traj = _validate.integer("n_traj", n_traj, 2)
    if response is None and "n_chi" not in solve_kwargs:
        response = ExactResponse(min(1024, n_traj))
    for _ in range(max_doublings + 1):
        sol = solve(problem, GD(eta), t_max=t_max, n_traj=n_traj, response=response, key=key, **solve_kwargs)
        if not np.all(sol.ok):  # a failed solve is no long-time limit: its outcome, no doubling
            return LongTimeGD(solution=sol, stationary=False, result=sol.result)
        T = len(sol.t) - 1
        k0 = int(0.9 * T)
        drift = max(abs(float(sol.m[-1] - sol.m[k0])) / abs(float(sol.m[-1])),
                    abs(float(sol.q[-1] - sol.q[k0])) / abs(float(sol.q[-1])))
        if sol.bias is not None:  # a learnable bias relaxes slowly: it must be stationary too
            drift = max(drift, abs(float(sol.bias[-1] - sol.bias[k0])) / max(abs(float(sol.bias[-1])), 1e-3))
        if drift <= rtol / 10:
            return LongTimeGD(solution=sol, stationary=True, result=sol.result)
        t_max *= 2
    return LongTimeGD(solution=sol, stationary=False, result=sol.result)
