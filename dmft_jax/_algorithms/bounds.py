"""The valid ranges of an algorithm's hyperparameters, as maps from an unconstrained ``theta``
(what an optimiser moves) into the range: what :func:`dmft_jax.tune` optimises over and
:func:`dmft_jax.solve_grid` may grid.

An algorithm declares its tunable fields with :meth:`~dmft_jax.AbstractAlgorithm.tunable`
(name -> bound, in the order they are mapped: a bound may depend on the fields before it, as
persistent SGD's ``tau >= eta max(1, b / (1 - b))`` does on ``eta`` and ``b``); a user-written
algorithm declares its own fields there and is tuned like the built-in ones.
"""
from __future__ import annotations

import abc
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .schedules import Schedule


def inv_softplus(x):
    """``softplus^-1(x)`` for ``x > 0`` (NumPy; ``x`` itself beyond 30, where they agree)."""
    x = np.asarray(x, dtype=float)
    return np.where(x < 30, np.log(np.expm1(np.minimum(x, 30))), x)


class AbstractBound(eqx.Module):
    """The range of one hyperparameter: ``value = forward(theta, algorithm, T)`` for any real
    ``theta``; ``inverse`` gives the ``theta`` of a starting value (refusing, by name, a start the
    map cannot reach). ``algorithm``: the algorithm with the fields before this one already mapped;
    ``T``: the number of steps."""

    @abc.abstractmethod
    def forward(self, theta, algorithm, n_steps: int):
        """The value at ``theta`` (traceable)."""

    @abc.abstractmethod
    def inverse(self, name: str, value, algorithm, n_steps: int):
        """The ``theta`` of ``value`` (NumPy); ``ValueError`` naming ``name`` when ``value`` is
        outside the open range."""


class Positive(AbstractBound):
    """``value > 0``: ``value = softplus(theta)``."""

    def forward(self, theta, algorithm, n_steps):
        return jax.nn.softplus(theta)

    def inverse(self, name, value, algorithm, n_steps):
        value = np.asarray(value, dtype=float)
        if np.any(~(value > 0)):
            raise ValueError(f"{name}: tuning {name} needs a starting value > 0; got {value.tolist()}")
        return inv_softplus(value)


class UnitInterval(AbstractBound):
    """``0 < value < 1``: ``value = sigmoid(theta)``."""

    def forward(self, theta, algorithm, n_steps):
        return jax.nn.sigmoid(theta)

    def inverse(self, name, value, algorithm, n_steps):
        value = np.asarray(value, dtype=float)
        if np.any(~((value > 0) & (value < 1))):
            raise ValueError(f"{name}: tuning {name} needs starting values strictly inside (0, 1); got "
                             f"{value.tolist()}")
        return np.log(value / (1 - value))


class Above(AbstractBound):
    """``value > lower(algorithm, T)``: ``value = lower + softplus(theta)``, with ``lower`` a
    function of the fields mapped before (a start at the bound itself is moved 1e-6 inside)."""

    lower: Callable = eqx.field(static=True)

    def forward(self, theta, algorithm, n_steps):
        return self.lower(algorithm, n_steps) + jax.nn.softplus(theta)

    def inverse(self, name, value, algorithm, n_steps):
        gap = np.asarray(value, dtype=float) - np.asarray(self.lower(algorithm, n_steps), dtype=float)
        return inv_softplus(np.maximum(gap, 1e-6))


def expand(name: str, value, bound: AbstractBound) -> dict:
    """The tunable names of one declared field: ``name`` itself for a number, or
    ``name.<field>`` for every array field of a schedule (its ``rate`` kept positive, the others
    in the field's own range)."""
    if isinstance(value, Schedule):
        return {f"{name}.{f}": (Positive() if f == "rate" else bound) for f in value.__dataclass_fields__
                if eqx.is_array(getattr(value, f))}
    if value is None or not eqx.is_array(value) or jnp.ndim(value) != 0:
        return {}
    return {name: bound}
