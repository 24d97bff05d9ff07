"""Control variates from an exactly solvable surrogate (docs/equations.md, section 2.12).

A solve's observable ``theta`` is a Monte Carlo estimate. The same sweep, on the same random
numbers, run with a loss quadratic in the margin (or residual) that matches the real one at
a point (:meth:`~dmft_jax.Quadratic.matching`) gives ``theta_s``, whose error is strongly
correlated with ``theta``'s, and whose mean ``theta_x`` is known exactly
(:func:`dmft_jax.quadratic_dmft`: the surrogate's process is linear). The estimate

    theta_cv = theta - beta . (theta_s - theta_x)

has the mean of ``theta`` for any ``beta`` fixed independently of the main solve's random
numbers; ``beta`` is fitted (least squares with an intercept, per observable and time) on the
error replicas of :class:`~dmft_jax.GroupErrors`, which are independent of the main solve,
so the estimate stays unbiased. The replicas' residuals give its standard error (with the
factor ``1 + n_s / (G - n_s - 2)`` for the fitted ``beta``). Where the fit does not promise a
smaller variance (``fallback``), the plain value and standard error are kept; ``stats``
reports the variance ratio per observable and time (``cv_gain_<name>``, 1 where it fell
back).
"""
from __future__ import annotations

import dataclasses

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._engine.gaussian import applicable, quadratic_curves
from .._problem.losses import Quadratic
from .standard_errors import GroupErrors, NoErrors

# the observables a surrogate's exact solution has (train_acc is not a second moment)
CORRECTABLE = ("m", "q", "eps_gen", "train_loss")


