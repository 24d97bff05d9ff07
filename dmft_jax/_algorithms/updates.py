"""Update rules (docs/equations.md, section 5.1): how a step moves the weights given the
force ``F[k]`` (minus the gradient of the training objective, plus any Langevin noise).

Every rule here is a linear two-step update

    x[k+1] = x[k] + a (x[k] - x[k-1]) + b0 eta_k F[k] + b1 eta_{k-1} F[k-1]

(``x[-1] = x[0]``, ``F[-1] = 0``), declared by its coefficients ``(a, b0, b1)`` as functions
of the algorithm's momentum ``beta``. Because the update is linear in ``x`` and ``F``, the
DMFT applies the same rule to every quantity that is linear in the weights: the
magnetisation ``m``, the trajectories' ``u``, the responses ``chi`` (and the probes' ``v``),
the weight-side ``R`` and ``P``; the sweep, the damped iteration, the weight side and the
finite-``d`` simulator all call :func:`updated` (which asks :meth:`TwoStep.step`) and nothing
else.

- :class:`HeavyBall` (Polyak): ``(beta, 1, 0)``, the default meaning of ``beta=``.
- :class:`Nesterov`: ``(beta, 1 + beta, -beta)``: Nesterov's accelerated gradient written for
  its look-ahead sequence ``y[k] = x[k] + beta (x[k] - x[k-1])``, the point where it takes the
  gradient (so the reported weights are the ``y``, the iterates whose loss is evaluated).

A new rule subclasses :class:`AbstractUpdate` and gives ``coefficients(beta)``.
"""
from __future__ import annotations

import abc
from typing import Any

import equinox as eqx

from .._util import value_repr


class TwoStep(eqx.Module):
    """The resolved coefficients ``(a, b0, b1)`` of a solve's update (traced numbers)."""

    a: Any
    b0: Any
    b1: Any

    def step(self, x, x_prev, incr, incr_prev):
        """``x[k+1]`` from ``x[k]``, ``x[k-1]`` and the increments ``eta_k F[k]``,
        ``eta_{k-1} F[k-1]``."""
        return x + self.b0 * incr + self.a * (x - x_prev) + self.b1 * incr_prev


def updated(update: TwoStep | None, x_next, x, x_prev, incr_prev):
    """``(x[k+1], increment)``: the plain step's ``x_next`` as the update takes it. Without
    momentum (``update`` None) the plain step itself; with a two-step update
    ``update.step(x[k], x[k-1], x_next - x[k], incr_prev)``."""
    if update is None:
        return x_next, incr_prev
    incr = x_next - x
    return update.step(x, x_prev, incr, incr_prev), incr


class AbstractUpdate(eqx.Module):
    """Interface of an update rule with momentum ``beta``: ``coefficients(beta)`` gives
    ``(a, b0, b1)`` of the linear two-step update (module docstring). Options are static
    fields (none here)."""

    __repr__ = value_repr  # the values of the parameters, not f32[]

    @abc.abstractmethod
    def coefficients(self, beta) -> tuple:
        """``(a, b0, b1)`` for momentum ``beta``."""

    def two_step(self, beta) -> TwoStep:
        return TwoStep(*self.coefficients(beta))

    def to_dict(self) -> dict:
        return {"update": type(self).__name__}


class HeavyBall(AbstractUpdate):
    """Polyak's heavy ball: ``x[k+1] = x[k] + beta (x[k] - x[k-1]) + eta_k F[k]``."""

    def coefficients(self, beta):
        return beta, 1.0, 0.0


class Nesterov(AbstractUpdate):
    """Nesterov's accelerated gradient, ``x[k+1] = y[k] + eta_k F(y[k])``,
    ``y[k] = x[k] + beta (x[k] - x[k-1])``, written for the look-ahead ``y``:
    ``y[k+1] = y[k] + beta (y[k] - y[k-1]) + (1 + beta) eta_k F[k] - beta eta_{k-1} F[k-1]``."""

    def coefficients(self, beta):
        return beta, 1.0 + beta, -beta
