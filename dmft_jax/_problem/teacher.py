"""Teacher-student data (docs/equations.md, section 5.3): Gaussian inputs, a teacher ``w*``
with ``|w*|^2 = d``, labels from the teacher field ``nu = w*.x / sqrt(d)``: the sign teacher
with label flips (classification) and ``y = f(nu) + noise`` (regression, losses of the
residual)."""
from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp

from .. import _validate
from .._util import half_normal_nodes, normal_nodes, tolist
from .problem import AbstractModel, q_ratio, safe_sqrt


class AbstractTeacher(AbstractModel):
    """Teacher-student data (docs/equations.md, section 5.3): inputs ``x ~ N(0, I_d)``, a
    teacher ``w*`` with ``|w*|^2 = d`` and teacher field ``nu = w*.x / sqrt(d)`` (the effective
    process reads ``r = m nu + u``; ``h0`` is ``nu``), labels a function of ``nu`` and noise.
    ``Delta`` is 1 (the inputs have unit variance): a :class:`Problem` refuses another."""

    default_delta: ClassVar[float] = 1.0
    unit_delta: ClassVar[bool] = True

    def projection(self, c, h0, delta):
        return h0

    def phi(self, r):
        return r

    def teacher(self, key, d, dtype):
        v = jax.random.normal(key, (d,), dtype)
        return v * jnp.sqrt(jnp.asarray(d, dtype)) / jnp.linalg.norm(v)  # |w*|^2 = d exactly

    def data(self, keys, teacher, size, delta, dtype):
        return self._data(keys, teacher, size, dtype, noisy=True)

    def test_data(self, keys, teacher, size, delta, dtype):
        """Held-out samples labelled by the noiseless teacher."""
        return self._data(keys, teacher, size, dtype, noisy=False)

    def _data(self, keys, teacher, size, dtype, noisy):
        kc, kz = keys
        d = teacher.shape[0]
        X = jax.random.normal(kz, (size, d), dtype)
        nu = X @ teacher / jnp.sqrt(jnp.asarray(d, dtype))
        return X, self.labels(kc, nu, noisy)

    @abc.abstractmethod
    def labels(self, key, nu, noisy: bool):
        """Labels of teacher fields ``nu`` (with their noise when ``noisy``)."""


class TeacherStudent(AbstractTeacher):
    """Teacher-student classification: ``y = sign(nu)``, flipped independently with
    probability ``label_noise`` in ``[0, 1/2)``; ``Phi(r) = r``. The generalisation error is
    measured against the noiseless teacher, ``eps_gen = arccos(m / sqrt(q)) / pi``. The
    latent ``c`` is the flip indicator (1 for a flipped label); ``label_noise`` is
    differentiable (likelihood ratio) for ``label_noise > 0``: at 0 no label is flipped, every
    trajectory has the same score and the estimated derivative is 0 (start a tuning run or a
    derivative from a positive value)."""

    label_noise: Any = _validate.float_field("label_noise")

    def __init__(self, label_noise=0.0):
        self.label_noise = label_noise

    def __check_init__(self):
        _validate.check("label_noise", self.label_noise, lambda a: (a >= 0) & (a < 0.5), "0 <= label_noise < 0.5")

    def sample(self, key, h0):
        flip = jax.random.uniform(key, h0.shape, h0.dtype) < self.label_noise
        y = jnp.where(h0 >= 0, 1.0, -1.0) * jnp.where(flip, -1.0, 1.0)
        return flip.astype(h0.dtype), y.astype(h0.dtype)

    def labels(self, key, nu, noisy):
        y = jnp.where(nu >= 0, 1.0, -1.0).astype(nu.dtype)
        if not noisy:
            return y
        return jnp.where(jax.random.uniform(key, nu.shape, nu.dtype) < self.label_noise, -y, y)

    def log_prob(self, c, y):
        return jnp.log(jnp.where(c > 0, self.label_noise, 1 - self.label_noise))

    def test_atoms(self):  # the test labels are clean: one atom, no flip
        dtype = self.label_noise.dtype
        return jnp.zeros(1, dtype), jnp.ones(1, dtype)

    def clean_label(self, c, h0):
        return jnp.where(h0 >= 0, 1.0, -1.0).astype(h0.dtype)

    def gaussian_atoms(self, delta):
        # atoms y = +-1 (probability 1/2 each): E[nu | y] = y (1 - 2 eps) sqrt(2 / pi), E[nu^2 | y] = 1
        eps = jnp.asarray(self.label_noise)
        one, zero = jnp.ones_like(eps), jnp.zeros_like(eps)
        mean = (1 - 2 * eps) * jnp.sqrt(2 / jnp.pi)
        moments = jnp.stack([jnp.stack([jnp.stack([one, y * mean, y * one]), jnp.stack([y * mean, one, mean]),
                                        jnp.stack([y * one, mean, one])]) for y in (1.0, -1.0)])
        proj = jnp.stack([jnp.stack([zero, one, zero])] * 2)
        return 0.5 * jnp.stack([one, one]), proj, moments

    def eps_gen(self, m, q, delta):
        # arccos(m / sqrt q) = atan2(sqrt(q - m^2), m): no infinite derivative at q = m^2
        positive = q > 0
        err = jnp.where(positive, jnp.arctan2(safe_sqrt(q - m * m), m) / jnp.pi, 0.5)  # q = 0: a coin flip
        return jnp.where(jnp.isnan(m) | jnp.isnan(q), jnp.nan, err)

    def eps_gen_bias(self, m, q, delta, bias):
        """``P(sign(m nu + s xi + b) != sign(nu))``, ``s = sqrt(q - m^2)``: for each sign of ``nu`` a
        smooth integral over the half line (Gauss-Legendre, 200 nodes on ``[0, 10]``)."""
        dtype = jnp.result_type(m, q, bias)
        t, w = (jnp.asarray(a, dtype) for a in _HALF_LINE)
        m_, q_, b_ = (jnp.asarray(a)[..., None] for a in (m, q, bias))
        s = safe_sqrt(q_ - m_**2)
        err = q_ratio(m_ * t + b_, s) + q_ratio(m_ * t - b_, s)  # nu = t > 0 predicted < 0, nu = -t > 0
        err = jnp.sum(w * err, axis=-1)
        return jnp.where(jnp.isnan(m) | jnp.isnan(q) | jnp.isnan(bias), jnp.nan, err)

    def to_dict(self):
        return {"model": "teacher_student", "label_noise": tolist(self.label_noise)}


