"""Finite-``d`` simulation of docs/equations.md, section 1 (the ground truth; conventions in 1.6),
batched over seeds.

One seed draws a teacher ``v*``, ``n = round(alpha d)`` training samples, an initial
``w_0`` with the prescribed overlap ``w_0.v*/d = m0`` exactly (the rest isotropic with
variance ``R0``, so ``|w_0|^2/d ~ R0 + m0^2`` as in the DMFT), the selection paths, and a
test set of ``n_test`` fresh samples, then runs
``w <- w - eta (lam w + sum_mu s_mu Lambda'(y_mu, r_mu) x_mu / sqrt(d))`` for ``T`` steps
(plus ``sqrt(2 eta T_L) xi_k`` with Langevin noise, taken as the update rule takes the step with
momentum: :mod:`dmft_jax._algorithms.updates`, heavy ball ``+ beta (w_k - w_{k-1})`` by default).
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

from .._algorithms import selection
from .._util import cast_tree
from .._solve.memory import fit_batch, memory_per_seed
from .._solve.progress import compile_notice
from .._algorithms.algorithms import AbstractAlgorithm
from .._problem.readouts import Committee
from .._problem.problem import Problem
from .._results.results import AbstractOutcome, Result
from .seeds import check_inputs, run_seeds, summarise
from .._algorithms.updates import updated

OBSERVABLES = ("m", "q", "eps_gen", "test_error", "train_loss", "train_acc")


@dataclasses.dataclass(frozen=True)
class SimulationConfig:
    """The static sizes of a simulation (``n = round(alpha d)`` samples, ``K`` units, ``T``
    steps, seeds ``batch_size`` at a time); hashable, so that it can be a compiled program's
    static part."""

    d: int
    n: int
    n_seeds: int
    n_test: int
    n_steps: int
    batch_size: int
    dtype: str
    K: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __getitem__(self, name):  # read like the former dict configuration
        return getattr(self, name)


class Simulation(AbstractOutcome):
    """Seed means and standard errors of the finite-``d`` observables, indexed by step, for a
    single unit and for a committee of ``K`` units alike.

    ``test_error`` is measured on ``n_test`` held-out samples. A single unit: ``m``,
    ``q = |w|^2 / d`` ``(T+1,)``, and ``eps_gen``, the analytic error of a fresh sample given
    ``(m, q)`` (exact at finite ``d`` for the given ``w``). A committee: ``m`` ``(T+1, K)`` and
    ``q`` (also read as ``Q``) ``= W W^T / d`` ``(T+1, K, K)``, no ``eps_gen`` (``None``; its
    test error is ``test_error``). ``runs[name]`` holds the per-seed curves
    ``(n_seeds, T+1, ...)``. ``result`` says whether every seed stayed finite and bounded (as
    for :class:`~dmft_jax.Solution`).
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
        names = tuple(n for n in self.base_arrays if getattr(self, n, True) is not None)
        return names + (("bias", "bias_se") if self.bias is not None else ())

    @property
    def Q(self):
        """A committee's overlaps ``W W^T / d``: ``q`` under its committee name."""
        return self.q

    @property
    def Q_se(self):
        return self.q_se

    @property
    def K(self) -> int:
        """The number of units (1 for a single unit)."""
        return self.config.K


    def save(self, path, *, overwrite: bool = False):
        """Write ``<path>.npz`` and ``<path>.json`` (see :func:`dmft_jax._results.io.save`)."""
        from .._results.io import save

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
        net, readout, m0, base = problem, problem.readout, problem.m0, problem.problem
    elif isinstance(problem, Problem):  # one unit: K = 1, its read-out the model's phi
        net, readout, m0, base = problem, None, problem.m0[None], problem
    else:
        raise ValueError(f"problem must be a dmft_jax.Problem or a dmft_jax.Committee; got {type(problem).__name__}")
    T, d, n_seeds, n_test, n, key, dtype, progress_meter = check_inputs(
        base, algorithm, t_max, d, n_seeds, n_test, n_steps, key, dtype, progress_meter)
    K = m0.shape[0]
    per_seed = memory_per_seed(d, n, n_test, T, dtype.itemsize) + dtype.itemsize * (2 * (K - 1) * d + 2 * K * n)
    batch_size = fit_batch(batch_size, n_seeds, per_seed)
    config = SimulationConfig(d=int(d), n=n, n_seeds=int(n_seeds), n_test=int(n_test), n_steps=T,
                              batch_size=int(batch_size), dtype=str(dtype), K=K)
    keys = jax.random.split(key[0], n_seeds)
    units = f", K = {K}" if readout is not None else ""
    # the seed is data, not part of the compiled program: a new seed must not recompile
    with compile_notice(progress_meter, f"the simulation for d = {d}{units}, T = {T}"):
        runs = run_seeds(_one_seed, (base.astype(dtype), cast_tree(readout, dtype),
                                     jnp.asarray(m0, dtype)), cast_tree(algorithm, dtype), keys, config,
                         progress_meter)
    norms = jnp.diagonal(runs["Q"], axis1=-2, axis2=-1)  # |w_a|^2 / d per seed, step and unit
    common = dict(seed=jnp.asarray(key[1]), problem=net, algorithm=algorithm, config=config)
    runs = {("q" if name == "Q" else name): x for name, x in runs.items()}
    if readout is None:  # a single unit: its curves without the unit axes
        runs = {name: x[..., 0] if name in ("m", "bias") else x for name, x in runs.items()} | {"q": norms[..., 0]}
    names = tuple(n for n in OBSERVABLES if n in runs) + (("bias",) if "bias" in runs else ())
    result, stats, t = summarise(runs, names, norms, algorithm, T, dtype)
    if readout is not None:
        stats.update(eps_gen=None, eps_gen_se=None)
    return Simulation(t=t, runs=runs, result=result, **common, **stats)


