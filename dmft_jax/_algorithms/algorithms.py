"""Training algorithms: the sample-selection Markov chain and the learning rate.

Every algorithm is described by ``eta`` (learning rate = DMFT time step ``dt``) and the
two switching probabilities of the selection process ``s_mu[k]``:
``p_off = P(s: 1 -> 0) = eta / tau`` and ``p_on = P(s: 0 -> 1) = b eta / ((1 - b) tau)``,
with stationary batch fraction ``b``.

Every algorithm takes two optional terms of the update (keywords, off by default):
momentum ``beta`` and Langevin noise at ``temperature`` (docs/equations.md, sections
5.1-5.2); ``update`` says how the momentum enters (:mod:`dmft_jax._algorithms.updates`: heavy ball, the
default, or Nesterov; a user-written linear two-step rule).

- :class:`GD` : full batch, ``s = 1`` always.
- :class:`PersistentSGD` ``(eta, b, tau)`` : persistence time ``tau``; ``b = 1`` is GD.
- :class:`SGD` ``(eta, b)`` : fresh batch each step, i.e. ``PersistentSGD`` with
  ``tau = eta / (1 - b)`` (then ``s[k]`` are i.i.d. Bernoulli(b)).

The continuous-time stochastic gradient flow is ``PersistentSGD`` with ``eta -> 0`` at
fixed ``tau``. ``eta`` may be a schedule (:mod:`dmft_jax._algorithms.schedules`); the switching
probabilities then follow ``eta_k`` step by step.

``b`` may be a schedule too (batch-fraction schedule ``b_k``, values in ``(0, 1]``):
``s[0] ~ Bernoulli(b_0)`` and the transition ``k -> k+1`` uses the target of the step it
leads to, ``p_off_k = eta_k / tau``, ``p_on_k = b_{k+1} eta_k / ((1 - b_{k+1}) tau)``. For
:class:`SGD` the draws are independent Bernoulli(``b_k``), so ``P(s_k = 1) = b_k`` exactly;
for :class:`PersistentSGD` the batch fraction relaxes towards ``b_k`` with time constant
``~tau`` (the chain has memory). The
DMFT of section 2 holds step by step with these per-step probabilities.
"""
from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._util import tolist, value_repr
from .bounds import Above, Positive, UnitInterval
from .schedules import Schedule, as_eta, step_sizes
from .updates import AbstractUpdate, HeavyBall


def _optional(name):
    """An optional number (``None``: the feature is off and costs nothing; else converted like
    every float field)."""
    return eqx.field(default=None, converter=lambda x: None if x is None else _validate.as_float_array(x, name))


def _check_dynamics(alg):
    """The update's optional terms: Langevin ``temperature >= 0``, momentum ``0 <= beta < 1``,
    and the update rule that takes the momentum."""
    if not isinstance(alg.update, AbstractUpdate):
        raise ValueError(f"update must be a dmft_jax.AbstractUpdate (dj.HeavyBall(), dj.Nesterov()); got "
                         f"{alg.update!r}")
    if alg.beta is None and alg.update != HeavyBall():
        raise ValueError(f"update: {type(alg.update).__name__} takes the momentum beta; give beta= (0 <= beta < 1)")
    if alg.temperature is not None:
        _validate.nonnegative("temperature", alg.temperature)
    if alg.beta is not None:
        _validate.check("beta", alg.beta, lambda a: (a >= 0) & (a < 1), "0 <= beta < 1")


def _dynamics_dict(alg):
    out = {n: tolist(getattr(alg, n)) for n in ("beta", "temperature") if getattr(alg, n) is not None}
    return out | ({} if alg.update == HeavyBall() else alg.update.to_dict())


def _scalar(x):
    """A number to validate now (concrete, or traced while checks are collected), or None
    (a schedule, or traced outside a check)."""
    if isinstance(x, Schedule) or not _validate.checkable(x):
        return None
    return x


