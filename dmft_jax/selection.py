"""The sample-selection process ``s[k] in {0, 1}`` (persistent SGD Markov chain)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def sample_paths(key, algorithm, n_steps: int, shape, dtype):
    """Draw selection paths of shape ``(n_steps + 1, *shape)`` (time first).

    ``s[0] ~ Bernoulli(b)``; then ``1 -> 0`` w.p. ``p_off`` and ``0 -> 1`` w.p. ``p_on``.
    Full batch (``b = 1``) gives ``s = 1`` identically.
    """
    b, p_on, p_off = algorithm.selection()
    k0, k1 = jax.random.split(key)
    s0 = jax.random.uniform(k0, shape, dtype) < b
    uniforms = jax.random.uniform(k1, (n_steps, *shape), dtype)

    def step(s, u):
        s_next = jnp.where(s, u >= p_off, u < p_on)
        return s_next, s_next

    _, rest = lax.scan(step, s0, uniforms)
    return jnp.concatenate([s0[None], rest], axis=0).astype(dtype)
