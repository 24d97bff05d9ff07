"""``solve``: the DMFT of section 2 by one causal forward sweep in time.

Why a sweep: every kernel at step ``k`` is an average over trajectories advanced with
kernels of steps ``< k`` only, so the self-consistent solution of the discrete scheme is
obtained exactly in one pass (``lax.scan`` over ``k``): evaluate the trajectories at ``k``,
form kernel row ``k``, extend the causal Cholesky factor of the noise covariance
``Delta M_C`` by one row, advance ``u``, ``chi`` and ``m``. The damped fixed-point
iteration over whole trajectories (``method="iteration"``) reaches the same answer with
common random numbers at ~30x the cost; it is kept as a cross-check.

Cost and accuracy knobs:

- ``n_traj`` (N): trajectories for ``lam_hat``, ``mu``, ``M_C`` and the observables. The
  Monte Carlo error of these is ``O(1/sqrt(N))``; ~1e5 trajectories are needed for curves
  whose noise is below the finite-size effects of ``d ~ 1000`` simulations.
- ``n_chi`` (N_chi <= N): trajectories on which the exact per-trajectory response ``chi``
  (``O(N_chi T^2)`` memory, ``O(N_chi T^3)`` time) is propagated to estimate ``M_R``. The
  error of ``M_R`` falls like ``1/sqrt(N_chi)``; since ``M_R`` enters the dynamics only
  through a memory integral, ``N_chi ~ N/10`` typically gives errors well below those of
  the other kernels (equations page 2.6: 16000 of 200000 sufficed). The default is
  ``min(N, 4096)``.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import _validate, process, weights
from .response import ExactResponse, ProbeResponse, Response, _pad_to, as_response
from .algorithms import Algorithm
from .losses import Hinge
from .problem import Problem

SUCCESS, NONFINITE, MAX_ITER, DIVERGED = 0, 1, 2, 3
# q = C(t, t) above this multiple of 1 + q(0) counts as diverged (finite but exploding)
DIVERGENCE_FACTOR = 1e12
MESSAGES = {
    SUCCESS: "success",
    NONFINITE: "the solve produced non-finite values (diverging dynamics: try a smaller eta, "
    "a larger n_traj, or float64)",
    MAX_ITER: "the damped fixed-point iteration did not converge within max_iter iterations",
    DIVERGED: "the dynamics diverged (q = C(t,t) grew beyond 1e12 (1 + q(0)); try a smaller eta)",
}


class Solution(eqx.Module):
    """Result of :func:`solve`. Arrays are indexed by the time step ``k = 0..T``.

    ``C``, ``C_perp``, ``R``, ``M_C``, ``M_R`` are ``(T+1, T+1)``; ``q = diag(C)``.
    ``status`` is 0 on success (see :attr:`message`); ``n_clipped`` counts noise-factor
    pivots clipped to zero, ``n_negative`` those among them that were negative beyond the
    rounding floor (a float32 solve warns about them: float64 keeps that accuracy); ``n_iter`` is the number of fixed-point iterations (0 for the
    sweep). ``trajectories`` holds ``u``, ``g``, ``r`` of the first ``save_trajectories``
    trajectories (time first) when requested, else ``None``.
    """

    t: Any
    m: Any
    q: Any
    C: Any
    C_perp: Any
    R: Any
    P: Any
    eps_gen: Any
    train_loss: Any
    train_acc: Any
    lam_hat: Any
    mu: Any
    M_C: Any
    M_R: Any
    status: Any
    n_clipped: Any
    n_negative: Any
    n_iter: Any
    problem: Problem
    algorithm: Algorithm
    config: dict = eqx.field(static=True)
    trajectories: Any = None

    @property
    def message(self) -> str:
        st = np.asarray(self.status)
        if st.ndim == 0:
            return MESSAGES[int(st)]
        return "; ".join(f"{MESSAGES[int(v)]}: {int((st == v).sum())} points" for v in np.unique(st))

    @property
    def ok(self):
        return np.asarray(self.status) == SUCCESS

    def save(self, path):
        from . import io

        return io.save(self, path)

    def plot(self, simulation=None, **kwargs):
        from . import plot

        return plot.compare(self, simulation, **kwargs)


def n_steps_for(algorithm, t_max, n_steps=None) -> int:
    """Number of steps ``T`` (see :func:`_n_steps`); a batch-fraction schedule is validated
    over those steps."""
    from .schedules import Schedule

    T = _n_steps(algorithm, t_max, n_steps)
    if isinstance(getattr(algorithm, "b", None), Schedule):
        algorithm.check_steps(algorithm.step_sizes(T))
    return T


def _n_steps(algorithm, t_max, n_steps=None) -> int:
    """Number of steps ``T``: the first ``T`` with ``sum_{k<T} eta_k >= t_max`` (within 1e-9;
    ``floor(t_max / eta)`` for constant ``eta``). Needs concrete step sizes unless
    ``n_steps`` is given. Also validates the steps against the algorithm's constraints."""
    from .schedules import Schedule

    if n_steps is not None:
        if int(n_steps) < 1:
            raise ValueError(f"n_steps must be >= 1; got {n_steps}")
        n_steps = int(n_steps)
        if isinstance(algorithm.eta, Schedule):
            _check_schedule(algorithm, n_steps)
        return n_steps
    _validate.positive("t_max", t_max)
    if isinstance(algorithm.eta, Schedule):
        n = 1024
        while True:
            steps = _check_schedule(algorithm, n)
            if steps is None:
                raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
            t = np.cumsum(steps)
            hit = np.nonzero(t >= float(t_max) * (1 - 1e-9))[0]
            if hit.size:
                return int(hit[0]) + 1
            if n > 2**22:
                raise ValueError(f"t_max: the schedule does not reach t_max = {t_max} within {n} steps")
            n *= 4
    if not _validate.is_concrete(algorithm.eta):
        raise ValueError("eta is traced (inside jit/vmap/grad): pass n_steps explicitly")
    eta = np.asarray(algorithm.eta, dtype=float)
    if eta.ndim:
        raise ValueError("eta is an array: pass n_steps explicitly for a batch of learning rates")
    _validate.check("t_max", t_max, lambda a: a >= eta * (1 - 1e-9), f"t_max >= eta = {float(eta):g}")
    return int(np.floor(float(t_max) / float(eta) + 1e-9))


