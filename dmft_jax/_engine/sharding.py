"""Sharding the trajectories over several devices (``solve(..., sharding="all")``).

Every per-trajectory array (randomness, histories, response) is split along its trajectory
axis, which is the last axis of each of them, and the kernel averages become all-reduces
(``jax.sharding`` / GSPMD); results equal the one-device solve to rounding. Multi-host:
``jax.distributed.initialize()`` in every process first, then ``"all"`` spans the hosts.
"""
from __future__ import annotations

import jax
import numpy as np
from jax import lax


def device_ids(devices):
    """Validate ``devices`` (``None``, ``"all"`` or a list of ``jax.devices()``) and return the
    ids of the devices to shard over (``None``: one device, no sharding)."""
    if devices is None:
        return None
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"sharding must be None, 'all' or a list of jax devices; got {devices!r}")
        devices = available
    try:
        devices = list(devices)
    except TypeError:
        raise ValueError(f"sharding must be None, 'all' or a list of jax devices; got {devices!r}") from None
    ids = {d.id for d in available}
    if not devices or any(getattr(d, "id", None) not in ids for d in devices):
        raise ValueError(f"sharding must be a non-empty list of jax.devices() (available: {available}); "
                         f"got {devices}")
    if len({d.id for d in devices}) != len(devices):
        raise ValueError(f"sharding: the devices must be distinct; got the ids {[d.id for d in devices]}")
    return None if len(devices) == 1 else tuple(d.id for d in devices)


def sharder(ids):
    """A function placing the trajectory axis (the last) of every array leaf of a pytree on a
    1-d device mesh (scalars stay replicated); the identity for one device."""
    if ids is None:
        return lambda tree: tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    by_id = {d.id: d for d in jax.devices()}
    mesh = Mesh(np.array([by_id[i] for i in ids]), ("traj",))

    def put(x):
        if not hasattr(x, "ndim") or x.ndim == 0:
            return x
        spec = PartitionSpec(*([None] * (x.ndim - 1) + ["traj"]))
        return lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return lambda tree: jax.tree_util.tree_map(put, tree)
