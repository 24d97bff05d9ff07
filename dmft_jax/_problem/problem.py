"""The learning problem: data model, loss and the scalar parameters of section 1.

Hyperparameters are array leaves (so ``jax.vmap``/``jax.grad`` flow into them); the model
kind and the loss are the static structure. Values are validated at construction when
they are concrete (see :mod:`dmft_jax._validate`).
"""
from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import erf, erfc

from .. import _validate
from .._util import cast_tree, tolist, value_repr
from .losses import AbstractLoss, as_loss


def _q_function(x):
    return 0.5 * erfc(x / jnp.sqrt(2.0))


class AbstractModel(eqx.Module):
    """Interface of a data model (docs/equations.md, sections 1.1 and 2.2).

    A sample has a discrete (or continuous) latent ``c``, a label ``y`` and, along the
    teacher direction, the field ``projection(c, h0, delta)`` per unit overlap ``m`` (``h0``
    a standard normal): the effective process reads ``r = m projection + u``. The model
    gives the read-out ``phi(r)`` (prediction ``sign(phi(r))``), the law of ``(c, y)`` and its
    log-probability (likelihood-ratio gradients in its parameters), the generalisation
    error of a state ``(m, q)`` and, for the finite-``d`` simulator, the data themselves.

    ``argument`` says what the loss ``ell`` is a function of: the margin ``y Phi(r)``
    (classification) or the residual ``Phi(r) - y`` (regression); ``default_delta`` is the
    input noise ``Delta`` a :class:`Problem` takes when none is given (``unit_delta``: no other
    value is accepted)."""

    __repr__ = value_repr  # the values of the parameters, not f32[]

    argument: ClassVar[str] = "margin"
    default_delta: ClassVar[float] = 0.5
    unit_delta: ClassVar[bool] = False  # True: Delta must be 1 (inputs of unit variance)

    def __check_init__(self):
        _validate.numbers_only(self)

    @abc.abstractmethod
    def sample(self, key, h0):
        """``(c, y)`` for effective samples whose teacher-direction noise is ``h0`` (shape and
        dtype from ``h0``; labels may depend on it)."""

    @abc.abstractmethod
    def log_prob(self, c, y):
        """Log-probability of the discrete draws ``(c, y)`` (zero for continuous ones)."""

    @abc.abstractmethod
    def projection(self, c, h0, delta):
        """The sample's field along the teacher per unit ``m``."""

    @abc.abstractmethod
    def phi(self, r):
        """Read-out of the pre-activation ``r``: the prediction is ``sign(phi(r))``."""

    @abc.abstractmethod
    def eps_gen(self, m, q, delta):
        """Generalisation error of a fresh sample given ``m``, ``q = C(t,t)`` and ``Delta``."""

    @abc.abstractmethod
    def data(self, keys, teacher, size: int, delta, dtype):
        """``(X, y)``: ``size`` samples at finite ``d = len(teacher)`` for the simulator, inputs
        as rows (``teacher`` is ``v*`` with ``|v*|^2 ~ d``); ``keys`` a pair ``(labels, inputs)``."""

    @abc.abstractmethod
    def to_dict(self) -> dict:
        """JSON-friendly description."""

    def loss_argument(self, y, p):
        """What the loss is evaluated at for label ``y`` and read-out ``p = Phi(r)``."""
        return y * p if self.argument == "margin" else p - y

    def teacher(self, key, d: int, dtype):
        """The teacher direction of a finite-``d`` simulation (``|v*|^2 ~ d``)."""
        return jax.random.normal(key, (d,), dtype)

    def test_data(self, keys, teacher, size: int, delta, dtype):
        """Held-out samples for the simulator's ``test_error`` (by default as :meth:`data`)."""
        return self.data(keys, teacher, size, delta, dtype)

    def test_error(self, y, p):
        """The simulator's error on held-out samples with labels ``y`` and read-outs ``p``:
        the fraction misclassified (regression models: the mean squared error)."""
        return jnp.mean((y * p <= 0).astype(p.dtype))

    def eps_gen_bias(self, m, q, delta, bias):
        """Generalisation error of a network with a learnable bias ``b`` (the prediction reads
        ``Phi(r + b)``; docs/equations.md, section 5.4). A model without it cannot be solved with
        a bias (:class:`Problem` refuses)."""
        raise NotImplementedError

    def test_atoms(self):
        """The discrete part of a fresh test sample as atoms ``(c, weights)`` (arrays, weights
        summing to 1; ``h0`` is the continuous part), for quadrature of a test error over them
        (the committee DMFT); ``None`` when the model does not give them (Monte Carlo then)."""
        return None

    def clean_label(self, c, h0):
        """The label a fresh test sample is scored against (without label noise)."""
        raise NotImplementedError

    def gaussian_atoms(self, delta):
        """The second moments a linear effective process needs (docs/equations.md, section
        2.11): atoms ``(weights (A,), proj (A, 3), moments (A, 3, 3))`` such that, given atom
        ``a``, the vector ``Z = (1, h0, y)`` has ``E[Z Z^T] = moments[a]`` and the
        teacher-direction field is ``proj[a] . Z``; for a loss of the margin the label must
        be fixed per atom. ``None`` when the read-out is not linear (``Phi(r) = r``) or the
        moments are not known: no exact quadratic surrogate then."""
        return None