def _check_schedule(algorithm, n_steps):
    """Concrete step sizes of a schedule, validated (positive, finite, within tau); None if traced."""
    steps = algorithm.step_sizes(n_steps)
    if not _validate.is_concrete(steps):
        return None
    steps = np.asarray(steps, dtype=float)
    _validate.check("eta", steps, lambda a: a > 0, "eta_k > 0 at every step of the schedule")
    algorithm.check_steps(steps)
    return steps


def memory_estimate(n_steps: int, n_traj: int, n_chi=None, dtype="float64", response=None,
                    time_blocks=None) -> int:
    """Peak bytes of one forward sweep (see docs/memory.md), with ``S = T + 1``, ``b`` the
    bytes per number (8 in float64, 4 in float32):

    ``b (R + 6 S N + 12 S^2 + 16 N)``

    where ``R`` is the response estimator's peak in numbers: for :class:`ExactResponse` the
    stored lower triangle of ``chi``, ``n_chi sum_c (S - e_c) w_c`` over the column blocks
    of the sweep's time blocks (``S (S - 1) n_chi`` for one block, about ``0.6 S^2 n_chi``
    for six); for :class:`ProbeResponse` on ``n`` trajectories ``2 (2 n_probes S n + n)``
    (the probe histories and their copy while a time block grows them). ``6 S N`` are the
    histories of ``u``, ``g``, ``zeta``, ``s`` and the transients of drawing them; ``12 S^2``
    the kernels, ``R``, ``C`` and the noise factor. Compared with XLA's own buffer analysis
    it is within a factor 0.7-2 (tests/test_scale.py). ``n_chi`` alone means
    ``ExactResponse(n_chi)``; ``time_blocks`` defaults to the solve's (:func:`auto_time_blocks`).
    A ``vmap`` over ``B`` points needs ``B`` times this."""
    item = jnp.dtype(dtype).itemsize
    est = as_response(response, n_chi).resolve(n_steps, n_traj, item)
    blocks = auto_time_blocks(n_steps) if time_blocks is None else int(time_blocks)
    size = n_steps + 1
    hist = 6 * size * n_traj
    return int(item * (est.peak_numbers(time_blocks_edges(n_steps, blocks)) + hist + 12 * size * size
                       + 16 * n_traj))


