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
from .._util import cast_tree, tolist, value_repr
from .problem import Problem


class AbstractReadout(eqx.Module):
    """The fixed second layer: ``f(r)`` of the ``K`` fields on the last axis of ``r``."""

    __repr__ = value_repr  # the values of the parameters, not f32[]

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


def _root_given(readout) -> bool:
    """Whether the read-out gives a root (``root_last`` not ``None``; a root that fails counts as
    given, for :func:`verify_root` to report)."""
    if isinstance(readout, CustomReadout):
        return readout.root is not None
    try:
        return jax.eval_shape(lambda: readout.root_last(jnp.zeros((1, readout.K - 1)))) is not None
    except Exception:
        return True


_VERIFIED: set = set()  # (read-out class, fn, root, K) whose root passed verify_root


def verify_root(readout) -> None:
    """A user's ``root_last`` checked on sampled fields before the DMFT's test error trusts it
    (a root that kept the extra axis gave ``eps_gen = 1499`` with status success): for 192
    draws of the other fields ``rest`` (standard normal at scales 0.3, 1 and 3) and the last
    field on a grid over ``[-10, 10]`` and just either side of the root, ``root(rest)`` must have
    one value per draw, not be NaN, and be where ``f`` changes sign from ``<= 0`` to ``> 0``
    along the last field (the quadrature integrates ``P(f <= 0) = P(r_K <= root)``; ``-inf``:
    ``f > 0`` everywhere, ``+inf``: ``f <= 0``), to a tolerance of ``1e-6`` of ``f``'s range.
    ``ValueError`` naming ``root`` otherwise. Read-outs with traced parameters are not checked."""
    K = readout.K
    if not all(_validate.is_concrete(x) for x in jax.tree_util.tree_leaves(readout)):
        return
    ident = (type(readout), getattr(readout, "fn", None), getattr(readout, "root", None), K)
    try:
        if ident in _VERIFIED and type(readout) is CustomReadout:
            return
    except TypeError:
        pass
    rng = np.random.default_rng(0)
    rest = np.concatenate([rng.standard_normal((64, K - 1)) * s for s in (0.3, 1.0, 3.0)])
    grid = np.linspace(-10.0, 10.0, 41)

    try:
        shape = jax.eval_shape(readout.root_last, jax.ShapeDtypeStruct(rest.shape, jnp.result_type(float))).shape
    except Exception as err:
        raise ValueError(f"root: root(rest) fails on the other fields of shape {rest.shape} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]})") from None
    if shape != rest.shape[:-1]:
        raise ValueError(f"root: root(rest) must return one value of the last field per point, shape "
                         f"{rest.shape[:-1]} for rest of shape {rest.shape} (the other K - 1 = {K - 1} fields); got "
                         f"shape {tuple(shape)}")

    def numbers(rest):
        x = jnp.asarray(readout.root_last(rest), rest.dtype)
        step = 1e-4 * (1.0 + jnp.abs(jnp.where(jnp.isfinite(x), x, 0.0)))
        at = jnp.concatenate([jnp.broadcast_to(grid, x.shape + grid.shape),
                              jnp.stack([x - step, x + step], -1)], -1)  # (n, 43)
        at = jnp.where(jnp.isfinite(at), at, 0.0)
        fields = jnp.concatenate([jnp.broadcast_to(rest[:, None, :], at.shape + (K - 1,)), at[..., None]], -1)
        return x, at, readout(fields)

    try:
        with jax.ensure_compile_time_eval():
            x, at, f = jax.jit(numbers)(jnp.asarray(rest))
    except Exception as err:
        raise ValueError(f"root: root(rest) or f failed on fields of shape {rest.shape} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200]})") from None
    x, at, f = np.asarray(x), np.asarray(at), np.asarray(f)
    if np.any(np.isnan(x)):
        i = int(np.argmax(np.isnan(x)))
        raise ValueError(f"root: root(rest) is NaN at rest = {np.round(rest[i], 3).tolist()}; give the last field "
                         "where f changes sign, -inf (f > 0 for every value) or +inf (f <= 0), or root=None")
    tol = 1e-6 * (np.max(np.abs(f[np.isfinite(f)]), initial=0.0) + 1e-30)
    below, above = at < x[:, None], at > x[:, None]
    bad = (below & (f > tol)) | (above & (f < -tol)) | ~np.isfinite(f)
    if np.any(bad):
        i, j = np.argwhere(bad)[0]
        where = "below" if below[i, j] else "above"
        raise ValueError(
            f"root: root(rest) is not where f changes sign along the last field: at rest = "
            f"{np.round(rest[i], 3).tolist()} it gives {x[i]:.6g}, but f = {f[i, j]:.3g} at the last field "
            f"{at[i, j]:.6g} ({where} the root); the DMFT's test error integrates P(f <= 0) = P(r_K <= root), which "
            "needs f <= 0 below the root and f > 0 above it (f increasing in the last field). Fix root, or pass "
            "root=None (a Monte Carlo test error)")
    try:
        _VERIFIED.add(ident)
    except TypeError:
        pass


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

    __repr__ = value_repr  # the values of the parameters, not f32[]

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
        if type(readout) not in (SoftCommittee, SignCommittee) and _root_given(readout):
            verify_root(readout)  # a user's root: the test error's quadrature relies on it
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