class AbstractAlgorithm(eqx.Module):
    """Interface of a training algorithm (docs/equations.md, section 1.4).

    ``eta``: the learning rate, a number or a :class:`~dmft_jax.Schedule` (step ``k`` is the
    DMFT time step ``dt_k = eta_k``). Subclasses give the selection chain of the samples
    (``selection``: the law of ``s[0]`` and the switching probabilities per step), the
    constraints on the steps (``check_steps``) and a JSON description (``to_dict``)."""

    __repr__ = value_repr  # the values of the parameters, not f32[]

    eta: eqx.AbstractVar[Any]
    # Optional terms of the update (docs/equations.md, sections 5.1-5.2): heavy-ball momentum
    # ``beta`` and Langevin noise of temperature ``temperature``; ``None`` (the default) leaves
    # the term out of the compiled solve. Subclasses that support them declare the fields.
    beta = None
    temperature = None
    update = HeavyBall()  # how the momentum enters (dmft_jax._algorithms.updates)

    def __check_init__(self):
        _validate.numbers_only(self)

    def two_step(self):
        """The update's coefficients for the engine (:class:`~dmft_jax._algorithms.updates.TwoStep`), or
        ``None`` for a plain gradient step (no momentum)."""
        return None if self.beta is None else self.update.two_step(self.beta)

    def step_sizes(self, n_steps: int, dtype=None):
        """Learning rates ``eta_k``, ``k = 0..n_steps-1``."""
        return step_sizes(self.eta, n_steps, dtype)

    @abc.abstractmethod
    def selection(self, steps):
        """``(b_0, p_on, p_off)`` for the step sizes ``steps`` (``(T,)``): ``P(s[0] = 1)`` and the
        switching probabilities of the transitions ``k -> k+1``, ``P(0 -> 1)`` and ``P(1 -> 0)``
        (scalars or ``(T,)``)."""

    @abc.abstractmethod
    def check_steps(self, steps) -> None:
        """Check the algorithm's constraints on the step sizes ``steps`` with
        :func:`dmft_jax.check_parameter`: it raises ``ValueError`` (naming the parameter and its
        valid range) for concrete values, and inside ``jit``/``vmap`` turns the check into a
        failed ``result`` of the point."""

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """JSON-friendly description."""

    def tunable(self) -> dict:
        """The fields :func:`dmft_jax.tune` may optimise and :func:`dmft_jax.solve_grid` may grid,
        ``name -> bound`` (:mod:`dmft_jax.bounds`), in the order their bounds are mapped: here
        ``eta > 0`` and, when present, momentum ``0 < beta < 1`` and ``temperature > 0``. A
        subclass adds its own fields (``{**super().tunable(), "p": UnitInterval()}``)."""
        out = {"eta": Positive()}
        if self.beta is not None:
            out["beta"] = UnitInterval()
        if self.temperature is not None:
            out["temperature"] = Positive()
        return out


class AbstractMinibatch(AbstractAlgorithm):
    """An algorithm with a batch fraction ``b`` in ``(0, 1]`` (a number or a schedule
    ``b_k``)."""

    b: eqx.AbstractVar[Any]

    def tunable(self) -> dict:
        """``eta``, the batch fraction ``0 < b < 1`` and the update's terms (see
        :meth:`AbstractAlgorithm.tunable`)."""
        out = super().tunable()
        return {"eta": out.pop("eta"), "b": UnitInterval(), **out}

    def batch_fractions(self, n_steps: int, dtype=None):
        """``b_k``, ``k = 0..n_steps-1``."""
        return step_sizes(self.b, n_steps, dtype)

    def _b_steps(self, steps):
        """``(b_0, b_trans)``: the batch fraction of step 0 and the targets of the transitions
        ``k -> k+1`` (``b_{k+1}``; per step when ``b`` is a schedule, else the number)."""
        if isinstance(self.b, Schedule):
            if not jnp.ndim(steps):
                raise ValueError("b is a schedule: pass the per-step sizes eta_k to selection()")
            b = self.batch_fractions(jnp.shape(steps)[0] + 1)
            return b[0], b[1:]
        return self.b, self.b

    def _checked_b(self, n_steps):
        """``b_{k+1}`` for the transitions of ``n_steps`` steps (all of ``b_0..b_T`` validated
        when concrete)."""
        b = self.batch_fractions(n_steps + 1)
        _validate.in_unit_interval("b", b)
        return b[1:]


