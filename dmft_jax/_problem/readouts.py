"""Committee machines (docs/equations.md, section 6): ``K`` first-layer units ``W`` (rows
``w_a``), fields ``r_a = w_a.x / sqrt(d)``, and a fixed second layer, the read-out ``f(r)`` of
the ``K``-vector of fields; the loss is ``ell`` of the margin ``y f(r)`` (or of the residual
``f(r) - y`` for regression data).

Here: the problems (:class:`Committee` with the read-outs :class:`SoftCommittee`,
:class:`SignCommittee` and :class:`CustomReadout`; a single unit's :class:`UnitReadout`). The
simulation is :func:`dmft_jax.simulate`'s and the DMFT :func:`dmft_jax.solve`'s, one of each
for every ``K``.
"""
from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .. import _validate
from .._util import cast_tree, tolist
from .problem import Problem


class AbstractReadout(eqx.Module):
    """The fixed second layer: ``f(r)`` of the ``K`` fields on the last axis of ``r``."""

    K: int = eqx.field(static=True)

    def __check_init__(self):
        _validate.numbers_only(self)

    @abc.abstractmethod
    def __call__(self, r):
        """The network's output for fields ``r`` of shape ``(..., K)``: shape ``(...)``."""

    def root_last(self, rest):
        """The value ``x`` of the last field where ``f(rest, x) = 0``, for the other fields ``rest``
        ``(..., K - 1)``, when ``f`` increases in the last field (``-inf``: ``f > 0`` for every
        ``x``; ``+inf``: ``f < 0``); ``None`` when the read-out does not say (the DMFT's test error
        is then a plain Monte Carlo average, without a derivative)."""
        return None

    def loss_derivatives(self, problem, y, r):
        """The per-sample loss's gradient ``(K, N)`` and Hessian ``(K, K, N)`` in the fields
        ``r`` ``(K, N)`` (units first, samples last), by autodiff; a read-out with closed forms
        may override it."""
        def one(y1, r1):
            return problem.loss(problem.model.loss_argument(y1, self(r1)))

        g = jax.vmap(jax.grad(one, argnums=1))(y, r.T)
        H = jax.vmap(jax.hessian(one, argnums=1))(y, r.T)
        return g.T, jnp.moveaxis(H, 0, -1)

    def to_dict(self) -> dict:
        return {"readout": type(self).__name__, "K": self.K}


class UnitReadout(AbstractReadout):
    """One unit read out through its model, ``f(r) = phi(r_0)`` (``K = 1``): a single-layer
    problem is the committee with this read-out, solved by the same engine. Its loss
    derivatives are the problem's own (elementwise, no Hessian by autodiff)."""

    model: Any

    def __init__(self, model):
        self.K = 1
        self.model = model

    def __call__(self, r):
        return self.model.phi(r[..., 0])

    def loss_derivatives(self, problem, y, r):
        d1, d2 = problem.loss_derivatives(y, r[0])
        return d1[None], d2[None, None]


def _arctanh_root(s):
    """``x`` with ``tanh(x) = -s`` (``-inf`` for ``s >= 1``, ``+inf`` for ``s <= -1``)."""
    inside = jnp.abs(s) < 1
    x = jnp.arctanh(jnp.where(inside, -s, 0.0))
    return jnp.where(inside, x, jnp.where(s >= 1, -jnp.inf, jnp.inf))


def _units(K) -> int:
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"K must be an integer >= 1 (the number of hidden units); got {K!r}")
    return int(K)


class SoftCommittee(AbstractReadout):
    """``f(r) = sum_a tanh(r_a) / K``."""

    def __init__(self, K: int = 2):
        self.K = _units(K)

    def __call__(self, r):
        return jnp.mean(jnp.tanh(r), axis=-1)

    def root_last(self, rest):
        return _arctanh_root(jnp.sum(jnp.tanh(rest), axis=-1))


class SignCommittee(AbstractReadout):
    """The sign committee through a smooth surrogate: ``f(r) = sum_a tanh(beta r_a) / K``, whose
    sign is the majority vote of ``sign(r_a)`` as ``beta -> infinity`` (``K`` odd)."""

    beta: Any = _validate.float_field("beta")

    def __init__(self, K: int = 3, beta=4.0):
        self.K = _units(K)
        self.beta = beta

    def __check_init__(self):
        _validate.positive("beta", self.beta)

    def __call__(self, r):
        return jnp.mean(jnp.tanh(self.beta * r), axis=-1)

    def root_last(self, rest):
        return _arctanh_root(jnp.sum(jnp.tanh(self.beta * rest), axis=-1)) / self.beta

    def to_dict(self):
        return dict(super().to_dict(), beta=tolist(self.beta))


class CustomReadout(AbstractReadout):
    """Any JAX function ``fn(r)`` of the ``K`` fields on the last axis (derivatives by autodiff).
    ``root`` (optional): ``root(rest)``, the value of the last field where ``fn`` changes sign
    given the others (``fn`` increasing in it; see :meth:`AbstractReadout.root_last`), which
    makes the DMFT's test error smooth; without it the test error is a plain Monte Carlo
    average."""

    fn: Callable = eqx.field(static=True)
    root: Callable | None = eqx.field(static=True, default=None)

    def __init__(self, K: int, fn: Callable, root: Callable | None = None):
        self.K = _units(K)
        _validate.function_of("fn", fn, 1, "one argument, the fields r (..., K): f(r) of the K fields on the last "
                              "axis")
        if root is not None:
            _validate.function_of("root", root, 1, "one argument, the other fields rest (..., K - 1): root(rest), "
                                  "the last field where f changes sign (or None)")
        self.fn = fn
        self.root = root

    def __call__(self, r):
        return self.fn(r)

    def root_last(self, rest):
        return None if self.root is None else self.root(rest)

    def to_dict(self):
        return dict(super().to_dict(), fn=getattr(self.fn, "__name__", repr(self.fn)))


