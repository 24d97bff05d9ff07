"""Learning-rate schedules ``eta_k`` (step ``k``), differentiable in their parameters.

The discrete DMFT holds step by step with ``dt_k = eta_k``: step ``k`` advances ``m``, ``u``,
``chi`` and ``R`` by ``eta_k`` times its increment, a response source at step ``l`` carries
``eta_l``, and the persistent-SGD switching probabilities are ``p_off_k = eta_k / tau``,
``p_on_k = b eta_k / ((1 - b) tau)`` (``tau`` stays a time constant). Pass a schedule as
``eta`` of any algorithm: ``dj.PersistentSGD(eta=dj.ExponentialDecay(0.4, 0.02), ...)``.
Any callable ``k -> eta_k`` (an optax schedule, say) works too; its parameters are then
static (not differentiable).
"""
from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._util import cast_leaf, value_repr


class Schedule(eqx.Module):
    """Interface: ``__call__(k)``, the value at the integer steps ``k`` (an array)."""

    __repr__ = value_repr  # the values of the parameters, not f32[]

    def __check_init__(self):
        _validate.numbers_only(self)

    @abc.abstractmethod
    def __call__(self, k):
        """The schedule's value at steps ``k``."""

    def to_dict(self) -> dict:
        out = {"schedule": type(self).__name__}
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            out[f] = np.asarray(v).tolist() if not callable(v) else repr(v)
        return out


class ExponentialDecay(Schedule):
    """``eta_k = floor + (init - floor) exp(-rate k)``."""

    init: Any = _validate.float_field("init")
    rate: Any = _validate.float_field("rate")
    floor: Any = _validate.float_field("floor", default=0.0)

    def __check_init__(self):
        _validate.positive("init", self.init)
        _validate.nonnegative("rate", self.rate)
        _validate.nonnegative("floor", self.floor)

    def __call__(self, k):
        return self.floor + (self.init - self.floor) * jnp.exp(-self.rate * k)


def _boundaries(b) -> tuple:
    """Step boundaries: whole numbers >= 1, strictly increasing (a boundary <= 0 never uses the
    first value, a repeated one drops a phase); refused by name otherwise."""
    if isinstance(b, (str, bytes)) or not hasattr(b, "__iter__"):
        raise ValueError(f"boundaries must be a list of step indices; got {b!r}")
    out = []
    for x in b:
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer, float, np.floating)) \
                or x != x or int(x) != x:
            raise ValueError(f"boundaries must be whole step indices; got {list(b)!r}")
        out.append(int(x))
    if any(x < 1 for x in out) or any(a >= c for a, c in zip(out, out[1:])):
        raise ValueError(f"boundaries must be strictly increasing step indices >= 1 (each starts a phase); got {out}")
    return tuple(out)


class PiecewiseConstant(Schedule):
    """``eta_k = values[i]`` for ``boundaries[i-1] <= k < boundaries[i]`` (step indices)."""

    values: Any = _validate.float_field("values")
    boundaries: tuple = eqx.field(static=True, converter=lambda b: _boundaries(b))
    vector_fields: ClassVar[tuple] = ("values",)  # one value per phase (not a batch)

    def __check_init__(self):
        _validate.positive("values", self.values)
        if len(self.boundaries) != np.shape(self.values)[0] - 1:
            raise ValueError(f"boundaries: need len(values) - 1 = {np.shape(self.values)[0] - 1} "
                             f"step boundaries; got {len(self.boundaries)}")

    def __call__(self, k):
        idx = jnp.searchsorted(jnp.asarray(self.boundaries, dtype=jnp.int32), k, side="right")
        return self.values[idx]


class CustomSchedule(Schedule):
    """Wrap any callable ``k -> eta_k`` (static parameters)."""

    fn: Callable = eqx.field(static=True)

    def __check_init__(self):
        _validate.function_of("fn", self.fn, 1, "one argument, the step indices k (an array), giving eta_k")

    def __call__(self, k):
        value = self.fn(k)
        if isinstance(value, (jax.Array, jax.core.Tracer)) or _validate._is_number(value):
            return jnp.asarray(value)
        name = getattr(self.fn, "__qualname__", repr(self.fn))
        raise ValueError(f"eta: the schedule function {name} returned {value!r} for the step indices k; it must "
                         "return numbers (eta_k > 0, an array like k)")


def as_eta(eta, name: str = "eta"):
    """Converter of an algorithm's ``eta``: a number stays an array leaf; a Schedule or a
    callable becomes a :class:`Schedule`."""
    if isinstance(eta, Schedule):
        return eta
    if callable(eta) and not hasattr(eta, "dtype"):
        _validate.function_of(name, eta, 1, f"one argument, the step indices k (an array), giving {name}_k")
        return CustomSchedule(eta)
    return _validate.as_float_array(eta, name)


def step_sizes(eta, n_steps: int, dtype=None):
    """``eta_k`` for ``k = 0..n_steps-1``."""
    if isinstance(eta, Schedule):
        # Python floats (set by eqx.tree_at) as arrays: filter_jit would make them static
        steps = _evaluate(jax.tree_util.tree_map(_as_array, eta), n_steps)
        return jnp.asarray(steps, dtype=dtype) if dtype is not None else steps
    if dtype is None and not isinstance(eta, jax.core.Tracer):  # a check of concrete values: no compile
        return np.full((n_steps,), np.asarray(eta))
    return jnp.full((n_steps,), eta, dtype=dtype if dtype is not None else jnp.result_type(eta))


def _as_array(x):
    """A Python float as an array of the default float dtype (as the fields' converter makes
    them), without compiling a conversion; anything else unchanged."""
    return cast_leaf(x, jnp.result_type(float)) if isinstance(x, float) else x


@eqx.filter_jit
def _evaluate(schedule, n_steps: int):
    """``schedule(k)`` for ``k = 0..n_steps-1`` as one compiled program per schedule class and
    ``n_steps`` (parameters are data: checking a new value compiles nothing); inlined when
    traced."""
    return schedule(jnp.arange(n_steps))
