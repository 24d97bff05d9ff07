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

import abc
from typing import Callable, ClassVar

import equinox as eqx
import jax.numpy as jnp

from . import _validate
from ._util import tolist


class AbstractLoss(eqx.Module):
    """Interface of a loss ``ell(v)`` of the margin ``v = y Phi(r)`` (elementwise).

    ``name`` identifies it in saved results; ``twice_differentiable`` is ``False`` for a loss
    whose second derivative has a Dirac part that autodiff cannot see (the solver refuses
    it)."""

    name: eqx.AbstractClassVar[str]
    twice_differentiable: eqx.AbstractClassVar[bool]

    @abc.abstractmethod
    def __call__(self, v):
        """``ell(v)`` elementwise."""

    def to_dict(self) -> dict:
        out = {"loss": self.name}
        out.update({f: tolist(getattr(self, f)) for f in self.__dataclass_fields__
                    if eqx.is_array_like(getattr(self, f))})
        return out


class Logistic(AbstractLoss):
    """``ell(v) = log(1 + exp(-v))`` (numerically stable)."""

    name: ClassVar[str] = "logistic"
    twice_differentiable: ClassVar[bool] = True

    def __call__(self, v):
        return jnp.logaddexp(0.0, -v)


class Hinge(AbstractLoss):
    """``ell(v) = max(0, 1 - v)``. Not twice differentiable: simulation only."""

    twice_differentiable: ClassVar[bool] = False
    name: ClassVar[str] = "hinge"

    def __call__(self, v):
        return jnp.maximum(0.0, 1.0 - v)


class SmoothHinge(AbstractLoss):
    """``ell(v) = softplus(beta (1 - v)) / beta``; the hinge as ``beta -> infinity``."""

    beta: float = 10.0
    name: ClassVar[str] = "smooth_hinge"
    twice_differentiable: ClassVar[bool] = True

    def __check_init__(self):
        _validate.positive("beta", self.beta)

    def __call__(self, v):
        return jnp.logaddexp(0.0, self.beta * (1.0 - v)) / self.beta


class Square(AbstractLoss):
    """``ell(v) = (1 - v)^2 / 2``."""

    name: ClassVar[str] = "square"
    twice_differentiable: ClassVar[bool] = True

    def __call__(self, v):
        return 0.5 * (1.0 - v) ** 2


class Exponential(AbstractLoss):
    """``ell(v) = exp(-v)``."""

    name: ClassVar[str] = "exponential"
    twice_differentiable: ClassVar[bool] = True

    def __call__(self, v):
        return jnp.exp(-v)


class CustomLoss(AbstractLoss):
    """Any user callable ``ell(v)``, assumed twice differentiable (autodiff)."""

    fn: Callable = eqx.field(static=True)
    name: ClassVar[str] = "custom"
    twice_differentiable: ClassVar[bool] = True

    def __call__(self, v):
        return self.fn(v)


LOSSES = {
    "logistic": Logistic,
    "hinge": Hinge,
    "smooth_hinge": SmoothHinge,
    "square": Square,
    "exponential": Exponential,
}


def as_loss(loss) -> AbstractLoss:
    """Accept a :class:`Loss`, a name from :data:`LOSSES`, or a callable ``ell(v)``."""
    if isinstance(loss, AbstractLoss):
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