def _check_memory(n_steps, n_traj, est, dtype, batch=1, time_blocks=None):
    need = batch * memory_estimate(n_steps, n_traj, dtype=dtype, response=est, time_blocks=time_blocks)
    try:
        dev = jax.devices()[0]
        stats = dev.memory_stats() if dev.platform != "cpu" else None
        avail = stats["bytes_limit"] if stats else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, KeyError, AttributeError, TypeError):
        return
    if need > 0.9 * avail:
        raise ValueError(
            f"n_chi/n_traj: this solve{f' ({batch} points)' if batch > 1 else ''} needs about {need / 2**30:.1f} GiB (memory_estimate) but the "
            f"device has {avail / 2**30:.1f} GiB; reduce n_chi (response memory (T+1)^2 n_chi), "
            "use ProbeResponse (memory n_probes (T+1) N), or reduce n_traj or t_max/eta"
        )


def as_key(key):
    if isinstance(key, (int, np.integer)):
        return jax.random.PRNGKey(int(key))
    return key


def _check_solver_problem(problem, algorithm):
    if not isinstance(problem, Problem):
        raise ValueError(f"problem must be a dmft_jax.Problem; got {type(problem).__name__}")
    if not isinstance(algorithm, Algorithm):
        raise ValueError(f"algorithm must be GD, SGD or PersistentSGD; got {type(algorithm).__name__}")
    if not problem.loss.twice_differentiable:
        raise ValueError(
            f"loss: {type(problem.loss).__name__} is not twice differentiable; the DMFT needs "
            "Lambda'' and its kink would be missed by pathwise derivatives. Use "
            "dmft_jax.SmoothHinge(beta) (hinge as beta -> infinity) for the solver; "
            "dmft_jax.simulate accepts the plain hinge." if isinstance(problem.loss, Hinge) else
            f"loss: {type(problem.loss).__name__} is not twice differentiable"
        )


