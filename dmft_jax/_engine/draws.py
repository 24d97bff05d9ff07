"""The random numbers of the effective process (docs/equations.md, sections 2.2 and 2.8): what
every trajectory draws (its sample, selection path, initial field and the noises), drawn up
front (:func:`draw`) or at their step (:class:`Stream`, a compressed history), and the view of
one step (:class:`StepDraws`) that :func:`~dmft_jax._engine.process.local_step` reads."""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from .._algorithms import selection
from .grids import grid_normal

Traj = Float[Array, " traj"]
History = Float[Array, "steps traj"]

class Randomness(eqx.Module):
    """The fixed random numbers of all trajectories (common random numbers) and the law of
    the discrete draws they came from (differentiable: likelihood-ratio weights)."""

    c: Traj  # latent of the sample (cluster)
    y: Traj  # label
    h0: Traj  # teacher-direction noise
    s: History  # (T+1, N) selection paths
    u0: Any  # (K, N) standard normals, scaled by sqrt(Delta R0) in use
    zeta: Any  # (T+1, K, N) standard normals driving the noise xi (None: drawn at their step, ``stream``)
    log_p0: Traj  # log-probability of (c, y, s[0])
    p_on: Float[Array, " T"]  # P(s: 0 -> 1) of the transitions k -> k+1
    p_off: Float[Array, " T"]  # P(s: 1 -> 0)
    dts: Float[Array, " steps"]  # step sizes eta_k (the last repeats eta_{T-1}; never used)
    live: Any = None  # (N,) 1 for a trajectory of the solve, 0 for padding of a shape bucket; None: all
    zeta_l: Any = None  # (T+1, K, N) standard normals of the Langevin noise (None: no Langevin term)
    temperature: Any = None  # the Langevin temperature T_L (None: no Langevin term)
    update: Any = None  # the two-step update's coefficients (dmft_jax._algorithms.updates.TwoStep; None: a plain step)
    stream: Any = None  # Stream: s, zeta and zeta_l drawn at their step (then None here); None: drawn up front

    def map_trajectories(self, f) -> "Randomness":
        """``f`` applied to every per-trajectory field (e.g. to shard them)."""
        names = ("c", "y", "h0", "u0", "log_p0") + tuple(
            n for n in ("s", "zeta", "live", "zeta_l") if getattr(self, n) is not None)
        return eqx.tree_at(lambda r: [getattr(r, n) for n in names], self, [f(getattr(self, n)) for n in names])

    def at_step(self, k, sel: "Selection | None" = None) -> "StepDraws":
        """What :func:`local_step` reads at step ``k`` (``sel``: the selection at ``k`` when it
        is drawn step by step)."""
        km1 = jnp.maximum(k - 1, 0)
        s_prev, s_k = (self.s[km1], self.s[k]) if sel is None else sel.values(self.c.dtype)
        return StepDraws(c=self.c, y=self.y, h0=self.h0, s_prev=s_prev, s_k=s_k,
                         p_on_prev=self.p_on[km1], p_off_prev=self.p_off[km1], log_p0=self.log_p0, live=self.live)

    def zeta_at(self, k):
        """``zeta[k]`` ``(K, N)``."""
        return self.zeta[k] if self.stream is None else self.stream.zeta(k)

    def zeta_l_at(self, k):
        """The Langevin normals of step ``k`` ``(K, N)``."""
        return self.zeta_l[k] if self.stream is None else self.stream.zeta(k, langevin=True)

    def selection_start(self) -> "Selection | None":
        """The selection at step 0 when it is drawn step by step (else ``None``)."""
        return None if self.stream is None else Selection(self.stream.chain0, self.stream.chain0.s)

    def selection_next(self, sel: "Selection | None", k) -> "Selection | None":
        """The selection at step ``k + 1`` from step ``k``'s."""
        if sel is None:
            return None
        chain = selection.chain_step(sel.chain, self.stream.sel_keys, self.p_on[k], self.p_off[k])
        return Selection(chain, sel.chain.s)


class Selection(eqx.Module):
    """The selection chains at step ``k`` (drawn step by step) and ``s[k - 1]`` (bool)."""

    chain: selection.Chain
    s_prev: Any

    def values(self, dtype):
        """``(s[k-1], s[k])`` as numbers, each trajectory's (antithetic pairs share theirs)."""
        return self.s_prev.astype(dtype), self.chain.s.astype(dtype)


