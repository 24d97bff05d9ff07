"""Per-sample losses ``ell(v)`` of the margin ``v = y * Phi(r)``.

The solver needs ``Lambda'`` and ``Lambda''`` (derivatives in the pre-activation ``r``);
they are obtained by autodiff, so any smooth user callable works (wrap it in
:class:`CustomLoss` or pass it directly to :class:`~dmft_jax.Problem`).

The hinge loss has a kink: its pathwise second derivative vanishes almost everywhere
and misses the Dirac mass at the kink, so ``lam_hat`` and ``M_R`` would come out wrong.
The DMFT solver therefore refuses :class:`Hinge` (``twice_differentiable = False``) and
points to :class:`SmoothHinge`, ``softplus(beta (1 - v)) / beta``, which tends to the
hinge as ``beta -> infinity``. The simulator accepts both.
"""
from __future__ import annotations

from typing import Callable, ClassVar

import equinox as eqx
import jax.numpy as jnp

from . import _validate


class Loss(eqx.Module):
    """Abstract loss of the margin ``v``."""

    twice_differentiable: ClassVar[bool] = True
    name: ClassVar[str] = "loss"

    def __call__(self, v):
        raise NotImplementedError


class Logistic(Loss):
    """``ell(v) = log(1 + exp(-v))`` (numerically stable)."""

    name: ClassVar[str] = "logistic"

    def __call__(self, v):
        return jnp.logaddexp(0.0, -v)


class Hinge(Loss):
    """``ell(v) = max(0, 1 - v)``. Not twice differentiable: simulation only."""

    twice_differentiable: ClassVar[bool] = False
    name: ClassVar[str] = "hinge"

    def __call__(self, v):
        return jnp.maximum(0.0, 1.0 - v)


class SmoothHinge(Loss):
    """``ell(v) = softplus(beta (1 - v)) / beta``; the hinge as ``beta -> infinity``."""

    beta: float = 10.0
    name: ClassVar[str] = "smooth_hinge"

    def __check_init__(self):
        _validate.positive("beta", self.beta)

    def __call__(self, v):
        return jnp.logaddexp(0.0, self.beta * (1.0 - v)) / self.beta


class Square(Loss):
    """``ell(v) = (1 - v)^2 / 2``."""

    name: ClassVar[str] = "square"

    def __call__(self, v):
        return 0.5 * (1.0 - v) ** 2


class Exponential(Loss):
    """``ell(v) = exp(-v)``."""

    name: ClassVar[str] = "exponential"

    def __call__(self, v):
        return jnp.exp(-v)


class CustomLoss(Loss):
    """Any user callable ``ell(v)``, assumed twice differentiable (autodiff)."""

    fn: Callable = eqx.field(static=True)
    name: ClassVar[str] = "custom"

    def __call__(self, v):
        return self.fn(v)


LOSSES = {
    "logistic": Logistic,
    "hinge": Hinge,
    "smooth_hinge": SmoothHinge,
    "square": Square,
    "exponential": Exponential,
}


def as_loss(loss) -> Loss:
    """Accept a :class:`Loss`, a name from :data:`LOSSES`, or a callable ``ell(v)``."""
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str):
        try:
            return LOSSES[loss.lower()]()
        except KeyError:
            raise ValueError(
                f"loss: unknown name {loss!r}; valid names are {sorted(LOSSES)}"
            ) from None
    if callable(loss):
        return CustomLoss(loss)
    raise ValueError(f"loss must be a Loss, one of {sorted(LOSSES)} or a callable; got {loss!r}")
