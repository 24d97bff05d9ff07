"""The static anchor: asymptotics of ridge-regularised empirical-risk minimisation (ERM)
on the two-cluster mixture and on teacher-student data (classification and regression;
docs/equations.md, section 5.3.3), and the data-separability threshold ``alpha*(Delta, rho)``.

docs/equations.md, section 4.1 (our conventions: loss summed over samples, ``lam/2 |w|^2``,
inputs ``c v*/sqrt(d) + sqrt(Delta) z``, no bias). With ``xi ~ N(0, 1)``,
``omega = m + sqrt(Delta q) xi``, ``tau = Delta V`` and ``p = prox_{tau ell}(omega)``::

    m_hat = alpha E[(p - omega)/tau],  q_hat = alpha Delta E[ell'(p)^2],
    V_hat = (alpha Delta / tau) E[1 - dp/domega],
    m = m_hat/(lam + V_hat),  q = (m_hat^2 + q_hat)/(lam + V_hat)^2,  V = 1/(lam + V_hat).

Without a bias the training set ``{y x}`` has the same law for every ``rho``, so the ERM
is ``rho``-independent. Expectations use Gauss-Hermite quadrature (``n_nodes``); the
proximal step is a bracketed (safeguarded) Newton iteration, or closed form for the
square and hinge losses (for the hinge, whose kink Gauss-Hermite cannot resolve, the
expectations are closed-form Gaussian integrals too). The outer fixed point is a damped
iteration in ``(m, log q, log V)`` polished by Newton steps; gradients (``jax.grad`` in
``lam``, ``alpha``, ``delta``, loss parameters) are by the implicit function theorem:
the returned point is one Newton step from the stop-gradient solution, whose derivative
is exactly ``-J^{-1} dG/dtheta``.
"""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import ndtr

from .. import _validate
from .._util import half_normal_nodes, normal_nodes
from .._problem.losses import Hinge, Square, SquaredError
from .._problem.problem import Problem, TwoCluster
from .._problem.teacher import AbstractTeacher, TeacherRegression, TeacherStudent
from .._results.results import RESULTS, AbstractOutcome, Result


class ERMSolution(AbstractOutcome):
    """Asymptotic ERM order parameters and errors (per dimension where extensive);
    ``result`` is the outcome (:data:`~dmft_jax.RESULTS`: ``no_minimiser`` when the order
    parameters diverge, ``max_iter`` when the fixed point was not reached)."""

    m: Any
    q: Any
    V: Any
    m_hat: Any
    q_hat: Any
    V_hat: Any
    eps_gen: Any
    train_loss: Any
    train_error: Any
    result: Result
    n_iter: Any
    bias: Any = None  # the intercept (Problem(..., bias=...)); None without one


def _phi(x):
    return jnp.exp(-0.5 * x * x) / jnp.sqrt(2 * jnp.pi)


def prox(loss, omega, tau, n_iter: int = 200):
    """``argmin_p (p - omega)^2 / (2 tau) + ell(p)`` elementwise, for convex ``ell``.

    Closed form for :class:`Square`, :class:`SquaredError` and :class:`Hinge`; otherwise Newton on the monotone
    ``f(p) = p - omega + tau ell'(p)`` kept inside a bracket (bisection when Newton leaves
    it), which cannot cycle. Differentiable (implicit function theorem at the root).
    """
    if isinstance(loss, Square):
        return (omega + tau) / (1 + tau)
    if isinstance(loss, SquaredError):
        return omega / (1 + tau)
    if isinstance(loss, Hinge):
        return jnp.where(omega < 1 - tau, omega + tau, jnp.where(omega > 1, omega, 1.0))
    d1 = jax.grad(lambda p: jnp.sum(loss(p)))

    def f_and_df(p):
        g, h = jax.jvp(d1, (p,), (jnp.ones_like(p),))
        return p - omega + tau * g, 1 + tau * h

    om, ta = lax.stop_gradient(omega), lax.stop_gradient(tau)
    f0 = lambda p: p - om + ta * d1(p)
    # bracket: f is increasing; step out from omega by tau |ell'(omega)| + 1, doubling
    width = ta * jnp.abs(d1(om)) + 1.0
    lo, hi = om - width, om + width

    def expand(_, c):
        lo, hi, w = c
        lo = jnp.where(f0(lo) > 0, lo - w, lo)
        hi = jnp.where(f0(hi) < 0, hi + w, hi)
        return lo, hi, 2 * w

    lo, hi, _ = lax.fori_loop(0, 60, expand, (lo, hi, width))

    def newton(_, c):
        # safeguarded Newton (as rtsafe): bisect when the step would leave the bracket or
        # when it would not halve |f| compared with the last step. Plain Newton kept
        # inside the bracket cycled for large tau (measured: omega = -4.3, tau = 13.2 gave
        # p = 6.30 instead of 0.549, and erm's q moved by 2e-3 with the number of nodes).
        p, lo, hi, dx_old = c
        g = f0(p)
        _, dg = jax.jvp(f0, (p,), (jnp.ones_like(p),))
        lo = jnp.where(g < 0, p, lo)
        hi = jnp.where(g > 0, p, hi)
        step = p - g / dg
        slow = jnp.abs(2 * g) > jnp.abs(dx_old * dg)
        use_newton = (step > lo) & (step < hi) & ~slow
        new = jnp.where(use_newton, step, 0.5 * (lo + hi))
        return new, lo, hi, jnp.abs(new - p)

    p, _, _, _ = lax.fori_loop(0, n_iter, newton, (0.5 * (lo + hi), lo, hi, hi - lo))
    p = lax.stop_gradient(p)
    f, df = f_and_df(p)
    return p - f / df  # value unchanged at the root; carries the implicit derivative


