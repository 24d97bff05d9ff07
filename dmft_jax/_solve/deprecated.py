"""Former entry points, kept for one release with a ``DeprecationWarning`` that names what
replaced them."""
from __future__ import annotations

import warnings

from .._algorithms.algorithms import AbstractAlgorithm
from .solve import solve


def solve_committee(committee, algorithm: AbstractAlgorithm, t_max: float = 20.0, n_traj: int = 2**15,
                    key=0, **options):
    """Deprecated: :func:`dmft_jax.solve` solves committees (one entry, one set of defaults;
    this alias stays for one release). Until 0.2 its default was ``n_traj = 2**14``."""
    warnings.warn("dj.solve_committee is deprecated: call dj.solve(committee, algorithm, ...) (the same options "
                  "and defaults for one unit and for K units)", DeprecationWarning, stacklevel=2)
    return solve(committee, algorithm, t_max, n_traj, key, **options)