def _one_seed(network, algorithm, key, config):
    """One seed, for ``K >= 1`` units: ``network`` is ``(problem, readout, m0)``, the read-out
    ``None`` for a single unit (its output is the model's ``phi`` of the one field). The rows
    of ``W`` are the units; ``K = 1`` draws the numbers of a single unit (``(1, d)`` normals are
    the ``(d,)`` ones). A learnable bias ``b`` (one per unit) shifts the fields, ``r -> r + b``.
    Returns the curves ``m`` ``(T+1, K)``, ``Q`` ``(T+1, K, K)``, the test error, training loss
    and accuracy (and ``eps_gen``, ``bias`` for a single unit)."""
    problem, readout, m0 = network
    model = problem.model
    d, n, n_test, T, K = config.d, config.n, config.n_test, config.n_steps, config.K
    dtype = problem.alpha.dtype
    kv, kc, kz, kw, ks, kct, kzt = jax.random.split(key, 7)
    sqd = jnp.sqrt(jnp.asarray(d, dtype))
    v = model.teacher(kv, d, dtype)
    X, y = model.data((kc, kz), v, n, problem.delta, dtype)
    X_test, y_test = model.test_data((kct, kzt), v, n_test, problem.delta, dtype)
    vv = v @ v
    Z = jnp.sqrt(problem.R0) * jax.random.normal(kw, (K, d), dtype)
    # each row: the prescribed overlap m0_a along v exactly, isotropic with variance R0 across it
    W0 = Z - jnp.outer(Z @ v / vv, v) + jnp.outer(m0 * d / vv, v)
    b0, p_on, p_off = selection.law(algorithm, T, dtype)
    # the selection chains stepped in the loop (the paths of draw_paths, without a (T + 1) x n array)
    chain0, sel_keys = selection.chain_start(ks, b0, n)
    lam = problem.lam
    steps = algorithm.step_sizes(T, dtype)
    output = (lambda r: model.phi(r[..., 0])) if readout is None else readout

    def sample_loss(yy, r):  # Lambda(y, r) = ell(y f(r)) (or ell(f(r) - y)) for fields r (..., K)
        return problem.loss(model.loss_argument(yy, output(r)))

    def fields(W, b, X):
        r = X @ W.T / sqd
        return r if b is None else r + b

    def observe(W, b, r):
        m, Q = W @ v / d, W @ W.T / d
        out = dict(m=m, Q=Q, test_error=model.test_error(y_test, output(fields(W, b, X_test))),
                   train_loss=problem.alpha * jnp.mean(sample_loss(y, r)),
                   train_acc=jnp.mean((y * output(r) > 0).astype(dtype)))
        if readout is None:  # a single unit: the error of a fresh sample at (m, q), exact at finite d
            out["eps_gen"] = problem.eps_gen(m[0], Q[0, 0], None if b is None else b[0])
        return out | ({} if b is None else {"bias": b})

    grad_r = jax.grad(lambda r: jnp.sum(sample_loss(y, r)))
    update, temperature = algorithm.two_step(), algorithm.temperature
    k_langevin = jax.random.fold_in(key, 0x1A6E)  # the other draws do not depend on the Langevin term

    def step(carry, x):
        (W, W_prev, W_incr), (b, b_prev, b_incr), chain = carry
        eta, k, p_on_k, p_off_k = x
        s_k = chain.s.astype(dtype)
        r = fields(W, b, X)  # (n, K)
        obs = observe(W, b, r)
        force = s_k[:, None] * grad_r(r)
        W_next = W - eta * (lam * W + force.T @ X / sqd)
        b_next = None if b is None else b - eta * jnp.sum(force, axis=0) / d  # one coordinate's rate, no ridge
        if temperature is not None:  # Langevin noise (on W only), part of the step's increment
            W_next = W_next + jnp.sqrt(2.0 * eta * temperature) * jax.random.normal(
                jax.random.fold_in(k_langevin, k), (K, d), dtype)
        # momentum: the update rule's two-step form, W_{-1} = W_0 (the bias too)
        W_next, W_incr = updated(update, W_next, W, W_prev, W_incr)
        if b is not None:
            b_next, b_incr = updated(update, b_next, b, b_prev, b_incr)
        return ((W_next, W, W_incr), (b_next, b, b_incr), selection.chain_step(chain, sel_keys, p_on_k, p_off_k)), obs

    bias = problem.bias
    bias = None if bias is None else jnp.broadcast_to(bias, (K,))
    zero = lambda x: None if x is None else jnp.zeros_like(x)
    ((W_T, _, _), (b_T, _, _), _), obs = lax.scan(step, ((W0, W0, zero(W0)), (bias, bias, zero(bias)), chain0),
                                                  (steps, jnp.arange(T), p_on, p_off))
    last = observe(W_T, b_T, fields(W_T, b_T, X))
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]]), obs, last)