def _has_bias_error(model) -> bool:
    return type(model).eps_gen_bias is not AbstractModel.eps_gen_bias


def q_ratio(num, sigma):
    """``Q(num / sigma)``, with the limits of ``sigma = 0`` (a step; 1/2 at ``num = 0``)."""
    safe = jnp.where(sigma > 0, sigma, 1.0)
    ratio = jnp.where(sigma > 0, num / safe, jnp.where(num > 0, jnp.inf, jnp.where(num < 0, -jnp.inf, 0.0)))
    return _q_function(ratio)


def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivative at ``x <= 0`` is 0 instead of infinite (a state with
    ``q = m^2``, e.g. ``R0 = 0``, would give NaN gradients)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _sigma(delta, q):
    positive = q > 0
    return jnp.where(positive, jnp.sqrt(delta * jnp.where(positive, q, 1.0)), 0.0)  # no sqrt'(0) in gradients


class AbstractMixture(AbstractModel):
    """A Gaussian mixture: ``x = c v*/sqrt(d) + sqrt(Delta) z``, so the teacher-direction
    field is ``c + sqrt(Delta) h0``; labels depend on ``c`` only."""

    def projection(self, c, h0, delta):
        return c + jnp.sqrt(delta) * h0

    def data(self, keys, teacher, size, delta, dtype):
        kc, kz = keys
        d = teacher.shape[0]
        c, y = self.sample(kc, jnp.zeros((size,), dtype))
        X = c[:, None] * teacher[None, :] / jnp.sqrt(jnp.asarray(d, dtype)) \
            + jnp.sqrt(delta) * jax.random.normal(kz, (size, d), dtype)
        return X, y


class TwoCluster(AbstractMixture):
    """Two clusters ``c = +-1`` (``P(c = 1) = rho``), ``y = c``, ``Phi(r) = r``."""

    rho: Any = _validate.float_field("rho")

    def __init__(self, rho=0.5):
        self.rho = rho

    def __check_init__(self):
        _validate.check("rho", self.rho, lambda a: (a > 0) & (a < 1), "0 < rho < 1")

    def sample(self, key, h0):
        c = jnp.where(jax.random.uniform(key, h0.shape, h0.dtype) < self.rho, 1.0, -1.0).astype(h0.dtype)
        return c, c

    def phi(self, r):
        return r

    def log_prob(self, c, y):
        return jnp.log(jnp.where(c > 0, self.rho, 1 - self.rho))

    def test_atoms(self):
        return jnp.asarray([1.0, -1.0], self.rho.dtype), jnp.stack([self.rho, 1 - self.rho])

    def clean_label(self, c, h0):
        return c

    def gaussian_atoms(self, delta):
        rho = jnp.asarray(self.rho)
        one, zero = jnp.ones_like(rho), jnp.zeros_like(rho)
        c = jnp.stack([one, -one])
        proj = jnp.stack([c, jnp.sqrt(delta) * jnp.ones_like(c), 0 * c], axis=-1)
        moments = jnp.stack([jnp.stack([jnp.stack([one, zero, ci]), jnp.stack([zero, one, zero]),
                                        jnp.stack([ci, zero, one])]) for ci in (one, -one)])
        return jnp.stack([rho, 1 - rho]), proj, moments

    def eps_gen(self, m, q, delta):
        positive = q > 0
        sigma = jnp.where(positive, jnp.sqrt(delta * jnp.where(positive, q, 1.0)), 0.0)  # no sqrt'(0) in gradients
        # w = 0 (q = 0): sign(0) is no class, counted as a coin flip (error 1/2)
        ratio = jnp.where(sigma > 0, m / jnp.where(sigma > 0, sigma, 1.0),
                          jnp.where(m > 0, jnp.inf, jnp.where(m < 0, -jnp.inf, 0.0)))
        return jnp.where(jnp.isnan(m) | jnp.isnan(q), jnp.nan, _q_function(ratio))  # no number for a NaN state

    def eps_gen_bias(self, m, q, delta, bias):
        """``rho Q((m + b) / sigma) + (1 - rho) Q((m - b) / sigma)``, ``sigma = sqrt(Delta q)``."""
        sigma = _sigma(delta, q)
        err = self.rho * q_ratio(m + bias, sigma) + (1 - self.rho) * q_ratio(m - bias, sigma)
        return jnp.where(jnp.isnan(m) | jnp.isnan(q) | jnp.isnan(bias), jnp.nan, err)

    def to_dict(self):
        return {"model": "two_cluster", "rho": tolist(self.rho)}


