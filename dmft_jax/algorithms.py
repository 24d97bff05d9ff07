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

``b`` may be a schedule too (batch-fraction schedule ``b_k``, values in ``(0, 1]``): the
transition ``k -> k+1`` uses ``p_off_k = eta_k / tau``, ``p_on_k = b_k eta_k / ((1 - b_k)
tau)`` and ``s[0] ~ Bernoulli(b_0)``. For :class:`SGD` the draws are independent
Bernoulli(``b_k``), so ``P(s_k = 1) = b_k`` exactly; for :class:`PersistentSGD` the batch
fraction relaxes towards ``b_k`` with time constant ``~tau`` (the chain has memory). The
DMFT of section 2 holds step by step with these per-step probabilities.
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


def _b():
    return eqx.field(converter=as_eta)


def _check_b(b):
    """Validate a constant b now; a schedule is validated with the steps (check_steps)."""
    if not isinstance(b, Schedule):
        _validate.in_unit_interval("b", b)


class Algorithm(eqx.Module):
    eta: Any = _eta()

    def selection(self, eta=None):
        """Return ``(b, p_on, p_off)``; with ``eta`` (e.g. the per-step sizes) the switching
        probabilities are those of steps with that learning rate."""
        raise NotImplementedError

    def step_sizes(self, n_steps: int, dtype=None):
        """Learning rates ``eta_k``, ``k = 0..n_steps-1`` (constant or a schedule)."""
        return step_sizes(self.eta, n_steps, dtype)

    def batch_fractions(self, n_steps: int, dtype=None):
        """``b_k``, ``k = 0..n_steps-1`` (constant or a schedule; 1 for GD)."""
        b = getattr(self, "b", None)
        if b is None:
            return jnp.ones((n_steps,), dtype)
        return step_sizes(b, n_steps, dtype)

    def _b_value(self, eta):
        """``b`` per step when it is a schedule (``eta`` gives the number of steps), else ``b``."""
        if isinstance(self.b, Schedule):
            if not jnp.ndim(eta):
                raise ValueError("b is a schedule: pass the per-step sizes eta_k to selection()")
            return self.batch_fractions(jnp.shape(eta)[0])
        return self.b

    def _check_b_steps(self, n_steps):
        """Validate a batch-fraction schedule over ``n_steps`` and return ``b_k`` (None for constant b)."""
        if not isinstance(getattr(self, "b", None), Schedule):
            return None
        b = self.batch_fractions(n_steps)
        if _validate.is_concrete(b):
            _validate.in_unit_interval("b", b)
        return b

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
    b: Any = _b()
    tau: Any = _f()

    def __init__(self, eta=0.2, b=0.3, tau=1 / 0.6):
        self.eta = eta
        self.b = b
        self.tau = tau

    def __check_init__(self):
        eta = _scalar_eta(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)
        _check_b(self.b)
        _validate.positive("tau", self.tau)
        if eta is not None and not isinstance(self.b, Schedule) and all(
                _validate.is_concrete(x) for x in (self.b, self.tau)):
            self.check_steps(eta)

    def check_steps(self, eta):
        """Validate ``tau >= eta_k`` and ``b_k eta_k <= (1 - b_k) tau`` (``eta`` scalar or steps)."""
        eta = jnp.asarray(eta)
        if isinstance(self.b, Schedule):
            eta = jnp.broadcast_to(eta, (max(1, eta.size),))
            b = self._check_b_steps(eta.shape[0])
        else:
            eta, b = jnp.max(eta), self.b
        if all(_validate.is_concrete(x) for x in (eta, b, self.tau)):
            eta_max = float(jnp.max(eta))
            _validate.check("tau", self.tau - eta_max, lambda a: a >= -1e-12 * abs(eta_max),
                            f"tau >= eta (eta = {eta_max:g})")
            _validate.check(
                "b", jnp.where(b < 1, b * eta - (1 - b) * self.tau, 0.0),
                lambda a: a <= 1e-12 * abs(self.tau),
                f"b * eta <= (1 - b) * tau at every step (eta = {eta_max:g}, tau = {float(self.tau):g}), "
                "i.e. b <= tau / (tau + eta)",
            )

    def selection(self, eta=None):
        """``(b_0, p_on, p_off)``: the batch fraction of the first step and the switching
        probabilities (per step when ``eta`` or ``b`` varies)."""
        eta = self._eta_value(eta)
        b = self._b_value(eta)
        full = b >= 1
        one_minus_b = jnp.where(full, 1.0, 1.0 - b)
        p_off = jnp.where(full, 0.0, eta / self.tau)
        p_on = jnp.where(full, 1.0, b * eta / (one_minus_b * self.tau))
        return _first(b), p_on, p_off

    def to_dict(self):
        return {"algorithm": "persistent_sgd", "eta": _eta_dict(self.eta), "b": _eta_dict(self.b),
                "tau": _tolist(self.tau)}


class SGD(Algorithm):
    """Classic SGD with an independent Bernoulli(``b``) batch at every step."""

    eta: Any = _eta()
    b: Any = _b()

    def __init__(self, eta=0.2, b=0.3):
        self.eta = eta
        self.b = b

    def __check_init__(self):
        eta = _scalar_eta(self.eta)
        if eta is not None:
            _validate.positive("eta", eta)
        _check_b(self.b)

    def persistent(self) -> PersistentSGD:
        """The equivalent :class:`PersistentSGD` with ``tau = eta / (1 - b)`` (constant eta, b)."""
        if isinstance(self.b, Schedule):
            raise ValueError("b: a batch-fraction schedule has no single equivalent tau")
        return PersistentSGD(self.eta, self.b, self.eta / jnp.where(self.b < 1, 1 - self.b, 1.0))

    def selection(self, eta=None):
        # the persistent-SGD probabilities with tau = eta / (1 - b): p_off = 1 - b, p_on = b
        eta = self._eta_value(eta)
        b = self._b_value(eta)
        one_minus_b = jnp.where(b < 1, 1 - b, 1.0)
        tau = eta / one_minus_b
        p_off = jnp.where(b < 1, eta / tau, 0.0)
        p_on = jnp.where(b < 1, b * eta / (one_minus_b * tau), 1.0)
        return _first(b), p_on, p_off

    def check_steps(self, eta):
        self._check_b_steps(max(1, jnp.size(eta)))

    def to_dict(self):
        return {"algorithm": "sgd", "eta": _eta_dict(self.eta), "b": _eta_dict(self.b)}


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


def _first(b):
    return b[0] if jnp.ndim(b) else b


def _eta_dict(eta):
    return eta.to_dict() if isinstance(eta, Schedule) else _tolist(eta)


def _tolist(x):
    import numpy as np

    return np.asarray(x).tolist()
