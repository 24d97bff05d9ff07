"""Finite-``d`` simulation of docs/equations.md, section 1 (the ground truth; conventions in 1.6),
batched over seeds.

One seed draws a teacher ``v*``, ``n = round(alpha d)`` training samples, an initial
``w_0`` with the prescribed overlap ``w_0.v*/d = m0`` exactly (the rest isotropic with
variance ``R0``, so ``|w_0|^2/d ~ R0 + m0^2`` as in the DMFT), the selection paths, and a
test set of ``n_test`` fresh samples, then runs
``w <- w - eta (lam w + sum_mu s_mu Lambda'(y_mu, r_mu) x_mu / sqrt(d))`` for ``T`` steps
(plus ``beta (w_k - w_{k-1})`` with momentum and ``sqrt(2 eta T_L) xi_k`` with Langevin noise).
Seeds are batched with ``jax.lax.map(..., batch_size=batch_size)`` (vmap in groups), so
the same code runs on CPU and GPU; memory per seed in flight is about
``8 d (alpha d + n_test)`` bytes in float64.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from . import selection
from ._util import cast_tree
from .memory import fit_batch, memory_per_seed
from .progress import compile_notice
from .algorithms import AbstractAlgorithm
from .committee import Committee, simulate_committee
from .problem import Problem
from .results import AbstractOutcome, Result
from .seeds import check_inputs, run_seeds, summarise

OBSERVABLES = ("m", "q", "eps_gen", "test_error", "train_loss", "train_acc")


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """The static sizes of a simulation (``n = round(alpha d)`` samples, ``T`` steps, seeds
    ``batch_size`` at a time); hashable, so that it can be a compiled program's static part."""

    d: int
    n: int
    n_seeds: int
    n_test: int
    n_steps: int
    batch_size: int
    dtype: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __getitem__(self, name):  # read like the former dict configuration
        return getattr(self, name)


class Simulation(AbstractOutcome):
    """Seed means and standard errors of the finite-``d`` observables, indexed by step.

    ``eps_gen`` is the analytic error of a fresh sample given ``(m, q)`` (exact at finite
    ``d`` for the given ``w``); ``test_error`` is measured on ``n_test`` held-out samples.
    ``runs[name]`` holds the per-seed curves ``(n_seeds, T+1)``. ``result`` says whether
    every seed stayed finite and bounded (as for :class:`~dmft_jax.Solution`).
    """

    t: Any
    m: Any
    m_se: Any
    q: Any
    q_se: Any
    eps_gen: Any
    eps_gen_se: Any
    test_error: Any
    test_error_se: Any
    train_loss: Any
    train_loss_se: Any
    train_acc: Any
    train_acc_se: Any
    runs: dict
    result: Result
    seed: Any
    problem: Problem
    algorithm: AbstractAlgorithm
    config: SimulationConfig = eqx.field(static=True)
    bias: Any = None  # seed mean and standard error of a learnable bias (None without one)
    bias_se: Any = None

    kind: ClassVar[str] = "simulation"
    base_arrays: ClassVar[tuple] = ("t",) + tuple(n for o in OBSERVABLES for n in (o, o + "_se")) + ("status",)

    @property
    def saved_arrays(self) -> tuple:
        """The names :func:`dmft_jax.save` writes (with the bias when there is one)."""
        return self.base_arrays + (("bias", "bias_se") if self.bias is not None else ())


    def save(self, path, *, overwrite: bool = False):
        """Write ``<path>.npz`` and ``<path>.json`` (see :func:`dmft_jax.io.save`)."""
        from .io import save

        return save(self, path, overwrite=overwrite)


