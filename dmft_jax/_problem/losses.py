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
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._cache import trace as trace_cache
from .._util import tolist, value_repr


class AbstractLoss(eqx.Module):
    """Interface of a loss ``ell(v)`` (elementwise) of the margin ``v = y Phi(r)`` of a
    classification model, or of the residual ``v = Phi(r) - y`` of a regression model
    (:attr:`argument`: ``"margin"``, ``"residual"`` or ``"any"``; the model says which it
    passes, :attr:`dmft_jax.AbstractModel.argument`).

    ``name`` identifies it in saved results; ``twice_differentiable`` is ``False`` for a loss
    whose second derivative has a Dirac part that autodiff cannot see (the solver refuses
    it)."""

    __repr__ = value_repr  # the values of the parameters, not f32[]

    name: eqx.AbstractClassVar[str]
    twice_differentiable: eqx.AbstractClassVar[bool]
    argument: ClassVar[str] = "margin"

    def __check_init__(self):
        _validate.numbers_only(self)

    @abc.abstractmethod
    def __call__(self, v):
        """``ell(v)`` elementwise."""

    @property
    def quadratic(self):
        """``(curvature, center, offset)`` when ``ell(v) = offset + curvature (v - center)^2 / 2``
        exactly (the effective process is then linear and has an exact Gaussian solution,
        :func:`dmft_jax.quadratic_dmft`), else ``None``."""
        return None

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

    @property
    def quadratic(self):
        return 1.0, 1.0, 0.0


class Exponential(AbstractLoss):
    """``ell(v) = exp(-v)``."""

    name: ClassVar[str] = "exponential"
    twice_differentiable: ClassVar[bool] = True

    def __call__(self, v):
        return jnp.exp(-v)


class SquaredError(AbstractLoss):
    """``ell(e) = e^2 / 2`` of the residual ``e = Phi(r) - y`` (regression: ``Lambda(y, r) =
    (r - y)^2 / 2``, ``Lambda' = r - y``, ``Lambda'' = 1``)."""

    name: ClassVar[str] = "squared_error"
    twice_differentiable: ClassVar[bool] = True
    argument: ClassVar[str] = "residual"

    def __call__(self, e):
        return 0.5 * e**2

    @property
    def quadratic(self):
        return 1.0, 0.0, 0.0


class Quadratic(AbstractLoss):
    """``ell(v) = offset + curvature (v - center)^2 / 2`` of the margin or the residual: a loss
    whose effective process is linear, solved exactly by :func:`dmft_jax.quadratic_dmft`; the
    surrogate of :class:`~dmft_jax.ControlVariates`. :meth:`matching` builds the one that
    matches another loss's value, slope and curvature at a point."""

    curvature: float = 1.0
    center: float = 0.0
    offset: float = 0.0
    name: ClassVar[str] = "quadratic"
    twice_differentiable: ClassVar[bool] = True
    argument: ClassVar[str] = "any"

    def __check_init__(self):
        _validate.positive("curvature", self.curvature)
        _validate.check("center", self.center, lambda a: a == a, "a finite number")  # check() tests finiteness
        _validate.check("offset", self.offset, lambda a: a == a, "a finite number")

    def __call__(self, v):
        return self.offset + 0.5 * self.curvature * (v - self.center) ** 2

    @property
    def quadratic(self):
        return self.curvature, self.center, self.offset

    @classmethod
    def matching(cls, loss, at=0.0) -> "Quadratic":
        """The quadratic with the value, slope and curvature of ``loss`` at ``v = at``
        (``loss``'s second derivative there must be positive). The logistic loss at 0 gives
        ``log 2 - 1/2 + (v - 2)^2 / 8``."""
        loss = as_loss(loss)
        at = _validate.as_float_array(at, "at")
        if jnp.ndim(at) != 0:
            raise ValueError(f"at: one margin (a number) per surrogate; got an array of shape {jnp.shape(at)}")
        value = loss(at)
        slope = jax.grad(lambda v: loss(v))(at)
        curvature = jax.grad(jax.grad(lambda v: loss(v)))(at)
        if _validate.is_concrete(curvature) and not np.isfinite(float(curvature)):
            raise ValueError(f"at: the loss's second derivative at v = {float(at):g} is not finite "
                             f"({float(curvature):g}: it overflows there); match it at another margin")
        if _validate.is_concrete(curvature) and not float(curvature) > 0:
            raise ValueError(f"at: the loss's second derivative at v = {float(at):g} is {float(curvature):g}; a "
                             "quadratic surrogate needs a positive curvature there (match it at another margin)")
        safe = jnp.where(curvature > 0, curvature, jnp.nan)  # traced: no surrogate (NaN) rather than a wrong one
        return cls(curvature=safe, center=at - slope / safe, offset=value - 0.5 * slope**2 / safe)