class Stream(eqx.Module):
    """The draws of a solve made at their step, so that memory holds no ``(T + 1) x N`` array
    (a compressed history): the same numbers as :func:`draw` makes up front (counter-based
    ``zeta`` rows; the selection chains stepped by :func:`~dmft_jax._algorithms.selection.chain_step`)."""

    keys: Any  # (K,) the units' keys of gaussian_streams
    sel_keys: Any  # the selection chains' keys, each trajectory's (pairs repeated)
    chain0: selection.Chain  # the chains at step 0, each trajectory's
    n_live: Any
    n_traj: int = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)
    moment_matching: bool = eqx.field(static=True)
    dtype: Any = eqx.field(static=True)

    def zeta(self, k, langevin: bool = False):
        rows = [zeta_rows(key, k, 1, self.n_traj, self.antithetic, self.dtype, self.moment_matching, self.n_live,
                          langevin)[0] for key in self.keys]
        return jnp.stack(rows, axis=-2)


class StepDraws(eqx.Module):
    """The randomness of one step ``k``: the sample, the selection at ``k - 1`` and ``k`` and
    the transition's probabilities."""

    c: Traj
    y: Traj
    h0: Traj
    s_prev: Traj
    s_k: Traj
    p_on_prev: Any
    p_off_prev: Any
    log_p0: Traj
    live: Any = None  # see Randomness


# Draw in float32 and cast, so that float32 and float64 solves share their random numbers (a
# float32 solve can then be compared with float64 at equal noise).
DRAW_DTYPE = jnp.float32