class ControlVariates(GroupErrors):
    """Standard errors from ``groups`` replicas (as :class:`~dmft_jax.GroupErrors`) and the
    observables ``m, q, eps_gen, train_loss`` corrected by control variates from quadratic
    surrogates of the loss (module docstring; docs/equations.md, section 2.12):
    ``solve(..., errors=dj.ControlVariates())``.

    ``at``: the margins (residuals for regression) where each surrogate matches the loss's
    value, slope and curvature (one surrogate per entry; default the one at 0); ``observables``:
    those corrected; ``fallback``: keep the plain estimate where the fitted correction does not
    promise a smaller variance. ``groups >= len(at) + 4``. Applies to a single unit whose
    read-out is linear (two clusters, teacher-student, regression) trained without momentum,
    Langevin noise or bias, over at most ``MAX_STEPS`` steps with the full history (the exact
    surrogate costs ``T^3``). Cost: one more solve with its replicas per surrogate. A derivative
    of a corrected observable is the plain estimate's (the correction carries no gradient)."""

    at: tuple = eqx.field(static=True, default=(0.0,))
    observables: tuple = eqx.field(static=True, default=CORRECTABLE)
    fallback: bool = eqx.field(static=True, default=True)

    MAX_STEPS = 1000

    def __init__(self, groups=16, at=(0.0,), observables=CORRECTABLE, fallback=True):
        super().__init__(groups)
        scalar = np.ndim(at) == 0 and not isinstance(at, (bool, np.bool_, str, dict))
        points = (at,) if scalar else at
        try:
            if isinstance(points, (str, dict)) or any(isinstance(a, (bool, np.bool_, str)) for a in points):
                raise TypeError
            points = tuple(float(a) for a in points)
        except (TypeError, ValueError):
            raise ValueError(f"ControlVariates.at must be a margin or a sequence of margins (finite numbers); "
                             f"got {at!r}") from None
        if not points or not all(abs(a) < float("inf") for a in points):
            raise ValueError(f"ControlVariates.at must hold at least one finite margin; got {at!r}")
        if len(set(points)) != len(points):
            raise ValueError(f"ControlVariates.at: each margin once (the same surrogate twice is collinear); got {at!r}")
        if self.groups < len(points) + 4:
            raise ValueError(f"ControlVariates.groups = {self.groups} is too few to fit {len(points)} control "
                             f"variate(s): at least {len(points) + 4}")
        try:
            names = (observables,) if isinstance(observables, str) else tuple(observables)
        except TypeError:
            names = ()
        bad = [n for n in names if n not in CORRECTABLE]
        if bad or not names or len(set(names)) != len(names):
            raise ValueError(f"ControlVariates.observables must be a non-empty subset of {CORRECTABLE} (each "
                             f"once); got "
                             f"{observables!r}")
        if not isinstance(fallback, bool):
            raise ValueError(f"ControlVariates.fallback must be True or False; got {fallback!r}")
        self.at, self.observables, self.fallback = points, names, fallback

    def check_solve(self, problem, algorithm, config):
        from .._problem.problem import Problem

        if not isinstance(problem, Problem):
            raise ValueError("errors: ControlVariates needs a surrogate with an exact solution: a committee's "
                             "read-out is not linear (only a single unit, dj.Problem)")
        why = applicable(self.surrogates(problem)[0], algorithm)  # matched at each point: a positive curvature
        if why is not None:
            raise ValueError(f"errors: ControlVariates needs a surrogate with an exact solution: {why}")
        if config.n_steps > self.MAX_STEPS:
            raise ValueError(f"errors: ControlVariates' exact surrogate costs T^3 time and T^2 memory; "
                             f"T = {config.n_steps} steps is above its limit of {self.MAX_STEPS}")
        history = getattr(config.solver, "history", None)
        if history is not None and history.compressed:
            raise ValueError("errors: ControlVariates does not run with a compressed history (its exact surrogate "
                             "is O(T^3)); use history=dj.FullHistory()")

    def surrogates(self, problem):
        """The problems of the surrogates: ``problem`` with each matched quadratic loss."""
        return [eqx.tree_at(lambda p: p.loss, problem, Quadratic.matching(problem.loss, a)) for a in self.at]

    def coefficients(self, problem, algorithm, config, reps, run_replicas):
        """The exact surrogates and, per corrected observable, ``(beta, use, var_cv, var_raw,
        x_g)``: the coefficients fitted on the replicas ``reps`` of the real loss (a batched
        :class:`~dmft_jax.Solution`) and those of each surrogate (``run_replicas(problem)``, on
        the same replica keys), where they apply (``use``; ``beta`` is 0 elsewhere), the
        variances of one replica with and without the correction, and the surrogates'
        deviations ``x_g`` per replica."""
        dtype = jnp.dtype(config.dtype)
        surrogates = self.surrogates(problem)
        exact = [quadratic_curves(s, algorithm, config.n_steps, dtype, config.pivot_rtol) for s in surrogates]
        sreps = [run_replicas(s) for s in surrogates]
        ok = (reps.result.code == 0).all() & jnp.all(jnp.stack([(r.result.code == 0).all() for r in sreps]))
        fits = {}
        for name in self.observables:
            theta_g = lax.stop_gradient(getattr(reps, name))  # (G, S)
            x_g = lax.stop_gradient(jnp.stack([getattr(r, name) - getattr(e, name) for r, e in zip(sreps, exact)]))
            beta, var_cv, var_raw = fit(theta_g, x_g)
            use = jnp.isfinite(var_cv) & jnp.all(jnp.isfinite(beta), axis=0) & ok
            if self.fallback:
                use = use & (var_cv < var_raw)
            fits[name] = (jnp.where(use[None], beta, 0.0), use, var_cv, var_raw, x_g)
        return surrogates, exact, fits

    def apply(self, problem, algorithm, key, config, fields, se, reps, run_main, run_replicas):
        """``(fields, se, stats)`` with the observables corrected. ``reps``: the replicas of the
        real loss; ``run_main(problem, key)``: the main solve of a surrogate on the same random
        numbers, ``run_replicas(problem)``: its replicas on the replica keys."""
        surrogates, exact, fits = self.coefficients(problem, algorithm, config, reps, run_replicas)
        mains = [run_main(s, key) for s in surrogates]
        ok = jnp.all(jnp.stack([m.result.code == 0 for m in mains]))
        fields, se, stats = dict(fields), dict(se), {}
        G = reps.result.code.shape[0]
        for name, (beta, use, var_cv, var_raw, _) in fits.items():
            x = jnp.stack([getattr(m, name) - getattr(e, name) for m, e in zip(mains, exact)])  # (n_s, S)
            use = use & jnp.all(jnp.isfinite(x), axis=0) & ok
            # the correction carries no gradient: a derivative is the plain estimate's (unbiased), since
            # the surrogate's derivative is not what beta was fitted to and only adds noise to it
            fields[name] = fields[name] - lax.stop_gradient(correction(beta, use, x))
            se[name] = jnp.where(use, jnp.sqrt(jnp.where(use, var_cv, 0.0) / G), se[name])
            gain = jnp.where(var_cv > 0, var_raw / jnp.where(var_cv > 0, var_cv, 1.0), 1.0)  # 0 / 0 (t = 0): 1
            stats[f"cv_gain_{name}"] = jnp.where(use, gain, 1.0)
        return fields, se, stats

    def corrected_replicas(self, problem, algorithm, config, reps, run_replicas):
        """The replicas ``reps`` with each corrected observable ``theta_g - beta . x_g`` (the
        spread of a function of them, ``tune``'s objective, is then that of the corrected
        estimate; ``beta`` is fitted on the same replicas, so it is slightly optimistic)."""
        _, _, fits = self.coefficients(problem, algorithm, config, reps, run_replicas)
        return dataclasses.replace(reps, **{n: getattr(reps, n) - correction(beta, use, x_g)
                                            for n, (beta, use, _, _, x_g) in fits.items()})