def solve(
    problem: Problem,
    algorithm: Algorithm,
    t_max: float = 20.0,
    n_traj: int = 2**15,
    key=0,
    *,
    n_chi: int | None = None,
    response: Response | None = None,
    n_steps: int | None = None,
    antithetic: bool = True,
    method: str = "sweep",
    damping: float = 0.5,
    max_iter: int = 500,
    rtol: float = 1e-9,
    atol: float = 1e-12,
    pivot_rtol: float | None = None,
    dtype=None,
    throw: bool = False,
    save_trajectories: int = 0,
    time_blocks: int | None = None,
    progress: bool = False,
    devices=None,
    adjoint: bool = False,
) -> Solution:
    """Solve the DMFT of ``problem`` trained by ``algorithm`` up to ``t_max``.

    Parameters
    ----------
    problem, algorithm : the learning problem and the training algorithm.
    t_max : final time; ``T = floor(t_max / eta)`` steps of ``dt = eta`` (with a schedule,
        the first ``T`` whose steps add up to ``t_max``).
    n_traj : Monte Carlo trajectories ``N`` (even when ``antithetic``).
    key : ``int`` seed or ``jax.random`` key. The same key gives the same result.
    n_chi : trajectories carrying the exact response ``chi`` (default ``min(N, 4096)``);
        memory ``8 (T+1)^2 n_chi`` bytes in float64. Shorthand for
        ``response=ExactResponse(n_chi)``.
    response : estimator of ``M_R`` (:mod:`dmft_jax.response`): ``ExactResponse(n_chi,
        max_memory)`` (default) or ``ProbeResponse(n_probes)`` (randomized probing,
        ``O(n_probes N T)`` memory).
    n_steps : number of steps, required when ``eta`` is traced (inside jit/vmap/grad).
    antithetic : pair trajectories with opposite Gaussian noise (default on).
    method : ``"sweep"`` (exact causal sweep) or ``"iteration"`` (damped fixed point with
        common random numbers; ``damping``, ``max_iter``, ``rtol``, ``atol``).
    pivot_rtol : relative floor below which Cholesky pivots of ``Delta M_C`` are treated as
        zero (default 1e-7 in float64, 1e-4 in float32).
    dtype : working dtype (default: JAX's default float, float64 if x64 is enabled).
    throw : raise ``RuntimeError`` when the status is not success (otherwise a warning is
        emitted for concrete results and the status is returned as data).
    save_trajectories : keep ``u``, ``g``, ``r`` histories of this many trajectories.
    time_blocks : number of time blocks of the sweep (default :func:`auto_time_blocks`);
        more blocks read less history per step (triangular structure) but compile longer.
        Results are identical for any value.
    progress : print a progress line to stderr while the sweep runs (a ``jax.debug``
        callback: works under ``jit`` and ``vmap``; off by default, on in the CLI).
    adjoint : reverse-mode derivatives (``jax.grad``, ``jax.vjp``) by the hand-written
        adjoint of the sweep (:mod:`dmft_jax.adjoint`): the same gradient as plain
        autodiff, at a fraction of its cost and memory. Forward mode (``jax.jvp``,
        ``jacfwd``) is then unavailable; the forward values are unchanged.
    devices : shard the trajectories over several devices: ``"all"`` (every device of
        ``jax.devices()``) or a list of devices; default one device. Every trajectory
        array (histories, response, random numbers) is split along its trajectory axis and
        the kernel averages become all-reduces (``jax.sharding`` / GSPMD); results equal the
        single-device solve to rounding. Multi-host: call ``jax.distributed.initialize()``
        first, then ``devices="all"`` spans the hosts.
    """
    config = configure(
        problem, algorithm, t_max, n_traj, key, n_chi=n_chi, response=response, n_steps=n_steps,
        antithetic=antithetic, method=method, damping=damping, max_iter=max_iter, rtol=rtol, atol=atol,
        pivot_rtol=pivot_rtol, dtype=dtype, save_trajectories=save_trajectories,
        time_blocks=time_blocks, progress=progress, devices=devices, adjoint=adjoint)
    dtype = jnp.dtype(config["dtype"])
    sol = _solve_jit(problem.astype(dtype), _cast(algorithm, dtype), as_key(key), _static(config))
    return _finish(_with_config(sol, config), throw)


def _static(config):
    """The part of ``config`` the compiled program depends on (not the seed: a new seed
    must not recompile)."""
    return _Frozen({k: v for k, v in config.items() if k != "seed"})


def _with_config(sol, config):
    import dataclasses

    return dataclasses.replace(sol, config=_Frozen(config))


def configure(problem, algorithm, t_max, n_traj, key, *, n_chi=None, response=None, n_steps=None,
              antithetic=True, method="sweep", damping=0.5, max_iter=500, rtol=1e-9, atol=1e-12,
              pivot_rtol=None, dtype=None, save_trajectories=0, time_blocks=None, progress=False,
              devices=None, adjoint=False, batch=1) -> dict:
    """Validate the options of :func:`solve` and return the static ``config`` of the jitted
    core (``batch`` points are checked against the device memory together)."""
    _check_solver_problem(problem, algorithm)
    T = n_steps_for(algorithm, t_max, n_steps)
    if int(n_traj) != n_traj or n_traj < 2:
        raise ValueError(f"n_traj must be an integer >= 2; got {n_traj}")
    n_traj = int(n_traj)
    if antithetic and n_traj % 2:
        raise ValueError(f"n_traj must be even when antithetic=True; got {n_traj}")
    if method not in ("sweep", "iteration"):
        raise ValueError(f"method must be 'sweep' or 'iteration'; got {method!r}")
    if not 0 < damping <= 1:
        raise ValueError(f"damping must satisfy 0 < damping <= 1; got {damping}")
    if not 0 <= save_trajectories <= n_traj:
        raise ValueError(f"save_trajectories must be in [0, n_traj]; got {save_trajectories}")
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype; got {dtype}")
    est = as_response(response, n_chi).resolve(T, n_traj, dtype.itemsize)
    time_blocks = int(time_blocks) if time_blocks is not None else auto_time_blocks(T)
    _check_memory(T, n_traj, est, dtype, batch, time_blocks)
    if pivot_rtol is None:
        pivot_rtol = 1e-7 if dtype == jnp.float64 else 1e-4

    config = dict(
        n_steps=T, n_traj=n_traj, n_chi=est.n_chi if isinstance(est, ExactResponse) else 0,
        response=est, antithetic=bool(antithetic), method=method,
        damping=float(damping), max_iter=int(max_iter), rtol=float(rtol), atol=float(atol),
        pivot_rtol=float(pivot_rtol), dtype=str(dtype), save_trajectories=int(save_trajectories),
        time_blocks=time_blocks,
        progress=bool(progress), devices=_device_ids(devices), adjoint=bool(adjoint),
    )
    if adjoint and (method != "sweep" or not isinstance(est, ExactResponse) or config["devices"]):
        raise ValueError("adjoint=True supports method='sweep' with ExactResponse on one device; "
                         "use adjoint=False (plain autodiff) otherwise")
    if config["time_blocks"] < 1:
        raise ValueError(f"time_blocks must be >= 1; got {time_blocks}")
    if isinstance(key, (int, np.integer)):
        config["seed"] = int(key)
    return config


