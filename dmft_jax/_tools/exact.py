"""Closed-form ``d -> infinity`` learning curves: full-batch gradient descent on ridge
regression with a linear teacher (docs/equations.md, section 5.3.2).

With ``S = X^T X / d`` the iteration ``w_{k+1} = (1 - eta (S + lam)) w_k + eta X^T y / sqrt(d)``
is linear, and in the eigenbasis of ``S`` every component evolves on its own. As
``d -> infinity`` the eigenvalues ``a`` of ``S`` follow the Marchenko-Pastur law (``S = alpha
W`` with ``W = X^T X / n`` of aspect ratio ``d / n = 1 / alpha``; an atom at 0 of mass
``1 - alpha`` when ``alpha < 1``), the teacher, the initial weights and the label noise spread
evenly over the eigenvectors, and with ``P(a) = 1 - eta (a + lam)``::

    A_k(a) = a / (a + lam) + P^k (m0 - a / (a + lam))
    m_k    = E_a[A_k]
    q_k    = E_a[A_k^2] + R0 E_a[P^{2k}] + sigma^2 E_a[(1 - P^k)^2 a / (a + lam)^2]
    e_k    = (1/2) (E_a[a ((A_k - 1)^2 + R0 P^{2k} + sigma^2 (1 - P^k)^2 a / (a + lam)^2)]
                    - 2 sigma^2 E_a[(1 - P^k) a / (a + lam)] + alpha sigma^2)

(``e_k``: the training loss per dimension, ``(1/2d) |X w / sqrt(d) - y|^2``). The test mean
squared error against the noiseless teacher is ``q - 2 m + 1``. This is an independent check
of the DMFT: it uses no trajectory, no kernel and no noise.
"""
from __future__ import annotations

from typing import Any

import warnings

import equinox as eqx
import jax
import numpy as np

from .. import _validate
from .._algorithms.algorithms import GD
from .._problem.losses import SquaredError
from .._problem.problem import Problem
from .._problem.teacher import TeacherRegression
from .._engine.timegrid import count_steps


class ExactCurves(eqx.Module):
    """Curves at the steps ``t_k = k eta``, ``k = 0..T`` (NumPy arrays)."""

    t: Any
    m: Any
    q: Any
    eps_gen: Any
    train_loss: Any


def marchenko_pastur(alpha: float, n_nodes: int = 4000):
    """Nodes and weights of ``E_a[F(a)]`` for the eigenvalues ``a`` of ``X^T X / d``
    (``X``: ``alpha d x d`` standard Gaussian) as ``d -> infinity``: the continuous part by the
    substitution ``a = alpha (1 + g + 2 sqrt(g) cos theta)``, ``g = 1 / alpha``, which makes
    the integrand smooth and periodic (midpoint rule, spectrally accurate), plus the atom at
    0 for ``alpha < 1``."""
    g = 1.0 / alpha
    theta = (np.arange(n_nodes) + 0.5) * np.pi / n_nodes
    x = 1 + g + 2 * np.sqrt(g) * np.cos(theta)
    # density of W: sqrt((x+ - x)(x - x-)) / (2 pi g x), dx = 2 sqrt(g) sin(theta) dtheta
    w = (4 * g * np.sin(theta) ** 2) / (2 * np.pi * g * x) * (np.pi / n_nodes)
    nodes, weights = alpha * x, w
    if alpha < 1:
        nodes, weights = np.append(nodes, 0.0), np.append(weights, 1 - alpha)
    return nodes, weights / weights.sum()  # the sum is 1 to rounding; fix the last digits