def _gauss_moments_below(m, s, b):
    """``P``, ``E[w]``, ``E[w^2]`` of ``w ~ N(m, s^2)`` restricted to ``w < b`` (finite b)."""
    z = (b - m) / s
    P, ph = ndtr(z), _phi(z)
    return jnp.stack([P, m * P - s * ph, (m * m + s * s) * P - 2 * m * s * ph - s * s * z * ph])


def _channel(problem, m, q, V, nodes, weights):
    """Conjugate parameters and training observables at ``(m, q, V)``."""
    if isinstance(problem.model, AbstractTeacher):
        return _teacher_channel(problem, m, q, V, nodes)
    alpha, delta, loss = problem.alpha, problem.delta, problem.loss
    tau = delta * V
    s = jnp.sqrt(delta * q)
    if isinstance(loss, Hinge):
        below_A = _gauss_moments_below(m, s, 1 - tau)
        PA, e1A, _ = below_A
        PB, e1B, e2B = _gauss_moments_below(m, s, 1.0) - below_A
        # region A: p = omega + tau, ell' = -1; region B: p = 1, ell' = (omega - 1)/tau
        m_hat = alpha * (PA + (PB - e1B) / tau)
        q_hat = alpha * delta * (PA + (e2B - 2 * e1B + PB) / tau**2)
        V_hat = alpha * delta / tau * PB
        loss_mean = (1 - tau) * PA - e1A
        omega0 = -tau
    else:
        omega = m + s * nodes
        p = prox(loss, omega, tau)
        d1 = jax.grad(lambda pp: jnp.sum(loss(pp)))
        g, h = jax.jvp(d1, (p,), (jnp.ones_like(p),))
        E = lambda x: jnp.sum(weights * x)
        m_hat = alpha * E(-g)
        q_hat = alpha * delta * E(g * g)
        V_hat = alpha * delta * E(h / (1 + tau * h))
        loss_mean = E(loss(p))
        omega0 = tau * jax.grad(lambda x: loss(x))(jnp.zeros_like(tau))
    train_error = ndtr((omega0 - m) / s)  # p(omega) is increasing; p < 0 iff omega < omega0
    return m_hat, q_hat, V_hat, alpha * loss_mean, train_error


