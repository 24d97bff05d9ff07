"""How a solve's Monte Carlo trajectories are drawn, laid out and kept: one option object of
:func:`dmft_jax.solve` (docs/equations.md, sections 2.8.3, 2.8.5 and 2.8.7)."""
from __future__ import annotations

from typing import Any

import equinox as eqx

from .._util import value_repr
import numpy as np


class Trajectories(eqx.Module):
    """The ``N`` trajectories of a solve (``n_traj``): how they are drawn, where they live and
    which are kept.

    - ``antithetic`` (default on): pairs ``(2i, 2i+1)`` share every draw with opposite
      Gaussian noise (``n_traj`` must then be even; section 2.8.3);
    - ``moment_matching`` (default on): the Gaussian draws rescaled to mean square exactly 1
      over the trajectories (1.5x smaller mean-squared error of late-time ``eps_gen`` at no
      cost; section 2.8.7);
    - ``sharding``: ``None`` (one device), ``"all"`` or a list of devices the trajectories
      are split over (section 2.8.5);
    - ``save``: keep ``u``, ``g``, ``r``, ``s``, ``c``, ``y`` of this many trajectories in
      ``sol.trajectories`` (a single unit; ``0 <= save <= n_traj``).
    """

    __repr__ = value_repr  # the values of the parameters, not f32[]

    antithetic: bool = eqx.field(static=True, default=True, converter=lambda x: _plain(x))
    moment_matching: bool = eqx.field(static=True, default=True, converter=lambda x: _plain(x))
    sharding: Any = eqx.field(static=True, default=None, converter=lambda s: _devices(s))
    save: int = eqx.field(static=True, default=0, converter=lambda x: _plain(x))

    def __check_init__(self):
        for name in ("antithetic", "moment_matching"):
            flag = getattr(self, name)
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"Trajectories.{name} must be True or False; got {flag!r}")
        save = self.save
        if isinstance(save, (bool, np.bool_)) or not isinstance(save, (int, np.integer)) or save < 0:
            raise ValueError(f"Trajectories.save must be an integer >= 0 (and <= n_traj); got {save!r}")


def _plain(x):
    """A numpy scalar as the Python value it holds (a static field must not hold an array)."""
    return x.item() if isinstance(x, np.generic) else x


def _devices(s):
    """A list or array of devices as a tuple (hashable: the options are static)."""
    return tuple(np.ravel(s).tolist()) if isinstance(s, np.ndarray) else tuple(s) if isinstance(s, list) else s


# the former keywords of solve() that Trajectories holds, and its field for each
FORMER = {"antithetic": "antithetic", "moment_matching": "moment_matching", "sharding": "sharding",
          "save_trajectories": "save"}