class ThreeCluster(AbstractMixture):
    """Three clusters: ``c = +-1`` w.p. ``rho/2`` each (``y = +1``), ``c = 0`` w.p.
    ``1 - rho`` (``y = -1``); ``Phi(r) = r^2 - L^2``. Symmetric under ``w -> -w``: use a
    small ``m0 > 0`` in :class:`Problem`."""

    rho: Any = _validate.float_field("rho")
    L: Any = _validate.float_field("L")

    def __init__(self, rho=0.5, L=0.7):
        self.rho = rho
        self.L = L

    def __check_init__(self):
        _validate.check("rho", self.rho, lambda a: (a > 0) & (a < 1), "0 < rho < 1")
        _validate.positive("L", self.L)

    def sample(self, key, h0):
        k1, k2 = jax.random.split(key)
        on = jax.random.uniform(k1, h0.shape, h0.dtype) < self.rho
        sign = jnp.where(jax.random.uniform(k2, h0.shape, h0.dtype) < 0.5, 1.0, -1.0)
        c = jnp.where(on, sign, 0.0).astype(h0.dtype)
        y = jnp.where(on, 1.0, -1.0).astype(h0.dtype)
        return c, y

    def phi(self, r):
        return r**2 - self.L**2

    def log_prob(self, c, y):
        return jnp.log(jnp.where(c != 0, 0.5 * self.rho, 1 - self.rho))

    def test_atoms(self):
        return jnp.asarray([1.0, -1.0, 0.0], self.rho.dtype), jnp.stack([0.5 * self.rho, 0.5 * self.rho, 1 - self.rho])

    def clean_label(self, c, h0):
        return jnp.where(c != 0, 1.0, -1.0).astype(c.dtype)

    def eps_gen(self, m, q, delta):
        positive = q > 0
        s = jnp.where(positive, jnp.sqrt(2.0 * delta * jnp.where(positive, q, 1.0)), jnp.finfo(jnp.result_type(q)).tiny)
        return (1.0 - self.rho) * erfc(self.L / s) + 0.5 * self.rho * (
            erf((self.L - m) / s) + erf((self.L + m) / s)
        )

    def eps_gen_bias(self, m, q, delta, bias):
        """``(1 - rho) P(|b + sigma z| > L) + (rho / 2) sum_+- P(|+-m + b + sigma z| < L)``."""
        sigma = _sigma(delta, q)
        L = self.L
        inside = lambda mean: q_ratio(mean - L, sigma) - q_ratio(mean + L, sigma)  # P(|mean + sigma z| < L)
        err = (1.0 - self.rho) * (1.0 - inside(bias)) + 0.5 * self.rho * (inside(m + bias) + inside(-m + bias))
        return jnp.where(jnp.isnan(m) | jnp.isnan(q) | jnp.isnan(bias), jnp.nan, err)

    def to_dict(self):
        return {"model": "three_cluster", "rho": tolist(self.rho), "L": tolist(self.L)}


class _ModelDefault:
    def __repr__(self):
        return "<the model's default>"


MODEL_DEFAULT = _ModelDefault()  # Problem(delta=...) not given: the model's default_delta