class PersistentSGD(AbstractMinibatch):
    """Persistent SGD: a sample stays in the batch for a mean time ``tau``
    (``p_off = eta / tau``, ``p_on = b eta / ((1 - b) tau)``)."""

    eta: Any = eqx.field(converter=as_eta)
    b: Any = eqx.field(converter=lambda x: as_eta(x, "b"))
    tau: Any = _validate.float_field("tau")
    beta: Any = _optional("beta")
    temperature: Any = _optional("temperature")
    update: AbstractUpdate = eqx.field(static=True, default=HeavyBall())

    def __init__(self, eta=0.2, b=0.3, tau=1 / 0.6, *, beta=None, temperature=None, update=None):
        self.eta = eta
        self.b = b
        self.tau = tau
        self.beta = beta
        self.temperature = temperature
        self.update = HeavyBall() if update is None else update

    def __check_init__(self):
        _check_dynamics(self)
        eta = _scalar(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)
        if not isinstance(self.b, Schedule):
            _validate.in_unit_interval("b", self.b)
        _validate.positive("tau", self.tau)
        if eta is not None and _scalar(self.b) is not None and _validate.checkable(self.tau):
            self.check_steps(eta)

    def check_steps(self, steps):
        """``tau >= eta_k`` and ``b_k eta_k <= (1 - b_k) tau`` at every step."""
        # concrete values are checked with NumPy: eager jax operations would each compile
        xp = np if _validate.is_concrete(steps) and not isinstance(self.b, Schedule) \
            and _validate.is_concrete(self.b) and _validate.is_concrete(self.tau) else jnp
        steps = xp.asarray(steps)
        tau = np.asarray(self.tau) if xp is np else self.tau
        if isinstance(self.b, Schedule):
            steps = jnp.broadcast_to(steps, (max(1, steps.size),))
            b = self._checked_b(steps.shape[0])
        else:
            steps, b = xp.max(steps), (np.asarray(self.b) if xp is np else self.b)
        if not _validate.checkable(steps, b, tau):
            return
        eta_max = xp.max(steps)
        concrete = _validate.is_concrete(eta_max) and _validate.is_concrete(tau)
        at = f"eta = {_validate._shown(eta_max)}, tau = {_validate._shown(tau)}" if concrete else "the largest eta_k"
        _validate.check("tau", tau - eta_max, lambda a: a >= -1e-12 * xp.abs(eta_max), f"tau >= eta ({at})",
                        shown=self.tau)
        _validate.check(
            "b", xp.where(b < 1, b * steps - (1 - b) * tau, 0.0),
            lambda a: a <= 1e-12 * xp.abs(tau),
            f"b * eta <= (1 - b) * tau at every step ({at}), i.e. b <= tau / (tau + eta)", shown=b,
        )

    def tunable(self) -> dict:
        """``eta``, ``b``, then ``tau > eta max(1, b / (1 - b))`` (the persistence constraints at
        the mapped ``eta`` and ``b``) and the update's terms."""
        out = super().tunable()
        return {"eta": out.pop("eta"), "b": out.pop("b"), "tau": Above(_tau_min), **out}

    def selection(self, steps):
        b0, b = self._b_steps(steps)
        full = b >= 1
        one_minus_b = jnp.where(full, 1.0, 1.0 - b)
        p_off = jnp.where(full, 0.0, steps / self.tau)
        p_on = jnp.where(full, 1.0, b * steps / (one_minus_b * self.tau))
        return b0, p_on, p_off

    def to_dict(self):
        return {"algorithm": "persistent_sgd", "eta": _eta_dict(self.eta), "b": _eta_dict(self.b),
                "tau": tolist(self.tau)} | _dynamics_dict(self)