def _teacher_quadrature(model, n_nodes, dtype):
    """Nodes of the teacher-student expectations over ``nu`` (the teacher field), ``xi`` (the
    student's field orthogonal to it) and ``zeta`` (the regression label noise): for
    :class:`TeacherStudent` ``nu`` on the half line by Gauss-Legendre (the label ``sign(nu)``
    jumps at 0, so each sign of ``nu`` is integrated on its own), else Gauss-Hermite."""
    xi, w_xi = normal_nodes(n_nodes)
    if isinstance(model, TeacherStudent):
        t, w_t = half_normal_nodes(2 * n_nodes)  # nu in [0, 10], then its mirror
        nu = np.concatenate([t, -t])
        w_nu = np.concatenate([w_t, w_t])
        zeta, w_zeta = np.zeros(1), np.ones(1)
    else:
        nu, w_nu = normal_nodes(n_nodes)
        zeta, w_zeta = normal_nodes(max(8, n_nodes // 2))
    grid = np.meshgrid(nu, xi, zeta, indexing="ij")
    weights = w_nu[:, None, None] * w_xi[None, :, None] * w_zeta[None, None, :]
    return tuple(jnp.asarray(a.ravel(), dtype) for a in (*grid, weights))


def _teacher_channel(problem, m, q, V, quad):
    """Conjugate parameters of the teacher-student ERM (docs/equations.md, section 5.3.3):
    ``omega = m nu + sqrt(q - m^2) xi``, ``p = prox_{V Lambda(y, .)}(omega)``,
    ``V_hat = alpha E[Lambda''/(1 + V Lambda'')]``, ``q_hat = alpha E[Lambda'^2]`` and
    ``m_hat = alpha E[-Lambda' nu] + V_hat m`` (so that ``m = m_hat / (lam + V_hat)`` is the
    projection of the stationarity condition ``lam w = -sum_mu Lambda'_mu x_mu / sqrt(d)`` on
    the teacher), with ``(nu, xi)`` standard normal and ``y`` the label of ``nu``."""
    alpha, loss, model = problem.alpha, problem.loss, problem.model
    nu, xi, zeta, w = quad
    omega = m * nu + jnp.sqrt(jnp.maximum(q - m * m, 0.0)) * xi
    if isinstance(model, TeacherStudent):  # both labels of every nu, weighted by their probability
        clean = jnp.where(nu >= 0, 1.0, -1.0)
        y = jnp.concatenate([clean, -clean])
        w = jnp.concatenate([w * (1 - model.label_noise), w * model.label_noise])
        nu, omega = jnp.concatenate([nu, nu]), jnp.concatenate([omega, omega])
        arg = lambda p: y * p
        p = y * prox(loss, y * omega, V, n_iter=60)
    else:
        y = model.f(nu) + model.noise * zeta
        arg = lambda p: p - y
        p = y + prox(loss, omega - y, V, n_iter=60)
    d1 = jax.grad(lambda a: jnp.sum(loss(a)))
    g1, h1 = jax.jvp(d1, (arg(p),), (jnp.ones_like(p),))
    d_ = g1 * (y if isinstance(model, TeacherStudent) else 1.0)  # Lambda'(y, p); Lambda'' = ell''
    E = lambda x: jnp.sum(w * x)
    V_hat = alpha * E(h1 / (1 + V * h1))
    q_hat = alpha * E(d_ * d_)
    m_hat = alpha * E(-d_ * nu) + V_hat * m
    train_loss = alpha * E(loss(arg(p)))
    if isinstance(model, TeacherStudent):
        # y p < 0 iff y omega < omega0 (p is increasing in omega): smooth in nu for each label
        omega0 = V * jax.grad(lambda x: loss(x))(jnp.zeros_like(V))
        s = jnp.sqrt(jnp.maximum(q - m * m, jnp.finfo(jnp.result_type(q)).tiny))
        train_error = E(ndtr((omega0 - y * m * nu) / s))  # P(y (m nu + s xi) < omega0 | nu, y)
    else:
        train_error = E((p - y) ** 2)  # regression: the training mean squared error
    return m_hat, q_hat, V_hat, train_loss, train_error


def _bias_channel(problem, m, q, V, b, nodes, weights):
    """Two clusters with an intercept ``b`` (docs/equations.md, section 5.4.1): the margins of
    the class ``y`` are ``p(omega_y)``, ``omega_y = m + y b + sqrt(Delta q) xi``; the conjugates are
    averages over the classes (``P(y = 1) = rho``), and ``b`` solves the stationarity condition
    ``sum_y P(y) y E[ell'(p_y)] = 0`` (Newton step: ``F_b`` and its derivative are returned)."""
    alpha, delta, loss, rho = problem.alpha, problem.delta, problem.loss, problem.model.rho
    tau = delta * V
    s = jnp.sqrt(delta * q)
    d1 = jax.grad(lambda pp: jnp.sum(loss(pp)))
    out = []
    for y, P in ((1.0, rho), (-1.0, 1 - rho)):
        p = prox(loss, m + y * b + s * nodes, tau)
        g, h = jax.jvp(d1, (p,), (jnp.ones_like(p),))
        E = lambda x: P * jnp.sum(weights * x)
        omega0 = tau * jax.grad(lambda x: loss(x))(jnp.zeros_like(tau))
        out.append((E(-g), E(g * g), E(h / (1 + tau * h)), E(loss(p)), P * ndtr((omega0 - m - y * b) / s),
                    y * E(g)))
    m_hat, q_hat, v_hat, loss_mean, train_error, F_b = (sum(parts) for parts in zip(*out))
    return alpha * m_hat, alpha * delta * q_hat, alpha * delta * v_hat, alpha * loss_mean, train_error, F_b, v_hat


def _update(problem, x, nodes, weights):
    if problem.bias is not None:
        m, logq, logV, b = x
        m_hat, q_hat, V_hat, _, _, F_b, dF_b = _bias_channel(problem, m, jnp.exp(logq), jnp.exp(logV), b, nodes,
                                                             weights)
        den = problem.lam + V_hat
        return jnp.stack([m_hat / den, jnp.log((m_hat**2 + q_hat) / den**2), -jnp.log(den), b - F_b / dF_b])
    m, logq, logV = x
    m_hat, q_hat, V_hat, _, _ = _channel(problem, m, jnp.exp(logq), jnp.exp(logV), nodes, weights)
    den = problem.lam + V_hat
    return jnp.stack([m_hat / den, jnp.log((m_hat**2 + q_hat) / den**2), -jnp.log(den)])


def erm(problem: Problem, *, n_nodes: int | None = None, damping: float = 0.5, max_iter: int = 2000,
        tol: float = 1e-11, init=(0.5, 1.0, 1.0), throw: bool = False) -> ERMSolution:
    """Solve the ERM fixed point for ``problem`` (two clusters, with an intercept when the problem
    has a bias, or teacher-student classification or regression; convex loss).

    ``n_nodes``: Gauss-Hermite nodes (default 150) for two clusters; nodes per dimension
    (default 40) of the two- or three-dimensional integrals of the teacher-student models.

    ``init`` is ``(m, q, V)``. Returns :class:`ERMSolution` with its ``result``
    (``successful``, ``no_minimiser`` for diverging order parameters, ``max_iter``);
    ``throw=True`` raises instead.
    Works under ``jit``/``vmap``/``grad`` (pass arrays for ``lam``, ``alpha``, ...).
    """
    if not isinstance(problem, Problem) or not isinstance(problem.model, (TwoCluster, TeacherStudent,
                                                                        TeacherRegression)):
        raise ValueError("problem: erm supports Problem(model=TwoCluster(...)) (no bias), TeacherStudent(...) "
                         "and TeacherRegression(...)")
    if problem.bias is not None and not isinstance(problem.model, TwoCluster):
        raise ValueError("bias: erm with an intercept supports TwoCluster (the teacher-student ERM has no bias)")
    if problem.bias is not None and isinstance(problem.loss, Hinge):
        raise ValueError("loss: erm with an intercept needs a differentiable loss (not the hinge; SmoothHinge "
                         "works)")
    if isinstance(problem.model, AbstractTeacher) and not problem.loss.twice_differentiable:
        raise ValueError(f"loss: erm of teacher-student data needs a twice differentiable loss ("
                         f"{type(problem.loss).__name__} has a kink its quadrature would miss); use SmoothHinge(beta)")
    if isinstance(problem.model, TeacherRegression) and isinstance(problem.loss, Square):
        raise ValueError("loss: a regression model needs a loss of the residual ('squared_error')")
    # the problem's own checks again (eqx.tree_at skips them: lam = NaN was reported as "no finite
    # minimiser"), and erm's options, each refused by name with its range
    _validate.recheck(problem)
    throw = _validate.flag("throw", throw)
    if n_nodes is None:
        n_nodes = 150 if isinstance(problem.model, TwoCluster) else 40
    n_nodes = _validate.integer("n_nodes", n_nodes, 1)
    _validate.check("damping", damping, lambda a: (a > 0) & (a <= 1), "0 < damping <= 1")
    max_iter = _validate.integer("max_iter", max_iter, 1)
    _validate.positive("tol", tol)
    if isinstance(init, (str, bytes)) or np.shape(init) != (3,):
        raise ValueError(f"init must be three numbers (m, q, V) with q > 0 and V > 0; got {init!r}")
    _validate.check("init", init, lambda a: (a[1:] > 0), "(m, q, V) with q > 0 and V > 0")
    if isinstance(problem.model, AbstractTeacher) and not 8 <= n_nodes <= 80:
        raise ValueError(f"n_nodes must satisfy 8 <= n_nodes <= 80 for teacher-student models (nodes per "
                         f"dimension of a two- or three-dimensional integral); got {n_nodes}")
    if not 8 <= n_nodes <= 300:
        raise ValueError(f"n_nodes must satisfy 8 <= n_nodes <= 300 (Gauss-Hermite weights "
                         f"underflow beyond); got {n_nodes}")
    sol = _erm_jit(problem, n_nodes, float(damping), int(max_iter), float(tol), tuple(map(float, init)))
    if throw and not np.all(sol.ok):
        raise RuntimeError(f"dmft_jax.erm: {sol.message}")
    return sol


@eqx.filter_jit
def _erm_jit(problem, n_nodes, damping, max_iter, tol, init):
    dtype = problem.alpha.dtype
    if isinstance(problem.model, AbstractTeacher):
        nodes, weights = _teacher_quadrature(problem.model, n_nodes, dtype), None
    else:
        nodes, weights = (jnp.asarray(a, dtype) for a in normal_nodes(n_nodes))
    F = lambda x, prob: _update(prob, x, nodes, weights)
    stopped = lax.stop_gradient(problem)
    x0 = jnp.asarray([init[0], np.log(init[1]), np.log(init[2])] + ([0.0] if problem.bias is not None else []),
                     dtype)

    def cond(c):
        x, it, err = c
        return (it < max_iter) & (err > tol) & jnp.all(jnp.isfinite(x)) & (x[1] < 200)

    def body(c):
        x, it, _ = c
        new = F(x, stopped)
        err = jnp.max(jnp.abs(new - x))
        return (1 - damping) * x + damping * new, it + 1, err

    x, n_iter, err = lax.while_loop(cond, body, (x0, jnp.asarray(0), jnp.asarray(jnp.inf, dtype)))
    # Newton polish on G(x) = F(x) - x (quadratic convergence from the damped iterate)
    G = lambda x, prob: F(x, prob) - x

    def polish(_, x):
        J = jax.jacfwd(G)(x, stopped)
        step = jnp.linalg.solve(J, G(x, stopped))
        return jnp.where(jnp.all(jnp.isfinite(step)), x - step, x)

    x = lax.fori_loop(0, 3, polish, x)
    x = lax.stop_gradient(x)
    J = lax.stop_gradient(jax.jacfwd(G)(x, stopped))
    x = x - jnp.linalg.solve(J, G(x, problem))  # implicit-function-theorem derivative
    residual = jnp.max(jnp.abs(lax.stop_gradient(G(x, problem))))
    m, q, V = x[0], jnp.exp(x[1]), jnp.exp(x[2])
    b = x[3] if problem.bias is not None else None
    if b is None:
        m_hat, q_hat, V_hat, train_loss, train_error = _channel(problem, m, q, V, nodes, weights)
    else:
        m_hat, q_hat, V_hat, train_loss, train_error, _, _ = _bias_channel(problem, m, q, V, b, nodes, weights)
    finite = jnp.all(jnp.isfinite(x)) & jnp.isfinite(train_loss) & (x[1] < 200)
    code = jnp.where(finite, jnp.where(residual < jnp.sqrt(tol), RESULTS.successful, RESULTS.max_iter),
                     RESULTS.no_minimiser)
    # a traced parameter outside its range (set inside vmap/grad): invalid_input naming the check, no numbers
    checks, valid, first_bad = _validate.object_checks(problem)
    fields = dict(m=m, q=q, V=V, m_hat=m_hat, q_hat=q_hat, V_hat=V_hat, eps_gen=problem.eps_gen(m, q, b),
                  train_loss=train_loss, train_error=train_error, bias=b)
    if checks:
        fields = {k: None if v is None else _validate.poison(valid, v) for k, v in fields.items()}
    result = Result.of(jnp.where(valid, code, RESULTS.invalid_input), first_bad, checks)
    return ERMSolution(**fields, result=result, n_iter=n_iter)
