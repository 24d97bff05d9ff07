"""The sample-selection process ``s[k] in {0, 1}`` (persistent SGD Markov chain).

The chain is sampled by its sojourns rather than step by step: a sojourn in state 1
(resp. 0) lasts a Geometric(``p_off``) (resp. Geometric(``p_on``)) number of steps,
drawn by inversion ``max(1, ceil(log U / log(1 - p)))`` from a uniform ``U`` that is
indexed by (trajectory, sojourn number) only. This is the same discrete chain as the
step-by-step rule (``1 -> 0`` w.p. ``p_off``, ``0 -> 1`` w.p. ``p_on``; stationary start,
since geometric sojourns are memoryless), but the uniforms do not depend on ``eta`` or
on the number of steps, so paths for different ``eta``, ``b``, ``tau`` with the same key
are coupled: they share their sojourns in continuous time ``-tau log U`` as ``eta -> 0``.
That makes ``dt -> 0`` convergence studies and finite differences in ``b``, ``tau``
far less noisy than independent draws.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _sojourn(u, p):
    """Geometric(p) number of steps (>= 1) by inversion; infinite (large) for p = 0."""
    steps = jnp.ceil(jnp.log(u) / jnp.log1p(-jnp.minimum(p, 1.0)))
    big = jnp.asarray(2**30, steps.dtype)
    return jnp.where(p > 0, jnp.clip(steps, 1, big), big)


def sample_paths(key, algorithm, n_steps: int, shape, dtype):
    """Draw selection paths of shape ``(n_steps + 1, *shape)`` (time first).

    ``s[0] ~ Bernoulli(b)``; then ``1 -> 0`` w.p. ``p_off`` and ``0 -> 1`` w.p. ``p_on``.
    Full batch (``b = 1``) gives ``s = 1`` identically.
    """
    b, p_on, p_off = algorithm.selection()
    k0, k1 = jax.random.split(key)
    size = 1
    for n in shape:
        size *= n
    s0 = jax.random.uniform(k0, (size,), jnp.float32) < b
    traj_keys = jax.random.split(k1, size)
    # open interval (0, 1] so that log U is finite
    uniform = jax.vmap(lambda k, j: 1.0 - jax.random.uniform(jax.random.fold_in(k, j), (), jnp.float32))
    leave = lambda s: jnp.where(s, p_off, p_on)
    j0 = jnp.zeros(size, jnp.int32)
    r0 = _sojourn(uniform(traj_keys, j0), leave(s0))

    def step(carry, _):
        s, r, j = carry
        r = r - 1
        switch = r <= 0
        s = jnp.where(switch, ~s, s)
        j = j + switch.astype(j.dtype)
        r = jnp.where(switch, _sojourn(uniform(traj_keys, j), leave(s)), r)
        return (s, r, j), s

    _, rest = lax.scan(step, (s0, r0, j0), None, length=n_steps)
    paths = jnp.concatenate([s0[None], rest], axis=0)
    return paths.reshape(n_steps + 1, *shape).astype(dtype)