def _unit_fn(n_base, antithetic, moment_matching, n_live):
    """Moment matching (mean square 1 over the live trajectories), or the identity."""
    if not moment_matching:
        return lambda a: a
    live_base = None
    if n_live is not None:
        live_base = jnp.arange(n_base) < (n_live // 2 if antithetic else n_live)
    return lambda a: _unit_mean_square(a, live_base)


def gaussian_streams(key, n_steps: int, n_traj: int, antithetic: bool, dtype, moment_matching: bool = True,
                     langevin: bool = False, n_live=None, streamed: bool = False):
    """The Gaussian streams of :func:`draw` with ``key`` alone: ``u0`` ``(N,)``, ``zeta``
    ``(T+1, N)`` and, with ``langevin``, the Langevin normals ``zeta_l`` (else ``None``);
    :func:`draw` takes them for each unit. ``streamed``: ``u0`` only (the rows are drawn at
    their step, :func:`zeta_rows`)."""
    _, _, _, ku, _ = jax.random.split(key, 5)
    n_base = n_traj // 2 if antithetic else n_traj
    unit = _unit_fn(n_base, antithetic, moment_matching, n_live)
    u0 = _mirror(unit(jax.random.normal(ku, (n_base,), DRAW_DTYPE).astype(dtype)), antithetic)
    if streamed:
        return u0, None, None
    rows = lambda lang: zeta_rows(key, 0, n_steps + 1, n_traj, antithetic, dtype, moment_matching, n_live, lang)
    return u0, rows(False), rows(True) if langevin else None


def zeta_rows(key, row0, n_rows: int, n_traj: int, antithetic: bool, dtype, moment_matching: bool = True,
              n_live=None, langevin: bool = False):
    """Rows ``row0 .. row0 + n_rows - 1`` of ``zeta`` ``(n_rows, N)`` (``langevin``: of the Langevin
    normals, their own counter-based draws) of :func:`gaussian_streams` with ``key``: each row
    depends on its step alone, so a step's row can be drawn at its step."""
    kz = jax.random.fold_in(key, 0x1A6E) if langevin else jax.random.split(key, 5)[4]
    n_base = n_traj // 2 if antithetic else n_traj
    unit = _unit_fn(n_base, antithetic, moment_matching, n_live)
    return _mirror(unit(grid_normal(kz, n_rows, n_base, row0).astype(dtype)), antithetic)


def _mirror(a, antithetic: bool):
    """Antithetic pairs ``(a, -a)`` adjacent along the last axis (the identity without)."""
    return jnp.stack([a, -a], axis=-1).reshape(*a.shape[:-1], -1) if antithetic else a


def draw(key, problem, algorithm, n_steps: int, n_traj: int, antithetic: bool, dtype,
         moment_matching: bool = True, n_live=None, K: int = 1, streamed: bool = False) -> Randomness:
    """Draw the randomness of ``n_traj`` trajectories.

    With ``antithetic`` the trajectories come in adjacent pairs ``(2i, 2i+1)`` that share
    ``c, y, h0, s`` and have opposite ``u0`` and ``zeta`` (removes the spurious O(1/sqrt N)
    drift of ``m`` in symmetric models; docs/equations.md, section 2.8.3). With
    ``moment_matching`` the Gaussian draws ``h0``, ``u0`` and each step's ``zeta`` are rescaled
    to mean square exactly 1 over the trajectories (section 2.8.7).

    Every draw depends on its trajectory (and step) index only (``zeta`` from a counter per
    step and trajectory, :func:`grid_normal`; the rest indexed by trajectory), so that the first ``n`` trajectories of a larger
    draw, or of a draw over more steps, are the draws of ``n`` trajectories over fewer steps.
    ``n_live`` (traced, optional): only the first ``n_live`` trajectories belong to the solve,
    the rest pad a shape bucket (``live`` is 0 for them; moment matching ignores them).

    ``K`` units (a committee): the Gaussian streams ``u0`` ``(K, N)``, ``zeta`` and ``zeta_l``
    ``(T+1, K, N)`` carry a unit axis; unit 0's are those of ``key`` (a single unit's), unit
    ``a``'s those of ``fold_in(key, a)``. The sample and the selection are shared.

    ``streamed``: ``s``, ``zeta`` and ``zeta_l`` are not drawn here but at their step
    (:class:`Stream`; the same numbers), so that no array grows with ``T`` (a compressed history).
    """
    kc, kh, ks, _, _ = jax.random.split(key, 5)
    n_base = n_traj // 2 if antithetic else n_traj
    unit = _unit_fn(n_base, antithetic, moment_matching, n_live)
    # moment matching in the working dtype: the same in a compiled solve as in an eager call
    h0 = unit(jax.random.normal(kh, (n_base,), DRAW_DTYPE).astype(dtype))
    c, y = (a.astype(dtype) for a in problem.model.sample(kc, h0.astype(DRAW_DTYPE)))
    b0, p_on, p_off = selection.law(algorithm, n_steps, dtype)
    temperature = algorithm.temperature
    unit_keys = [key if a == 0 else jax.random.fold_in(key, a) for a in range(K)]
    streams = [gaussian_streams(k, n_steps, n_traj, antithetic, dtype, moment_matching, temperature is not None,
                                n_live, streamed) for k in unit_keys]
    u0 = jnp.stack([st[0] for st in streams], axis=-2)
    pair = (lambda a: jnp.repeat(a, 2, axis=-1)) if antithetic else (lambda a: a)
    c, y, h0 = pair(c), pair(y), pair(h0)
    stream, s, zeta, zeta_l = None, None, None, None
    if streamed:
        chain0, sel_keys = selection.chain_start(ks, b0, n_base)
        if antithetic:  # each pair's chain twice (their selection is shared)
            chain0, sel_keys = jax.tree_util.tree_map(lambda a: jnp.repeat(a, 2, axis=0), (chain0, sel_keys))
        stream = Stream(keys=unit_keys, sel_keys=sel_keys, chain0=chain0, n_live=n_live, n_traj=n_traj,
                        antithetic=antithetic, moment_matching=moment_matching, dtype=dtype)
        s0 = chain0.s
    else:
        s = pair(selection.draw_paths(ks, b0, p_on, p_off, (n_base,), DRAW_DTYPE).astype(dtype))
        zeta = jnp.stack([st[1] for st in streams], axis=-2)
        zeta_l = None if temperature is None else jnp.stack([st[2] for st in streams], axis=-2)
        s0 = s[0]
    log_p0 = problem.model.log_prob(c, y) + jnp.log(jnp.where(s0 > 0, b0, 1 - b0))
    steps = algorithm.step_sizes(n_steps, dtype)
    dts = jnp.concatenate([steps, steps[-1:]])
    live = None if n_live is None else (jnp.arange(n_traj) < n_live).astype(dtype)
    return Randomness(c=c, y=y, h0=h0, s=s, u0=u0, zeta=zeta, log_p0=log_p0, p_on=p_on, p_off=p_off,
                      dts=dts, live=live, zeta_l=zeta_l, temperature=temperature,
                      update=algorithm.two_step(), stream=stream)


def _unit_mean_square(a, live=None):
    """``a`` rescaled along its last (trajectory) axis to mean square 1 over the ``live``
    trajectories (moment matching)."""
    if live is None:
        ms = jnp.mean(a * a, axis=-1, keepdims=True)
    else:
        ms = jnp.sum(jnp.where(live, a * a, 0.0), axis=-1, keepdims=True) / jnp.sum(live)
    return a / jnp.sqrt(jnp.maximum(ms, jnp.finfo(a.dtype).tiny))