_GH = normal_nodes(40)  # nodes of the test error's Gaussian integral
_HALF_LINE = half_normal_nodes(200)


def identity(nu):
    return nu


class TeacherRegression(AbstractTeacher):
    """Teacher-student regression: real labels ``y = f(nu) + noise * xi`` (``xi ~ N(0, 1)``;
    ``f`` a JAX function, default the linear teacher ``f(nu) = nu``), a loss of the residual
    ``r - y`` (:class:`~dmft_jax.SquaredError`, :class:`~dmft_jax.PseudoHuber` or a callable).
    ``eps_gen`` is the test mean squared error against the noiseless teacher,
    ``E[(r - f(nu))^2]`` with ``(nu, r)`` Gaussian of covariance ``[[1, m], [m, q]]`` (by
    Gauss-Hermite quadrature, 40 x 40 nodes: exact for polynomial ``f`` of degree < 40).
    The latent ``c`` is ``xi``; ``noise`` is differentiable (pathwise). The training
    "accuracy" is the fraction of samples where ``r`` and ``y`` have the same sign."""

    noise: Any = _validate.float_field("noise")
    f: Callable = eqx.field(static=True)
    argument: ClassVar[str] = "residual"

    def __init__(self, noise=0.0, f=None):
        self.noise = noise
        self.f = identity if f is None else f

    def __check_init__(self):
        _validate.nonnegative("noise", self.noise)
        _validate.function_of("f", self.f, 1, "one argument, the teacher field nu (f(nu): the clean labels, "
                              "elementwise, written with jax.numpy)")
        try:
            out = jax.eval_shape(lambda nu: self.f(nu), jax.ShapeDtypeStruct((3,), jnp.float32))
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError) as err:
            raise ValueError(f"f: JAX cannot trace the label function ({type(err).__name__}); write it with "
                             "jax.numpy (e.g. jnp.tanh, not np.tanh or math.tanh)") from None
        except Exception as err:  # math.tanh of an array fails here
            numpy = isinstance(err, TypeError) and ("__array__" in str(err) or "Python scalars" in str(err))
            raise ValueError(f"f: calling f(nu) on an array of teacher fields failed ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:200]})" + ("; write it with jax.numpy (e.g. jnp.tanh, not "
                                                                     "np.tanh or math.tanh)" if numpy else "")) \
                from None
        if getattr(out, "shape", None) != (3,):
            raise ValueError(f"f must be elementwise: for nu of shape (3,) it returned {out!r}")

    @property
    def linear(self) -> bool:
        """Whether the teacher is the linear ``f(nu) = nu`` (the default)."""
        return self.f is identity

    def sample(self, key, h0):
        xi = jax.random.normal(key, h0.shape, h0.dtype)
        return xi, self.f(h0) + self.noise * xi

    def labels(self, key, nu, noisy):
        y = self.f(nu)
        return y + self.noise * jax.random.normal(key, nu.shape, nu.dtype) if noisy else y

    def log_prob(self, c, y):
        return jnp.zeros_like(c)

    def test_atoms(self):  # the test target is noiseless: one atom
        dtype = self.noise.dtype
        return jnp.zeros(1, dtype), jnp.ones(1, dtype)

    def clean_label(self, c, h0):
        return self.f(h0)

    def gaussian_atoms(self, delta):
        # one atom: y = f(nu) + noise xi, its moments with nu by Gauss-Hermite quadrature
        noise = jnp.asarray(self.noise)
        x, w = (jnp.asarray(a, noise.dtype) for a in _GH)
        f = self.f(x)
        Ey, Ehy, Eyy = w @ f, w @ (x * f), w @ f**2 + noise**2
        one, zero = jnp.ones_like(noise), jnp.zeros_like(noise)
        moments = jnp.stack([jnp.stack([one, zero, Ey]), jnp.stack([zero, one, Ehy]), jnp.stack([Ey, Ehy, Eyy])])
        return one[None], jnp.stack([zero, one, zero])[None], moments[None]

    def test_error(self, y, p):
        return jnp.mean((p - y) ** 2)

    def eps_gen(self, m, q, delta):
        return self.eps_gen_bias(m, q, delta, 0.0)

    def eps_gen_bias(self, m, q, delta, bias):
        dtype = jnp.result_type(m, q, bias)
        x, w = (jnp.asarray(a, dtype) for a in _GH)
        m_, q_, b_ = (jnp.asarray(a)[..., None, None] for a in (m, q, bias))
        nu, z = x[:, None], x[None, :]
        r = m_ * nu + safe_sqrt(q_ - m_**2) * z + b_
        return jnp.sum(w[:, None] * w[None, :] * (r - self.f(nu)) ** 2, axis=(-2, -1))

    def to_dict(self):
        out = {"model": "teacher_regression", "noise": tolist(self.noise)}
        if not self.linear:
            out["f"] = getattr(self.f, "__name__", repr(self.f))
        return out