def correction(beta, use, x):
    """``beta . x`` over the surrogates where the fit applies (``use`` ``(S,)``), 0 elsewhere
    (also where ``x`` is not finite there); ``beta`` ``(n, S)``, ``x`` ``(n, S)`` for the main
    solve or ``(n, G, S)`` for the replicas."""
    beta = beta.reshape(beta.shape[:1] + (1,) * (x.ndim - 2) + beta.shape[1:])
    return jnp.sum(jnp.where(use, beta * x, 0.0), axis=0)


def fit(theta_g, x_g):
    """Least squares of ``theta_g`` ``(G, S)`` on the surrogates' deviations ``x_g`` ``(n, G,
    S)`` with an intercept, per time: ``beta`` ``(n, S)``, the variance of one replica after the
    correction (residual variance on ``G - n - 1`` degrees of freedom, times ``1 + n / (G - n
    - 2)`` for the fitted ``beta``) and before it (``G - 1``)."""
    n, G = x_g.shape[0], x_g.shape[1]
    y = theta_g - jnp.mean(theta_g, axis=0)
    X = x_g - jnp.mean(x_g, axis=1, keepdims=True)
    XtX = jnp.einsum("igs,jgs->sij", X, X)
    Xty = jnp.einsum("igs,gs->si", X, y)
    scale = jnp.maximum(jnp.einsum("sii->s", XtX), jnp.finfo(y.dtype).tiny)[:, None, None]
    eye = jnp.eye(n, dtype=y.dtype)
    beta = jnp.linalg.solve(XtX / scale + 1e-12 * eye, Xty[..., None] / scale)[..., 0].T  # (n, S)
    resid = y - jnp.einsum("is,igs->gs", beta, X)
    var_cv = jnp.sum(resid**2, axis=0) / (G - n - 1) * (1 + n / (G - n - 2))
    var_raw = jnp.sum(y**2, axis=0) / (G - 1)
    return beta, var_cv, var_raw


def surrogate_config(config):
    """The configuration of a surrogate's main solve: no errors, trajectories kept or progress."""
    from .progress import NoProgressMeter

    return dataclasses.replace(config, errors=NoErrors(), save_trajectories=0, progress_meter=NoProgressMeter())
