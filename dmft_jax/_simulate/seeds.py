"""What the finite-``d`` simulators share: seeds run in vmapped groups, and the seed means,
standard errors and outcome of their curves."""
from __future__ import annotations

import warnings

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _validate
from .._util import as_dtype, as_key, seed_of
from .._algorithms.algorithms import AbstractAlgorithm
from .._solve.progress import AbstractProgressMeter, NoProgressMeter
from .._results.results import DIVERGENCE_FACTOR, RESULTS, Result
from .._engine.timegrid import count_steps


def check_inputs(problem, algorithm, t_max, d, n_seeds, n_test, n_steps, key, dtype, progress_meter):
    """The options of a simulation, checked (``problem`` is the :class:`~dmft_jax.Problem` whose
    scalars are used): returns ``T, d, n_seeds, n_test, n, (key, seed), dtype, progress_meter``."""
    progress_meter = NoProgressMeter() if progress_meter is None else progress_meter
    if not isinstance(progress_meter, AbstractProgressMeter):
        raise ValueError(f"progress_meter must be a dmft_jax.AbstractProgressMeter; got {progress_meter!r}")
    if not isinstance(algorithm, AbstractAlgorithm):
        raise ValueError(f"algorithm must be GD, SGD, PersistentSGD or a subclass of dmft_jax.AbstractAlgorithm; "
                         f"got {type(algorithm).__name__}")
    _validate.scalar_fields(problem, algorithm)
    _validate.recheck(problem, algorithm)  # values set by eqx.tree_at skipped the construction checks
    T = count_steps(algorithm, t_max, n_steps)
    d = _validate.integer("d", d, 2)
    n_seeds = _validate.integer("n_seeds", n_seeds, 1)
    n_test = _validate.integer("n_test", n_test, 1)
    key = as_key(key), seed_of(key)
    n = int(round(float(problem.alpha) * d))
    if n < 1:
        raise ValueError(f"alpha * d must give at least one sample; got alpha={float(problem.alpha)}, d={d}")
    return T, d, n_seeds, n_test, n, key, as_dtype(dtype), progress_meter


@eqx.filter_jit
def run_seeds(one_seed, problem, algorithm, keys, config, meter):
    """``one_seed(problem, algorithm, key, config)`` for every key, ``config.batch_size`` seeds at
    a time (``jax.lax.map`` in vmapped groups); ``meter`` counts the finished seeds."""
    def run(x):
        i, k = x
        out = one_seed(problem, algorithm, k, config)
        meter.step(i, config.n_seeds)
        return out

    return lax.map(run, (jnp.arange(config.n_seeds), keys), batch_size=config.batch_size)


def summarise(runs: dict, names, size, algorithm, n_steps: int, dtype):
    """``(result, stats, t)``: the outcome (every seed finite, and ``size``, the per-seed squared
    norms ``(seeds, T+1, ...)``, bounded; a warning otherwise), the seed mean and standard error
    of every curve in ``names`` (``name`` and ``name + "_se"``), and the times."""
    finite = all(bool(jnp.all(jnp.isfinite(runs[n]))) for n in ("m", "train_loss")) \
        and bool(jnp.all(jnp.isfinite(size)))
    exploding = bool(jnp.any(jnp.abs(size) > DIVERGENCE_FACTOR * (1 + jnp.abs(size[:, :1]))))
    result = Result.of(RESULTS.nonfinite if not finite else RESULTS.diverged if exploding else RESULTS.successful)
    if not result.ok:
        warnings.warn(f"dmft_jax.simulate: {result.message}", RuntimeWarning, stacklevel=3)
    stats = {}
    for name in names:
        x = runs[name]
        n_seeds = x.shape[0]
        stats[name] = jnp.mean(x, axis=0)
        stats[name + "_se"] = (jnp.std(x, axis=0, ddof=1) / np.sqrt(n_seeds)
                               if n_seeds > 1 else jnp.full_like(x[0], jnp.nan))
    steps = algorithm.step_sizes(n_steps, dtype)
    t = jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(steps)])
    return result, stats, t