class Committee(eqx.Module):
    """A committee-machine problem: the data, loss and scalars of ``problem`` (its ``R0`` is
    the variance of every entry of ``W_0``), the read-out, and the initial overlaps ``m0``
    with the teacher direction, one per unit (default: ``problem.m0`` for every unit; unequal
    values break the units' exchangeability).

    Two options of its DMFT (docs/equations.md, section 6.2): ``symmetric`` (default off):
    the units are exchangeable (equal ``m0`` and a read-out unchanged when the units are
    permuted, both checked here): every kernel is averaged over the permutations of the units,
    which the exact solution satisfies, so that ``m`` and ``Q`` come out exactly exchangeable
    with less Monte Carlo noise. ``cross_memory`` (default on): keep the cross-unit entries
    ``a != b`` of ``M_R``; ``False`` drops them (to show what they do; the result is then not
    the DMFT)."""

    problem: Problem
    readout: AbstractReadout
    m0: Any
    vector_fields: ClassVar[tuple] = ("m0",)  # one overlap per unit (not a batch)
    symmetric: bool = eqx.field(static=True, default=False)
    cross_memory: bool = eqx.field(static=True, default=True)

    def __init__(self, problem: Problem, readout: AbstractReadout, m0=None, *, symmetric: bool = False,
                 cross_memory: bool = True):
        if not isinstance(problem, Problem):
            raise ValueError(f"problem must be a dmft_jax.Problem; got {type(problem).__name__}")
        if not isinstance(readout, AbstractReadout):
            raise ValueError(f"readout must be SoftCommittee(K), SignCommittee(K, beta), CustomReadout(K, fn) or "
                             f"another dmft_jax._problem.readouts.AbstractReadout; got {readout!r}")
        if problem.bias is not None:
            raise ValueError("problem: a learnable bias is not built for committee machines; use bias=None")
        for name, value in _validate.numeric_fields(readout):  # outside vmap: one read-out, not a batch
            _validate.scalar(f"readout.{name}", value)
        K = readout.K
        for shape, want in (((K + 2, K), (K + 2,)), ((K,), ())):  # a batch of samples, and one sample
            try:  # shapes only: nothing runs
                got = jax.eval_shape(readout, jax.ShapeDtypeStruct(shape, jnp.result_type(float))).shape
            except Exception as err:
                raise ValueError(f"readout: f(r) fails on fields of shape {shape} ({type(err).__name__}: {err}); it "
                                 "must map the K fields on the last axis to one output") from None
            if got != want:
                raise ValueError(f"readout: f(r) must map the K fields on the last axis to one output; for fields "
                                 f"of shape {shape} it returned shape {got} (a sum over samples is not a read-out)")
        self.problem = problem
        self.readout = readout
        m0 = problem.m0 if m0 is None else m0
        if isinstance(m0, (list, tuple)) and any(isinstance(x, jax.Array) for x in m0):
            m0 = jnp.stack([_validate.as_float_array(x, "m0") for x in m0])  # traced entries (jax.grad of one unit's m0)
        m0 = _validate.as_float_array(m0, "m0")
        if not isinstance(m0, jax.core.Tracer) and np.ndim(m0) not in (0, 1):
            raise ValueError(f"m0 must be a number or a vector of {readout.K} overlaps; got shape {np.shape(m0)}")
        self.m0 = jnp.broadcast_to(m0, (readout.K,)) if np.ndim(m0) == 0 else m0
        for name, flag in (("symmetric", symmetric), ("cross_memory", cross_memory)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False; got {flag!r}")
        self.symmetric, self.cross_memory = bool(symmetric), bool(cross_memory)
        if self.symmetric:
            self._check_exchangeable()

    def _check_exchangeable(self):
        """``symmetric=True`` needs units that are exchangeable: equal ``m0`` and a read-out
        that does not change when the units are permuted (checked on random fields)."""
        if not _validate.is_concrete(self.m0):
            raise ValueError("symmetric: needs concrete initial overlaps m0 (it cannot check traced ones for "
                             "equality)")
        m0 = np.asarray(self.m0)
        if not np.all(m0 == m0[0]):
            raise ValueError(f"symmetric: exchangeable units need equal initial overlaps m0; got {m0.tolist()} "
                             "(symmetric=False solves unequal ones)")
        K = self.K
        if K > 1:
            r = np.random.default_rng(0).standard_normal((16, K))
            f = np.asarray(self.readout(jnp.asarray(r)))
            for perm in (np.roll(np.arange(K), 1), np.r_[1, 0, np.arange(2, K)]):
                if not np.allclose(np.asarray(self.readout(jnp.asarray(r[:, perm]))), f, rtol=1e-6, atol=1e-9):
                    raise ValueError("symmetric: the read-out changes when the units are permuted, so the units "
                                     "are not exchangeable; use symmetric=False")

    def __check_init__(self):
        if self.m0.shape != (self.readout.K,):
            raise ValueError(f"m0 must have one overlap per unit, shape ({self.readout.K},); got {self.m0.shape}")
        _validate.check("m0", self.m0, lambda a: a == a, "finite overlaps")

    @property
    def K(self) -> int:
        return self.readout.K

    def output(self, r):
        """The loss argument of every sample: margin ``y f(r)`` or residual ``f(r) - y``."""
        return self.readout(r)

    def to_dict(self) -> dict:
        out = self.problem.to_dict()
        out.update(self.readout.to_dict())
        out["m0"] = tolist(self.m0)
        out.update(symmetric=self.symmetric, cross_memory=self.cross_memory)
        return out

    def astype(self, dtype):
        return cast_tree(self, dtype)