class PseudoHuber(AbstractLoss):
    """``ell(e) = beta^2 (sqrt(1 + (e / beta)^2) - 1)`` of the residual ``e = Phi(r) - y``: the
    squared error for ``|e| << beta``, linear (robust to outliers) for ``|e| >> beta``."""

    beta: float = 1.0
    name: ClassVar[str] = "pseudo_huber"
    twice_differentiable: ClassVar[bool] = True
    argument: ClassVar[str] = "residual"

    def __check_init__(self):
        _validate.positive("beta", self.beta)

    def __call__(self, e):
        return self.beta**2 * (jnp.sqrt(1.0 + (e / self.beta) ** 2) - 1.0)


class CustomLoss(AbstractLoss):
    """Any user callable ``ell(v)``, assumed twice differentiable (autodiff); ``v`` is the
    margin or the residual, as the model says."""

    fn: Callable = eqx.field(static=True)
    name: ClassVar[str] = "custom"
    twice_differentiable: ClassVar[bool] = True
    argument: ClassVar[str] = "any"

    def __check_init__(self):
        _validate.function_of("loss", self.fn, 1, "one argument, the margins (or residuals) v, elementwise: ell(v)")

    def __call__(self, v):
        return self.fn(v)


LOSSES = {
    "logistic": Logistic,
    "hinge": Hinge,
    "smooth_hinge": SmoothHinge,
    "square": Square,
    "exponential": Exponential,
    "squared_error": SquaredError,
    "pseudo_huber": PseudoHuber,
    "quadratic": Quadratic,
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


def check_for_solver(loss: AbstractLoss, name: str = "loss") -> None:
    """Refuse (``ValueError``) a loss the DMFT solver would get wrong, whatever its class says:

    - not elementwise (``ell`` of an array of shape ``(n,)`` must have shape ``(n,)``);
    - not differentiable by JAX (written with NumPy, say);
    - a second derivative with a part autodiff cannot see: on a margin grid of spacing
      ``h = 1e-3`` over ``[-8, 8]``, the change of ``ell'`` across each window of width 0.1
      must equal the integral of the autodiff ``ell''`` over it (to 2% of the largest change
      plus 1e-3). A kink (the hinge, a ``jnp.maximum``) or a bump narrower than the grid
      (``SmoothHinge(beta)`` with ``beta`` above ~1e3) fails; ``SmoothHinge(10)`` passes.
    """
    if not loss.twice_differentiable:
        raise ValueError(
            f"{name}: {type(loss).__name__} is not twice differentiable; the DMFT needs Lambda'' and a kink "
            "would be missed by pathwise derivatives. Use dmft_jax.SmoothHinge(beta) (hinge as beta -> "
            "infinity) for the solver; dmft_jax.simulate accepts the plain hinge.")
    if not all(_validate.is_concrete(x) for x in jax.tree_util.tree_leaves(loss)):
        return  # loss parameters traced (vmap over beta, say): checked where they are concrete
    try:
        if loss in _PASSED:  # every solve checks its loss: once per loss is enough
            return
    except TypeError:  # unhashable (an array-valued parameter): check every time
        pass
    if not trace_cache.known("curvature", loss):  # a process before this one checked it (trace cache)
        _check_curvature(loss, name)
        trace_cache.record("curvature", loss)
    try:
        _PASSED.add(loss)
    except TypeError:
        pass


_PASSED: set = set()  # losses that passed check_for_solver


class _NotElementwise(Exception):
    pass


class _NotDifferentiable(Exception):
    pass


_GRID = (-8.0, 8.0, 16001)  # margins of the curvature check, step h = 1e-3
_WINDOW = 100  # steps per window


@eqx.filter_jit
def _curvature_numbers(loss):
    """The curvature check's numbers in one compiled program (eager operations would
    compile one by one): whether ``ell'`` and ``ell''`` are finite on the grid, the change of
    ``ell'`` over windows of ``_WINDOW`` steps and the trapezoid integral of ``ell''``."""
    v = jnp.linspace(*_GRID)
    h = (_GRID[1] - _GRID[0]) / (_GRID[2] - 1)
    try:
        out = loss(v)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
            jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError) as err:
        # NumPy or math inside the loss: it runs on concrete arrays but JAX cannot trace it
        raise _NotDifferentiable(f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    if jnp.shape(out) != v.shape:
        raise _NotElementwise(jnp.shape(out))
    try:
        d1 = jax.grad(lambda x: jnp.sum(loss(x)))(v)
        _, d2 = jax.jvp(jax.grad(lambda x: jnp.sum(loss(x))), (v,), (jnp.ones_like(v),))
    except Exception as err:
        raise _NotDifferentiable(f"{type(err).__name__}: {err}") from None
    finite = jnp.all(jnp.isfinite(d1)) & jnp.all(jnp.isfinite(d2))
    w = _WINDOW
    change = d1[w::w] - d1[:-w:w]
    trap = 0.5 * h * (d2[:-1] + d2[1:])
    integral = jnp.sum(trap[: change.shape[0] * w].reshape(-1, w), axis=1)
    return finite, change, integral


def _check_curvature(loss, name):
    v = np.linspace(*_GRID)
    try:
        finite, change, integral = _curvature_numbers(loss)
        if isinstance(finite, jax.core.Tracer):  # called inside jit/vmap/grad: evaluate now
            with jax.ensure_compile_time_eval():
                finite, change, integral = _curvature_numbers(loss)
    except _NotElementwise as err:
        raise ValueError(f"{name}: ell(v) must be elementwise: for v of shape {v.shape} it returned shape "
                         f"{err.args[0]} (a sum or mean over samples is not a per-sample loss)") from None
    except _NotDifferentiable as err:
        raise ValueError(f"{name}: JAX cannot differentiate ell ({err}); write the loss "
                         "with jax.numpy (not numpy or math)") from None
    except Exception as err:  # a user callable may fail in any way
        raise ValueError(f"{name}: calling ell(v) on an array failed ({type(err).__name__}: {err}); a loss "
                         "must be an elementwise function of a jax array") from None
    if not bool(finite):
        raise ValueError(f"{name}: ell' or ell'' is not finite somewhere on [-8, 8]; the solver needs a loss "
                         "twice differentiable at every margin")
    change, integral = np.asarray(change), np.asarray(integral)
    gap = np.abs(change - integral)
    if not gap.max() <= 0.02 * np.abs(change).max() + 1e-3:
        worst = int(np.argmax(gap))
        raise ValueError(
            f"{name}: the second derivative of ell has a part autodiff does not see (near margin v = "
            f"{v[worst * _WINDOW]:.2f} the change of ell' is {change[worst]:.3g} but the "
            "integral of ell'' is not): a kink or a curvature narrower than 1e-3 would give wrong kernels. "
            "Use a smoother loss (e.g. dmft_jax.SmoothHinge(beta) with beta <= 100), or dmft_jax.simulate, "
            "which accepts any loss.")
