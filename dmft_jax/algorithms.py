"""Training algorithms: the sample-selection Markov chain and the learning rate.

Every algorithm is described by ``eta`` (learning rate = DMFT time step ``dt``) and the
two switching probabilities of the selection process ``s_mu[k]``:
``p_off = P(s: 1 -> 0) = eta / tau`` and ``p_on = P(s: 0 -> 1) = b eta / ((1 - b) tau)``,
with stationary batch fraction ``b``.

- :class:`GD` : full batch, ``s = 1`` always.
- :class:`PersistentSGD` ``(eta, b, tau)`` : persistence time ``tau``; ``b = 1`` is GD.
- :class:`SGD` ``(eta, b)`` : fresh batch each step, i.e. ``PersistentSGD`` with
  ``tau = eta / (1 - b)`` (then ``s[k]`` are i.i.d. Bernoulli(b)).

The continuous-time stochastic gradient flow is ``PersistentSGD`` with ``eta -> 0`` at
fixed ``tau``. ``eta`` may be a schedule (:mod:`dmft_jax.schedules`); the switching
probabilities then follow ``eta_k`` step by step.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp

from . import _validate
from .schedules import Schedule, as_eta, step_sizes


def _f():
    return eqx.field(converter=_validate.as_float_array)


def _eta():
    return eqx.field(converter=as_eta)


def _scalar_eta(eta):
    """Concrete scalar eta for validation, or None (schedule or traced)."""
    if isinstance(eta, Schedule) or not _validate.is_concrete(eta):
        return None
    return eta


class Algorithm(eqx.Module):
    eta: Any = _eta()

    def selection(self, eta=None):
        """Return ``(b, p_on, p_off)``; with ``eta`` (e.g. the per-step sizes) the switching
        probabilities are those of steps with that learning rate."""
        raise NotImplementedError

    def step_sizes(self, n_steps: int, dtype=None):
        """Learning rates ``eta_k``, ``k = 0..n_steps-1`` (constant or a schedule)."""
        return step_sizes(self.eta, n_steps, dtype)

    def _eta_value(self, eta):
        if eta is not None:
            return eta
        if isinstance(self.eta, Schedule):
            raise ValueError("eta is a schedule: pass the per-step sizes")
        return self.eta

    def to_dict(self) -> dict:
        raise NotImplementedError


class PersistentSGD(Algorithm):
    """Persistent SGD: a sample stays in the batch for a mean time ``tau``."""

    eta: Any = _eta()
    b: Any = _f()
    tau: Any = _f()

    def __init__(self, eta=0.2, b=0.3, tau=1 / 0.6):
        self.eta = eta
        self.b = b
        self.tau = tau

    def __check_init__(self):
        eta = _scalar_eta(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)
        _validate.in_unit_interval("b", self.b)
        _validate.positive("tau", self.tau)
        if eta is not None and all(_validate.is_concrete(x) for x in (self.b, self.tau)):
            self.check_steps(eta)

    def check_steps(self, eta):
        """Validate ``tau >= eta_k`` and ``b eta_k <= (1 - b) tau`` (``eta`` scalar or steps)."""
        eta = jnp.max(jnp.asarray(eta))
        if all(_validate.is_concrete(x) for x in (eta, self.b, self.tau)):
            _validate.check("tau", self.tau - eta, lambda a: a >= -1e-12 * abs(float(eta)),
                            f"tau >= eta (eta = {float(eta):g})")
            _validate.check(
                "b", jnp.where(self.b < 1, self.b * eta - (1 - self.b) * self.tau, 0.0),
                lambda a: a <= 1e-12 * abs(self.tau),
                f"b * eta <= (1 - b) * tau (eta = {float(eta):g}, tau = {float(self.tau):g}), "
                "i.e. b <= tau / (tau + eta)",
            )

    def selection(self, eta=None):
        eta = self._eta_value(eta)
        full = self.b >= 1
        one_minus_b = jnp.where(full, 1.0, 1.0 - self.b)
        p_off = jnp.where(full, 0.0, eta / self.tau)
        p_on = jnp.where(full, 1.0, self.b * eta / (one_minus_b * self.tau))
        return self.b, p_on, p_off

    def to_dict(self):
        return {"algorithm": "persistent_sgd", "eta": _eta_dict(self.eta), "b": _tolist(self.b),
                "tau": _tolist(self.tau)}


class SGD(Algorithm):
    """Classic SGD with an independent Bernoulli(``b``) batch at every step."""

    eta: Any = _eta()
    b: Any = _f()

    def __init__(self, eta=0.2, b=0.3):
        self.eta = eta
        self.b = b

    def __check_init__(self):
        eta = _scalar_eta(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)
        _validate.in_unit_interval("b", self.b)

    def persistent(self) -> PersistentSGD:
        """The equivalent :class:`PersistentSGD` with ``tau = eta / (1 - b)`` (constant eta)."""
        return PersistentSGD(self.eta, self.b, self.eta / jnp.where(self.b < 1, 1 - self.b, 1.0))

    def selection(self, eta=None):
        # the persistent-SGD probabilities with tau = eta / (1 - b): p_off = 1 - b, p_on = b
        eta = self._eta_value(eta)
        one_minus_b = jnp.where(self.b < 1, 1 - self.b, 1.0)
        tau = eta / one_minus_b
        p_off = jnp.where(self.b < 1, eta / tau, 0.0)
        p_on = jnp.where(self.b < 1, self.b * eta / (one_minus_b * tau), 1.0)
        return self.b, p_on, p_off

    def check_steps(self, eta):
        return None

    def to_dict(self):
        return {"algorithm": "sgd", "eta": _eta_dict(self.eta), "b": _tolist(self.b)}


class GD(Algorithm):
    """Full-batch gradient descent (``s = 1``)."""

    eta: Any = _eta()

    def __init__(self, eta=0.2):
        self.eta = eta

    def __check_init__(self):
        eta = _scalar_eta(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)

    def selection(self, eta=None):
        eta = self._eta_value(eta)
        one = jnp.ones_like(eta)
        return jnp.ones((), jnp.result_type(eta)), one, jnp.zeros_like(eta)

    def check_steps(self, eta):
        return None

    def to_dict(self):
        return {"algorithm": "gd", "eta": _eta_dict(self.eta)}


def _eta_dict(eta):
    return eta.to_dict() if isinstance(eta, Schedule) else _tolist(eta)


def _tolist(x):
    import numpy as np

    return np.asarray(x).tolist()