def _cast(tree, dtype):
    from .problem import _cast_leaf

    return jax.tree_util.tree_map(lambda x: _cast_leaf(x, dtype), tree)


def _finish(sol: Solution, throw: bool) -> Solution:
    if (_validate.is_concrete(sol.n_negative) and sol.m.dtype == jnp.float32
            and np.any(np.asarray(sol.n_negative) > 0)):
        warnings.warn(
            f"dmft_jax.solve: float32 lost positive definiteness of the noise covariance: "
            f"{int(np.max(np.asarray(sol.n_negative)))} Cholesky pivots of Delta M_C came out "
            "negative beyond the rounding floor and were clipped; float64 keeps this accuracy "
            "(jax.config.update('jax_enable_x64', True) and dtype=float64)",
            RuntimeWarning, stacklevel=3)
    if _validate.is_concrete(sol.status):
        if np.any(np.asarray(sol.status) != SUCCESS):
            if throw:
                raise RuntimeError(f"dmft_jax.solve: {sol.message}")
            warnings.warn(f"dmft_jax.solve: {sol.message}", RuntimeWarning, stacklevel=3)
        return sol
    if throw:
        sol = eqx.tree_at(lambda s: s.status, sol,
                          eqx.error_if(sol.status, sol.status != SUCCESS, "dmft_jax.solve failed"))
    return sol


@eqx.filter_jit
def _solve_jit(problem, algorithm, key, config):
    return solve_traced(problem, algorithm, key, config)


