"""The sample-selection process ``s[k] in {0, 1}`` (persistent SGD Markov chain).

The chain is sampled by its sojourns rather than step by step: a sojourn in state 1
(resp. 0) lasts a Geometric(``p_off``) (resp. Geometric(``p_on``)) number of steps,
drawn by inversion (accumulated hazard ``-log(1 - p)`` per step against ``-log U``) from a
uniform ``U`` that is indexed by (trajectory, sojourn number) only. This is the same discrete chain as the
step-by-step rule (``1 -> 0`` w.p. ``p_off``, ``0 -> 1`` w.p. ``p_on``; stationary start,
since geometric sojourns are memoryless), but the uniforms do not depend on ``eta`` or
on the number of steps, so paths for different ``eta``, ``b``, ``tau`` with the same key
are coupled: they share their sojourns in continuous time ``-tau log U`` as ``eta -> 0``.
That makes ``dt -> 0`` convergence studies and finite differences in ``b``, ``tau``
far less noisy than independent draws.
"""
from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax


def law(algorithm, n_steps: int, dtype):
    """``(b_0, p_on, p_off)`` of the selection chain over ``n_steps`` transitions, the
    probabilities as ``(n_steps,)`` arrays in ``dtype`` (the one place they are computed)."""
    steps = algorithm.step_sizes(n_steps, dtype)
    b0, p_on, p_off = algorithm.selection(steps)
    return b0, jnp.broadcast_to(p_on, (n_steps,)), jnp.broadcast_to(p_off, (n_steps,))


def sample_paths(key, algorithm, n_steps: int, shape, dtype):
    """Selection paths of ``algorithm`` over ``n_steps`` steps, shape ``(n_steps + 1, *shape)``."""
    return draw_paths(key, *law(algorithm, n_steps, dtype), shape, dtype)


def draw_paths(key, b0, p_on, p_off, shape, dtype):
    """Draw selection paths of shape ``(T + 1, *shape)`` (time first) for the law
    ``(b0, p_on, p_off)`` of :func:`law` (``p_on``, ``p_off``: ``(T,)``).

    ``s[0] ~ Bernoulli(b)``; the transition ``k -> k+1`` is ``1 -> 0`` w.p. ``p_off[k]`` and
    ``0 -> 1`` w.p. ``p_on[k]`` (per-step probabilities follow a learning-rate schedule).
    Each sojourn draws ``E = -log U`` and ends at the first step where the accumulated
    hazard ``sum -log(1 - p)`` reaches ``E``: exactly the inhomogeneous chain (geometric
    sojourns for constant ``p``), with uniforms indexed by (trajectory, sojourn) only.
    Full batch (``b = 1``) gives ``s = 1`` identically. The same paths drawn step by step
    (a compressed history, whose memory must not grow with ``T``): :func:`chain_start` and
    :func:`chain_step`.
    """
    n_steps = p_on.shape[0]
    size = 1
    for n in shape:
        size *= n
    chain, keys = chain_start(key, b0, size)

    def step(chain, p):
        chain = chain_step(chain, keys, *p)
        return chain, chain.s

    _, rest = lax.scan(step, chain, _float32(p_on, p_off))
    paths = jnp.concatenate([chain.s[None], rest], axis=0)
    return paths.reshape(n_steps + 1, *shape).astype(dtype)


class Chain(eqx.Module):
    """The selection chains of ``size`` trajectories at one step (every field ``(size,)``): the
    state ``s`` (bool), the hazard budget ``e`` left in the current sojourn and the sojourn
    counter ``j`` (the uniform of sojourn ``j`` is ``fold_in(keys[i], j)``, the keys apart)."""

    s: jax.Array
    e: jax.Array
    j: jax.Array


def chain_start(key, b0, size: int):
    """``(chains at step 0, their keys)``: ``s[0] ~ Bernoulli(b0)`` and the first sojourn's
    budget (drawn in float32 whatever the working dtype, so that float32 and float64 solves
    share their paths)."""
    k0, k1 = jax.random.split(key)
    b = lax.stop_gradient(b0).astype(jnp.float32)
    s0 = jax.random.uniform(k0, (size,), jnp.float32) < b
    keys = jax.random.split(k1, size)
    j0 = jnp.zeros(size, jnp.int32)
    return Chain(s=s0, e=_budget(keys, j0), j=j0), keys


def chain_step(chain: Chain, keys, p_on_k, p_off_k) -> Chain:
    """The chains at step ``k + 1`` from step ``k`` with the transition's probabilities."""
    p_on_k, p_off_k = _float32(p_on_k, p_off_k)
    hazard = -jnp.log1p(-jnp.minimum(jnp.where(chain.s, p_off_k, p_on_k), 1.0))
    e = chain.e - hazard
    switch = e <= 0
    j = chain.j + switch.astype(chain.j.dtype)
    return Chain(s=jnp.where(switch, ~chain.s, chain.s), e=jnp.where(switch, _budget(keys, j), e), j=j)


def _budget(keys, j):
    """``E = -log U`` of sojourn ``j`` of each trajectory (``U`` in (0, 1], so ``E`` is finite)."""
    return jax.vmap(lambda k, i: -jnp.log(1.0 - jax.random.uniform(jax.random.fold_in(k, i), (), jnp.float32)))(keys, j)


def _float32(*p):
    return tuple(lax.stop_gradient(x).astype(jnp.float32) for x in p)