class SGD(AbstractMinibatch):
    """Classic SGD with an independent Bernoulli(``b``) batch at every step (persistent SGD
    with ``tau = eta / (1 - b)``: ``p_off = 1 - b``, ``p_on = b``)."""

    eta: Any = eqx.field(converter=as_eta)
    b: Any = eqx.field(converter=lambda x: as_eta(x, "b"))
    beta: Any = _optional("beta")
    temperature: Any = _optional("temperature")
    update: AbstractUpdate = eqx.field(static=True, default=HeavyBall())

    def __init__(self, eta=0.2, b=0.3, *, beta=None, temperature=None, update=None):
        self.eta = eta
        self.b = b
        self.beta = beta
        self.temperature = temperature
        self.update = HeavyBall() if update is None else update

    def __check_init__(self):
        _check_dynamics(self)
        eta = _scalar(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)
        if not isinstance(self.b, Schedule):
            _validate.in_unit_interval("b", self.b)

    def persistent(self) -> PersistentSGD:
        """The equivalent :class:`PersistentSGD` with ``tau = eta / (1 - b)`` (constant eta, b)."""
        if isinstance(self.b, Schedule):
            raise ValueError("b: a batch-fraction schedule has no single equivalent tau")
        return PersistentSGD(self.eta, self.b, self.eta / jnp.where(self.b < 1, 1 - self.b, 1.0), beta=self.beta,
                             temperature=self.temperature, update=self.update)

    def selection(self, steps):
        b0, b = self._b_steps(steps)
        ones = jnp.ones_like(steps)
        p_off = jnp.where(b < 1, 1.0 - b, 0.0) * ones
        p_on = jnp.where(b < 1, b, 1.0) * ones
        return b0, p_on, p_off

    def check_steps(self, steps):
        if isinstance(self.b, Schedule):
            self._checked_b(max(1, jnp.size(steps)))

    def to_dict(self):
        return {"algorithm": "sgd", "eta": _eta_dict(self.eta), "b": _eta_dict(self.b)} | _dynamics_dict(self)


class GD(AbstractAlgorithm):
    """Full-batch gradient descent (``s = 1``)."""

    eta: Any = eqx.field(converter=as_eta)
    beta: Any = _optional("beta")
    temperature: Any = _optional("temperature")
    update: AbstractUpdate = eqx.field(static=True, default=HeavyBall())

    def __init__(self, eta=0.2, *, beta=None, temperature=None, update=None):
        self.eta = eta
        self.beta = beta
        self.temperature = temperature
        self.update = HeavyBall() if update is None else update

    def __check_init__(self):
        _check_dynamics(self)
        eta = _scalar(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)

    def selection(self, steps):
        one = jnp.ones_like(steps)
        return jnp.ones((), jnp.result_type(steps)), one, jnp.zeros_like(steps)

    def check_steps(self, steps):
        return None

    def to_dict(self):
        return {"algorithm": "gd", "eta": _eta_dict(self.eta)} | _dynamics_dict(self)


def _tau_min(algorithm, n_steps):
    """The smallest ``tau`` persistent SGD allows at ``algorithm``'s ``eta`` and ``b``:
    ``max_k eta_k max(1, b / (1 - b))`` (``b``: its largest ``b_k`` for a schedule)."""
    b = algorithm.b
    b = jnp.max(step_sizes(b, n_steps)) if isinstance(b, Schedule) else b
    return jnp.max(step_sizes(algorithm.eta, n_steps)) * jnp.maximum(1.0, b / (1.0 - b))


def _eta_dict(eta):
    return eta.to_dict() if isinstance(eta, Schedule) else tolist(eta)