def solve_traced(problem, algorithm, key, config) -> Solution:
    """The jittable core of :func:`solve` (no validation; ``config`` from :func:`solve`)."""
    T = config["n_steps"]
    est = config.get("response") or ExactResponse(config["n_chi"])
    dtype = problem.alpha.dtype
    key_probe = jax.random.fold_in(key, 0x5EED)  # probes only: the other draws keep the key
    rnd = process.draw(key, problem, algorithm, T, config["n_traj"], config["antithetic"], dtype)
    shard = _sharder(config.get("devices"))
    rnd = shard(rnd)
    dts = rnd.dts
    if config.get("adjoint"):
        from . import adjoint

        run = adjoint.sweep(problem, rnd, T, est, config["pivot_rtol"], config.get("time_blocks", 1))
        run = run[:3] + (lax.stop_gradient(run[3]),)  # trajectories are not differentiated
        n_iter, converged = jnp.asarray(0), jnp.asarray(True)
    elif config["method"] == "sweep":
        run = _sweep(problem, rnd, T, est, key_probe, config["pivot_rtol"], config.get("time_blocks", 1),
                     config.get("progress", False), shard)
        n_iter, converged = jnp.asarray(0), jnp.asarray(True)
    else:
        run, n_iter, converged = _iterate(problem, rnd, T, est, key_probe, config)
    rows, m, pivots, state = run
    n_clipped = jnp.sum(pivots <= 0)
    n_negative = jnp.sum(pivots < 0)

    R, P = weights.response(problem.lam, rows.lam_hat, rows.M_R, dts)
    C_perp = weights.correlation(R, P, rows.M_C, problem.R0, dts)
    C = jnp.outer(m, m) + C_perp
    q = jnp.diagonal(C)
    eps_gen = problem.eps_gen(m, q)

    fields = dict(m=m, C=C, R=R, eps_gen=eps_gen, train_loss=rows.train_loss,
                  train_acc=rows.train_acc, lam_hat=rows.lam_hat, mu=rows.mu, M_C=rows.M_C, M_R=rows.M_R)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fields.values()]))
    exploding = jnp.max(jnp.abs(q)) > DIVERGENCE_FACTOR * (1 + jnp.abs(q[0]))
    status = jnp.where(finite, jnp.where(exploding, DIVERGED, jnp.where(converged, SUCCESS, MAX_ITER)),
                       NONFINITE)

    traj = None
    n_save = config["save_trajectories"]
    if n_save:
        r = m[:, None] * (rnd.c + jnp.sqrt(problem.delta) * rnd.h0)[None, :n_save] + state.u[:, :n_save]
        traj = dict(u=state.u[:, :n_save], g=state.g[:, :n_save], r=r, s=rnd.s[:, :n_save],
                    c=rnd.c[:n_save], y=rnd.y[:n_save])
    return Solution(
        t=jnp.concatenate([jnp.zeros(1, dtype), jnp.cumsum(dts[:-1])]), q=q, C_perp=C_perp, P=P, status=status,
        n_clipped=n_clipped, n_negative=n_negative, n_iter=n_iter, problem=problem, algorithm=algorithm,
        config=_Frozen(config), trajectories=traj, **fields,
    )


def _device_ids(devices):
    """Validate ``devices`` and return the ids of the devices to shard over (None: one device)."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices must be None, 'all' or a list of jax devices; got {devices!r}")
        devices = available
    devices = list(devices)
    ids = {d.id for d in available}
    if not devices or any(getattr(d, "id", None) not in ids for d in devices):
        raise ValueError(f"devices must be a non-empty list of jax.devices() (available: {available}); got {devices}")
    return None if len(devices) == 1 else tuple(d.id for d in devices)


# Trajectory axis of every per-trajectory array (counted from the end: all are last).
_TRAJ_FIELDS_RND = ("c", "y", "h0", "s", "u0", "zeta", "log_p0")


def _sharder(device_ids):
    """A function that places the trajectory axis (last) of the randomness and of the state
    on a 1-d device mesh; identity for one device."""
    if device_ids is None:
        return lambda tree: tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    by_id = {d.id: d for d in jax.devices()}
    mesh = Mesh(np.array([by_id[i] for i in device_ids]), ("traj",))

    def put(x):
        spec = PartitionSpec(*([None] * (x.ndim - 1) + ["traj"]))
        return lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    def shard(tree):
        if isinstance(tree, process.Randomness):
            return eqx.tree_at(lambda r: [getattr(r, f) for f in _TRAJ_FIELDS_RND], tree,
                               [put(getattr(tree, f)) for f in _TRAJ_FIELDS_RND])
        # State: every array leaf has the trajectory axis last
        return jax.tree_util.tree_map(lambda x: put(x) if x.ndim >= 1 else x, tree)

    return shard


class _Frozen(dict):
    """A hashable dict (static pytree metadata)."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))