def ridge_gd(problem: Problem, algorithm: GD, t_max: float = 20.0, *, n_steps: int | None = None,
             n_nodes: int = 4000) -> ExactCurves:
    """The exact curves of full-batch GD on ``problem`` (a :class:`~dmft_jax.TeacherRegression`
    with the linear teacher and :class:`~dmft_jax.SquaredError` loss) with constant ``eta``."""
    if not isinstance(problem, Problem) or not isinstance(problem.model, TeacherRegression) \
            or not problem.model.linear or not isinstance(problem.loss, SquaredError):
        raise ValueError("problem: ridge_gd needs Problem(TeacherRegression(noise), 'squared_error') with the "
                         "linear teacher (f = identity)")
    if not isinstance(algorithm, GD):
        raise ValueError(f"algorithm: ridge_gd needs full-batch GD(eta); got {type(algorithm).__name__}")
    if algorithm.beta is not None or algorithm.temperature is not None:
        raise ValueError("algorithm: ridge_gd is the closed form of plain GD (no momentum beta, no temperature)")
    if problem.bias is not None:
        raise ValueError("bias: ridge_gd has no learnable bias")
    T = count_steps(algorithm, t_max, n_steps)
    n_nodes = _validate.integer("n_nodes", n_nodes, 16)
    try:
        eta = float(algorithm.eta)
    except TypeError:
        raise ValueError("algorithm: ridge_gd needs a constant learning rate eta") from None
    alpha, lam, R0, m0 = (float(getattr(problem, n)) for n in ("alpha", "lam", "R0", "m0"))
    s2 = float(problem.model.noise) ** 2
    a, wa = marchenko_pastur(alpha, n_nodes)
    if eta * (a.max() + lam) > 2:  # |P(a)| > 1 at the top of the spectrum
        warnings.warn(f"ridge_gd: GD diverges: eta = {eta:g} > 2 / (a_max + lam) = {2 / (a.max() + lam):.4g} "
                      "(a_max: the largest eigenvalue of X^T X / d); the curves grow without bound", RuntimeWarning,
                      stacklevel=2)
    E = lambda x: x @ wa
    k = np.arange(T + 1)[:, None]
    P = (1 - eta * (a + lam))[None, :] ** k
    target = a / (a + lam) if lam > 0 else np.where(a > 0, 1.0, 0.0)
    A = target + P * (m0 - target)
    gain = np.where(a + lam > 0, a / np.where(a + lam > 0, a + lam, 1.0) ** 2, 0.0)
    m = E(A)
    q = E(A**2) + R0 * E(P**2) + s2 * E((1 - P) ** 2 * gain)
    train = 0.5 * (E(a * ((A - 1) ** 2 + R0 * P**2 + s2 * (1 - P) ** 2 * gain))
                   - 2 * s2 * E((1 - P) * a * np.where(a + lam > 0, 1 / np.where(a + lam > 0, a + lam, 1.0), 0.0))
                   + alpha * s2)
    return ExactCurves(t=eta * np.arange(T + 1), m=m, q=q, eps_gen=q - 2 * m + 1, train_loss=train)


def quadratic_dmft(problem: Problem, algorithm, t_max: float = 20.0, *, n_steps: int | None = None, dtype=None):
    """The exact DMFT of a loss quadratic in the margin or the residual (docs/equations.md,
    section 2.11): :class:`~dmft_jax.Quadratic`, :class:`~dmft_jax.Square` or
    :class:`~dmft_jax.SquaredError` on a linear read-out (:class:`~dmft_jax.TwoCluster`,
    :class:`~dmft_jax.TeacherStudent`, :class:`~dmft_jax.TeacherRegression`), trained by
    ``GD``, ``SGD`` or ``PersistentSGD`` (any step-size schedule; no momentum, Langevin noise
    or bias). The effective process is linear, so its second moments, split by the state of
    the selection chain, give every kernel without Monte Carlo: ``O(T^3)`` time,
    ``O(T^2)`` memory. Returns :class:`~dmft_jax._engine.gaussian.GaussianCurves` (``t, m, q,
    eps_gen, train_loss`` and the kernels); jittable and differentiable in the parameters (a
    parameter out of range inside ``vmap``/``jit`` gives NaN curves; non-finite curves of a
    concrete call warn).
    For GD on ridge regression it equals :func:`ridge_gd` (to 1e-7)."""
    from .._engine.gaussian import applicable, quadratic_curves
    from .._solve.configure import check_problem
    from .._util import as_dtype

    check_problem(problem, algorithm)
    why = applicable(problem, algorithm)
    if why is not None:
        raise ValueError(f"problem: quadratic_dmft needs a linear effective process: {why}")
    T = count_steps(algorithm, t_max, n_steps)
    dtype = as_dtype(dtype)
    rtol = 1e-7 if dtype == np.float64 else 1e-4
    curves = quadratic_curves(problem.astype(dtype), algorithm, T, dtype, rtol)
    checks, valid, _ = _validate.traced_checks(problem, algorithm, T)
    if checks:  # inside vmap/jit the construction checks run here: an invalid point gives NaN curves
        curves = jax.tree_util.tree_map(lambda x: _validate.poison(valid, x), curves)
    elif not np.all(np.isfinite(np.asarray(curves.eps_gen))) or not np.all(np.isfinite(np.asarray(curves.q))):
        warnings.warn("quadratic_dmft: the curves are not finite (the linear dynamics diverge: a step size above "
                      "2 / curvature, or a surrogate matched where the loss is very steep)", RuntimeWarning,
                      stacklevel=2)
    return curves