class Problem(eqx.Module):
    """Data model, loss, sample ratio ``alpha = n/d``, noise ``delta``, ridge ``lam``,
    initial weight variance ``R0`` and initial magnetisation ``m0``.

    ``loss`` may be a :class:`~dmft_jax._problem.losses.Loss`, a name (``"logistic"``, ``"square"``,
    ``"exponential"``, ``"smooth_hinge"``, ``"hinge"``; for regression models
    ``"squared_error"``, ``"pseudo_huber"``) or a callable ``ell(v)``. ``delta`` takes the
    model's default (0.5 for the mixtures, 1 for the teacher-student models) when not given.
    ``bias`` (keyword; ``None``, the default: no bias): the initial value ``b_0`` of a learnable
    bias, ``r -> r + b_k`` (docs/equations.md, section 5.4).
    """

    __repr__ = value_repr  # the values of the parameters, not f32[]

    model: AbstractModel
    loss: AbstractLoss
    alpha: Any = _validate.float_field("alpha")
    delta: Any = _validate.float_field("delta")
    lam: Any = _validate.float_field("lam")
    R0: Any = _validate.float_field("R0")
    m0: Any = _validate.float_field("m0")
    bias: Any = eqx.field(default=None, converter=lambda x: None if x is None else _validate.as_float_array(x, "bias"))

    def __init__(self, model=None, loss=None, alpha=2.0, delta=MODEL_DEFAULT, lam=0.0, R0=1.0, m0=0.0, *,
                 bias=None):
        if model is None:
            model = TwoCluster()
        if not isinstance(model, AbstractModel):
            raise ValueError(f"model must be a data model (TwoCluster(...), ThreeCluster(...), TeacherStudent(...), "
                             f"TeacherRegression(...) or a subclass of dmft_jax.AbstractModel); got {model!r}")
        if loss is None:
            loss = "squared_error" if model.argument == "residual" else "logistic"
        loss = as_loss(loss)
        if loss.argument not in ("any", model.argument):
            raise ValueError(
                f"loss: {type(model).__name__} passes the loss its {model.argument} ("
                + ("y Phi(r)" if model.argument == "margin" else "r - y") + f") but {type(loss).__name__} is a loss "
                f"of the {loss.argument}; use " + ("'squared_error', 'pseudo_huber'" if model.argument == "residual"
                                                   else "'logistic', 'square', 'exponential', 'smooth_hinge'")
                + " or a callable")
        self.model = model
        self.loss = loss
        self.alpha = alpha
        self.delta = model.default_delta if delta is MODEL_DEFAULT else delta
        self.lam = lam
        self.R0 = R0
        self.m0 = m0
        self.bias = bias
        if bias is not None and not _has_bias_error(model):
            raise ValueError(f"bias: {type(model).__name__} has no generalisation error with a bias (define "
                             "eps_gen_bias); TwoCluster, ThreeCluster, TeacherStudent and TeacherRegression have it")

    def check_scalars(self):
        """Refuse an array where a single value is expected (outside ``vmap``)."""
        _validate.scalar_fields(self)

    def __check_init__(self):
        _validate.positive("alpha", self.alpha)
        _validate.positive("delta", self.delta)
        _validate.nonnegative("lam", self.lam)
        _validate.nonnegative("R0", self.R0)
        _validate.check("m0", self.m0, lambda a: a == a, "a finite number")
        if self.bias is not None:
            _validate.check("bias", self.bias, lambda a: jnp.isfinite(a), "a finite initial bias")
        if self.model.unit_delta:
            _validate.check("delta", self.delta, lambda a: a == 1,
                            "delta = 1 for teacher-student data (inputs x ~ N(0, I_d); scale the ridge instead)")
        if isinstance(self.model, ThreeCluster) and _validate.checkable(self.m0):
            _validate.check(
                "m0", self.m0, lambda a: a != 0,
                "m0 != 0 for ThreeCluster (the model is symmetric under w -> -w and m = 0 "
                "is a fixed point; use a small value such as m0 = 0.01)",
            )

    # --- the per-sample loss Lambda(y, r) = ell(y Phi(r)) and its r-derivatives -------
    def sample_loss(self, y, r):
        return self.loss(self.model.loss_argument(y, self.model.phi(r)))

    def loss_derivatives(self, y, r):
        """Elementwise ``(Lambda'(y, r), Lambda''(y, r))`` by autodiff."""
        grad = jax.grad(lambda rr: jnp.sum(self.sample_loss(y, rr)))
        return jax.jvp(grad, (r,), (jnp.ones_like(r),))

    def eps_gen(self, m, q, bias=None):
        """Generalisation error at ``(m, q)`` (and the bias ``b`` of a problem with one)."""
        if bias is None:
            return self.model.eps_gen(m, q, self.delta)
        return self.model.eps_gen_bias(m, q, self.delta, bias)

    def astype(self, dtype):
        """Cast every floating leaf to ``dtype``."""
        return cast_tree(self, dtype)

    def to_dict(self) -> dict:
        """JSON-friendly description (concrete values only)."""
        out = dict(self.model.to_dict())
        out.update(self.loss.to_dict())
        for name in ("alpha", "delta", "lam", "R0", "m0"):
            out[name] = tolist(getattr(self, name))
        if self.bias is not None:
            out["bias"] = tolist(self.bias)
        return out
