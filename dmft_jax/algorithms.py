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
fixed ``tau``.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp

from . import _validate

def _f():
    return eqx.field(converter=_validate.as_float_array)


class Algorithm(eqx.Module):
    eta: Any = _f()

    def selection(self):
        """Return ``(b, p_on, p_off)``."""
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError


class PersistentSGD(Algorithm):
    """Persistent SGD: a sample stays in the batch for a mean time ``tau``."""

    eta: Any = _f()
    b: Any = _f()
    tau: Any = _f()

    def __init__(self, eta=0.2, b=0.3, tau=1 / 0.6):
        self.eta = eta
        self.b = b
        self.tau = tau

    def __check_init__(self):
        _validate.positive("eta", self.eta)
        _validate.in_unit_interval("b", self.b)
        _validate.positive("tau", self.tau)
        if all(_validate.is_concrete(x) for x in (self.eta, self.b, self.tau)):
            _validate.check("tau", self.tau - self.eta, lambda a: a >= -1e-12 * abs(self.eta),
                            f"tau >= eta (eta = {float(self.eta):g})")
            _validate.check(
                "b", jnp.where(self.b < 1, self.b * self.eta - (1 - self.b) * self.tau, 0.0),
                lambda a: a <= 1e-12 * abs(self.tau),
                f"b * eta <= (1 - b) * tau (eta = {float(self.eta):g}, tau = {float(self.tau):g}), "
                "i.e. b <= tau / (tau + eta)",
            )

    def selection(self):
        full = self.b >= 1
        one_minus_b = jnp.where(full, 1.0, 1.0 - self.b)
        p_off = jnp.where(full, 0.0, self.eta / self.tau)
        p_on = jnp.where(full, 1.0, self.b * self.eta / (one_minus_b * self.tau))
        return self.b, p_on, p_off

    def to_dict(self):
        return {"algorithm": "persistent_sgd", "eta": _tolist(self.eta), "b": _tolist(self.b),
                "tau": _tolist(self.tau)}


class SGD(Algorithm):
    """Classic SGD with an independent Bernoulli(``b``) batch at every step."""

    eta: Any = _f()
    b: Any = _f()

    def __init__(self, eta=0.2, b=0.3):
        self.eta = eta
        self.b = b

    def __check_init__(self):
        _validate.positive("eta", self.eta)
        _validate.in_unit_interval("b", self.b)

    def persistent(self) -> PersistentSGD:
        """The equivalent :class:`PersistentSGD` with ``tau = eta / (1 - b)``."""
        return PersistentSGD(self.eta, self.b, self.eta / jnp.where(self.b < 1, 1 - self.b, 1.0))

    def selection(self):
        b, p_on, p_off = self.persistent().selection()
        return b, jnp.where(b < 1, p_on, 1.0), jnp.where(b < 1, p_off, 0.0)

    def to_dict(self):
        return {"algorithm": "sgd", "eta": _tolist(self.eta), "b": _tolist(self.b)}


class GD(Algorithm):
    """Full-batch gradient descent (``s = 1``)."""

    eta: Any = _f()

    def __init__(self, eta=0.2):
        self.eta = eta

    def __check_init__(self):
        _validate.positive("eta", self.eta)

    def selection(self):
        one = jnp.ones_like(self.eta)
        return one, one, jnp.zeros_like(self.eta)

    def to_dict(self):
        return {"algorithm": "gd", "eta": _tolist(self.eta)}


def _tolist(x):
    import numpy as np

    return np.asarray(x).tolist()