def _stack_rows(rows_scan, row_last):
    """Append the last row (step T) to the scanned rows (steps 0..T-1)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[None]], axis=0), rows_scan, row_last)


def _public_row(row: process.Row) -> process.Row:
    # per-trajectory parts are not kept in the stacked output
    return eqx.tree_at(lambda r: (r.sl2, r.g_k), row, (None, None), is_leaf=lambda x: x is None)


def time_blocks_edges(T: int, n_blocks: int) -> list[int]:
    """Step boundaries ``0 = e_0 < ... < e_B = T`` of ``n_blocks`` near-equal time blocks."""
    return sorted(set(int(round(x)) for x in np.linspace(0, T, max(1, min(n_blocks, T)) + 1)))


def auto_time_blocks(T: int) -> int:
    """Blocks used by default: one for short horizons (compile time dominates), else about
    one per 32 steps, at most 8 (history traffic ~ (B+1)(2B+1)/(6B^2) of the unblocked, the
    response's ~(B+2)/(2B+2) of that). Each block compiles its own loop body, with one
    response product per column block: at T = 100 on 2 CPU cores, 3 blocks compile in ~8 s
    and 6 in ~12 s, for 0.76 s and 0.61 s per solve at N = N_chi = 4096 (and 68 ms against
    89 ms at N_chi = 256)."""
    return 1 if T < 64 else min(8, T // 32)


def _progress(k, total):
    """Host side of the progress display (called from inside jit/vmap)."""
    k = int(np.max(np.asarray(k)))
    every = max(1, total // 20)
    if k % every == 0 or k == total - 1:
        done = (k + 1) / total
        bar = "#" * int(30 * done)
        end = "\n" if k == total - 1 else ""
        print(f"\r[dmft-jax] sweep {bar:<30} {k + 1}/{total} steps", end=end, file=sys.stderr, flush=True)


def _sweep(problem, rnd, T, est, key_probe, pivot_rtol, n_blocks=1, progress=False, shard=lambda x: x,
           return_factor=False):
    """Causal forward sweep. Time is cut into blocks; in a block ending at step ``e`` all
    histories (``u``, ``g``, ``chi``, noise factor) are held at size ``e + 1`` only, so a
    step reads the ``O(k)`` (``O(k^2)`` for ``chi``) entries it needs instead of the full
    ``T + 1`` (triangular structure); arrays grow by zero padding between blocks."""
    edges = time_blocks_edges(T, n_blocks)
    dtype = rnd.u0.dtype
    lam = problem.lam
    size = T + 1

    def body(carry, k, rnd_b):
        if progress:
            jax.debug.callback(_progress, k, T)
        state, m_k, Lmod, ok = carry
        state, row = process.kernel_row(problem, rnd_b, state, k, m_k, est)
        L_k, Lmod, ok = process.noise_row(Lmod, ok, problem.delta * row.M_C, k, pivot_rtol)
        state = process.advance(problem, rnd_b, state, k, row.lam_hat, row.M_R, L_k, row, est)
        m_next = m_k - rnd.dts[k] * (lam * m_k + row.mu)
        return (state, m_next, Lmod, ok), (m_k, _public_row(row))

    s0 = edges[1] + 1
    full = shard(process.init_state(problem, rnd, T, est, key_probe))
    state = eqx.tree_at(lambda st: (st.u, st.g, st.resp), full, (full.u[:s0], full.g[:s0], est.shrink(full.resp, s0)))
    carry = (state, problem.m0, jnp.eye(s0, dtype=dtype), jnp.zeros(s0, jnp.int8))
    ms, rows_list = [], []
    for e0, e1 in zip(edges[:-1], edges[1:]):
        sb = e1 + 1
        state, m_k, Lmod, ok = carry
        if state.u.shape[0] < sb:  # grow the histories to this block's size
            state = eqx.tree_at(lambda st: (st.u, st.g, st.resp), state,
                                (_pad_to(state.u, sb, (0,)), _pad_to(state.g, sb, (0,)),
                                 est.grow(state.resp, sb)))
            Lmod = _pad_to(Lmod, sb, (0, 1)) + jnp.diag((jnp.arange(sb) >= Lmod.shape[0]).astype(dtype))
            ok = _pad_to(ok, sb, (0,))
            carry = (state, m_k, Lmod, ok)
        rnd_b = eqx.tree_at(lambda r: (r.zeta, r.dts), rnd, (rnd.zeta[:sb], rnd.dts[:sb]))
        # Reverse mode: each block is recomputed in the backward pass (block checkpoint),
        # so memory holds the block-boundary carries plus one block's per-step carries,
        # not T carries (a carry holds the O(T^2 N_chi) response).
        run_block = jax.checkpoint(
            lambda c, rnd_b=rnd_b, e0=e0, e1=e1: lax.scan(lambda c, k: body(c, k, rnd_b), c, jnp.arange(e0, e1)))
        carry, (m, rows) = run_block(carry)
        ms.append(m)
        rows_list.append(_pad_rows(rows, size))
    state, m_T, Lmod, ok = carry
    state, row_T = process.kernel_row(problem, rnd, state, T, m_T, est)
    _, _, ok = process.noise_row(Lmod, ok, problem.delta * row_T.M_C, T, pivot_rtol)
    rows = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=0), *rows_list)
    rows = _stack_rows(rows, _pad_rows(_public_row(row_T), size))
    m = jnp.concatenate(ms + [m_T[None]])
    if return_factor:
        return rows, m, ok, state, Lmod
    return rows, m, ok, state


def _pad_rows(rows, size):
    """Pad kernel rows (``M_C``, ``M_R``) of a block to the full length ``T + 1``."""
    return eqx.tree_at(lambda r: (r.M_C, r.M_R), rows,
                       (_pad_to(rows.M_C, size, (rows.M_C.ndim - 1,)),
                        _pad_to(rows.M_R, size, (rows.M_R.ndim - 1,))))


def _magnetisation(m0, lam, mu, dts):
    def body(m, x):
        mu_k, dt = x
        return m - dt * (lam * m + mu_k), m

    m_T, m = lax.scan(body, m0, (mu[:-1], dts[:-1]))
    return jnp.concatenate([m, m_T[None]])


def _run_fixed_kernels(problem, rnd, T, est, key_probe, m, lam_hat, M_R, L):
    """Advance all trajectories with given kernels; return the kernels they imply."""
    state = process.init_state(problem, rnd, T, est, key_probe)

    def body(state, k):
        state, row = process.kernel_row(problem, rnd, state, k, m[k], est)
        state = process.advance(problem, rnd, state, k, lam_hat[k], M_R[k], L[k], row, est)
        return state, _public_row(row)

    state, rows = lax.scan(body, state, jnp.arange(T))
    state, row_T = process.kernel_row(problem, rnd, state, T, m[T], est)
    return _stack_rows(rows, _public_row(row_T)), state


def _iterate(problem, rnd, T, est, key_probe, config):
    """Damped fixed-point iteration ``K <- (1 - a) K + a F(K)`` with common random numbers."""
    size = T + 1
    dtype = rnd.u0.dtype
    a = config["damping"]
    zeros_v, zeros_m = jnp.zeros(size, dtype), jnp.zeros((size, size), dtype)
    K0 = dict(mu=zeros_v, lam_hat=zeros_v, M_C=zeros_m, M_R=zeros_m)

    def F(K):
        m = _magnetisation(problem.m0, problem.lam, K["mu"], rnd.dts)
        L, ok = process.noise_factor(K["M_C"], problem.delta, config["pivot_rtol"])
        rows, state = _run_fixed_kernels(problem, rnd, T, est, key_probe, m, K["lam_hat"], K["M_R"], L)
        return rows, state, ok

    def err(K, rows):
        diffs = [jnp.max(jnp.abs(getattr(rows, n) - K[n])) for n in K]
        scale = jnp.max(jnp.stack([jnp.max(jnp.abs(K[n])) for n in K]))
        return jnp.max(jnp.stack(diffs)) / (config["atol"] + config["rtol"] * scale)

    def cond(carry):
        K, it, e = carry
        return (it < config["max_iter"]) & (e > 1.0)

    def body(carry):
        K, it, _ = carry
        rows, _, _ = F(K)
        e = err(K, rows)
        K = {n: (1 - a) * K[n] + a * getattr(rows, n) for n in K}
        return K, it + 1, e

    K, n_iter, e = lax.while_loop(cond, body, (K0, jnp.asarray(0), jnp.asarray(jnp.inf, dtype)))
    rows, state, pivots = F(K)
    converged = (e <= 1.0) | (err(K, rows) <= 1.0)
    m = _magnetisation(problem.m0, problem.lam, rows.mu, rnd.dts)
    return (rows, m, pivots, state), n_iter, converged
