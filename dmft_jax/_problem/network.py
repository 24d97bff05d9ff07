"""What the engine solves (docs/equations.md, section 6.2): the problem and ``K`` units with
their read-out, one description for a single unit (``K = 1``) and for committees."""
from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp

from .readouts import Committee, UnitReadout


class Network(eqx.Module):
    """What the engine solves: the problem's data, loss and scalars, and ``K`` units with a
    read-out (:class:`~dmft_jax._problem.readouts.UnitReadout` for a single unit), their initial
    overlaps ``m0`` ``(K,)`` and the learnable bias ``(K,)`` (``None``: none). ``symmetric``
    and ``cross_memory``: the committee options (``Committee``'s solve), applied to every
    kernel row by :meth:`project`."""

    problem: Any
    readout: Any
    m0: Any
    bias: Any = None
    symmetric: bool = eqx.field(static=True, default=False)
    cross_memory: bool = eqx.field(static=True, default=True)

    @staticmethod
    def of(problem) -> "Network":
        """What the engine solves for ``problem``: a :class:`~dmft_jax.Committee`'s ``K`` units
        with its read-out and options, or a single unit (:meth:`single`)."""
        if isinstance(problem, Committee):
            return Network(problem.problem, problem.readout, problem.m0, None, symmetric=problem.symmetric,
                           cross_memory=problem.cross_memory)
        return Network.single(problem)

    @staticmethod
    def single(problem) -> "Network":
        """A single-unit problem: the committee of one unit read out through its model."""
        bias = None if problem.bias is None else jnp.reshape(problem.bias, (1,))
        return Network(problem, UnitReadout(problem.model), jnp.reshape(problem.m0, (1,)), bias)

    @property
    def K(self) -> int:
        return self.readout.K

    def project(self, row):
        """The committee options on a kernel row (:class:`~dmft_jax._engine.process.Row`): without ``cross_memory`` the cross-unit
        entries of ``M_R`` dropped; with ``symmetric`` every block averaged over the
        permutations of the units. The identity for a single unit."""
        M_R = row.M_R if self.cross_memory else row.M_R * jnp.eye(self.K, dtype=row.M_R.dtype)
        row = eqx.tree_at(lambda r: r.M_R, row, M_R)
        if not self.symmetric:
            return row
        return eqx.tree_at(lambda r: (r.lam_hat, r.mu, r.M_C, r.M_R), row,
                           (exchangeable(row.lam_hat), jnp.broadcast_to(jnp.mean(row.mu), row.mu.shape),
                            exchangeable(row.M_C), exchangeable(row.M_R)))


def exchangeable(B):
    """``K x K`` blocks (last two axes) averaged over the permutations of the units: every
    diagonal entry becomes the mean diagonal entry, every off-diagonal one the mean
    off-diagonal entry."""
    K = B.shape[-1]
    if K == 1:
        return B
    eye = jnp.eye(K, dtype=B.dtype)
    diag = jnp.einsum("...aa->...", B)[..., None, None] / K
    off = (jnp.sum(B, axis=(-2, -1))[..., None, None] - diag * K) / (K * (K - 1))
    return diag * eye + off * (1 - eye)