def simulate(
    problem: Problem,
    algorithm: AbstractAlgorithm,
    t_max: float = 20.0,
    d: int = 1000,
    n_seeds: int = 10,
    key=0,
    *,
    n_test: int = 1000,
    n_steps: int | None = None,
    batch_size: int | None = None,
    dtype=None,
    progress_meter=None,
) -> Simulation:
    """Simulate SGD at finite ``d`` over ``n_seeds`` independent seeds.

    ``batch_size`` seeds run at once (vmapped). By default as many as fit in 40% of the
    device's memory (:func:`memory_per_seed` each); a request whose single seed, or whose
    explicit ``batch_size``, does not fit is refused before anything is allocated. Any loss
    works here, including the non-smooth :class:`~dmft_jax.Hinge`. ``progress_meter``: e.g.
    ``dj.TextProgressMeter("simulation", "seeds")`` reports the finished seeds on stderr.
    """
    if isinstance(problem, Committee):  # K hidden units (docs/equations.md, section 6)
        return simulate_committee(problem, algorithm, t_max, d, n_seeds, key, n_test=n_test, n_steps=n_steps,
                                  batch_size=batch_size, dtype=dtype, progress_meter=progress_meter)
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dmft_jax.Problem or a dmft_jax.Committee; got {type(problem).__name__}")
    T, d, n_seeds, n_test, n, key, dtype, progress_meter = check_inputs(
        problem, algorithm, t_max, d, n_seeds, n_test, n_steps, key, dtype, progress_meter)
    batch_size = fit_batch(batch_size, n_seeds, memory_per_seed(d, n, n_test, T, dtype.itemsize))
    config = SimulationConfig(d=int(d), n=n, n_seeds=int(n_seeds), n_test=int(n_test), n_steps=T,
                              batch_size=int(batch_size), dtype=str(dtype))
    keys = jax.random.split(key[0], n_seeds)
    # the seed is data, not part of the compiled program: a new seed must not recompile
    with compile_notice(progress_meter, f"the simulation for d = {d}, T = {T}"):
        runs = run_seeds(_one_seed, problem.astype(dtype), cast_tree(algorithm, dtype), keys, config,
                         progress_meter)
    names = OBSERVABLES + (("bias",) if "bias" in runs else ())
    result, stats, t = summarise(runs, names, runs["q"], algorithm, T, dtype)
    return Simulation(t=t, runs=runs, result=result, seed=jnp.asarray(key[1]), problem=problem,
                      algorithm=algorithm, config=config, **stats)


def _one_seed(problem, algorithm, key, config):
    d, n, n_test, T = config.d, config.n, config.n_test, config.n_steps
    dtype = problem.alpha.dtype
    kv, kc, kz, kw, ks, kct, kzt = jax.random.split(key, 7)
    sqd = jnp.sqrt(jnp.asarray(d, dtype))
    v = problem.model.teacher(kv, d, dtype)

    X, y = problem.model.data((kc, kz), v, n, problem.delta, dtype)
    X_test, y_test = problem.model.test_data((kct, kzt), v, n_test, problem.delta, dtype)
    z = jnp.sqrt(problem.R0) * jax.random.normal(kw, (d,), dtype)
    vv = v @ v
    w0 = z - (z @ v) / vv * v + problem.m0 * d / vv * v
    b0, p_on, p_off = selection.law(algorithm, T, dtype)
    s = selection.draw_paths(ks, b0, p_on, p_off, (n,), dtype)
    lam = problem.lam
    steps = algorithm.step_sizes(T, dtype)

    def observe(w, b, r):
        m = w @ v / d
        q = w @ w / d
        margin = y * problem.model.phi(r)
        shift = 0.0 if b is None else b
        return dict(
            m=m, q=q, eps_gen=problem.eps_gen(m, q, b),
            test_error=problem.model.test_error(y_test, problem.model.phi(X_test @ w / sqd + shift)),
            train_loss=problem.alpha * jnp.mean(problem.sample_loss(y, r)),
            train_acc=jnp.mean((margin > 0).astype(dtype)),
        ) | ({} if b is None else {"bias": b})

    grad_r = jax.grad(lambda r: jnp.sum(problem.sample_loss(y, r)))
    beta, temperature = algorithm.beta, algorithm.temperature
    k_langevin = jax.random.fold_in(key, 0x1A6E)  # the other draws do not depend on the Langevin term

    def field(w, b):
        r = X @ w / sqd
        return r if b is None else r + b

    def step(carry, x):
        w, w_prev, b, b_prev = carry
        s_k, eta, k = x
        r = field(w, b)
        obs = observe(w, b, r)
        force = s_k * grad_r(r)
        w_next = w - eta * (lam * w + X.T @ force / sqd)
        b_next = None if b is None else b - eta * jnp.sum(force) / d  # one coordinate's rate, no ridge
        if beta is not None:  # heavy ball, w_{-1} = w_0 (the bias too)
            w_next = w_next + beta * (w - w_prev)
            b_next = None if b is None else b_next + beta * (b - b_prev)
        if temperature is not None:  # Langevin noise (on w only)
            w_next = w_next + jnp.sqrt(2.0 * eta * temperature) * jax.random.normal(
                jax.random.fold_in(k_langevin, k), (d,), dtype)
        return (w_next, w, b_next, b), obs

    b0 = problem.bias
    (w_T, _, b_T, _), obs = lax.scan(step, (w0, w0, b0, b0), (s[:-1], steps, jnp.arange(T)))
    last = observe(w_T, b_T, field(w_T, b_T))
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), obs, last)
