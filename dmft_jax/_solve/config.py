"""The static description of a compiled solve, for every number of units ``K``."""
from __future__ import annotations

from typing import Any

import equinox as eqx

from .standard_errors import AbstractErrors, NoErrors


class SolveConfig(eqx.Module):
    """Everything the compiled solve depends on besides the parameters and the key: the
    number of steps ``n_steps`` (``T``), of trajectories ``n_traj`` (``N``), of units ``K``
    (1 for a single unit), the strategies (``solver``, ``response`` resolved to its sizes for
    ``K`` units, ``adjoint``, ``progress_meter``, ``errors``), the device ids of the sharding
    (``None``: one device) and the numerical options; for committees also ``cross_memory``,
    ``symmetric`` (docs/equations.md, section 6.2) and ``quadrature``, the points of the test
    error's quadrature (0: Monte Carlo, or a single unit's closed form)."""

    n_steps: int = eqx.field(static=True)
    n_traj: int = eqx.field(static=True)
    solver: Any = eqx.field(static=True)
    response: Any = eqx.field(static=True)
    adjoint: Any = eqx.field(static=True)
    progress_meter: Any = eqx.field(static=True)
    devices: Any = eqx.field(static=True)
    antithetic: bool = eqx.field(static=True)
    pivot_rtol: float = eqx.field(static=True)
    dtype: str = eqx.field(static=True)
    save_trajectories: int = eqx.field(static=True)
    errors: AbstractErrors = eqx.field(static=True, default=NoErrors())
    moment_matching: bool = eqx.field(static=True, default=True)
    K: int = eqx.field(static=True, default=1)
    cross_memory: bool = eqx.field(static=True, default=True)
    symmetric: bool = eqx.field(static=True, default=False)
    quadrature: int = eqx.field(static=True, default=0)

    @property
    def n_chi(self) -> int:
        """Trajectories carrying the exact response (0 for other estimators)."""
        return getattr(self.response, "n_chi", 0) or 0

    def to_dict(self) -> dict:
        out = {name: _describe(getattr(self, name)) for name in self.__dataclass_fields__}
        out["n_chi"] = self.n_chi
        return out

    def __getitem__(self, name):  # read like the former dict configuration
        return self.n_chi if name == "n_chi" else getattr(self, name)


def _describe(v):
    """A JSON-friendly description of a configuration entry: a strategy as its own ``to_dict``
    (an estimator of ``M_R``), else as its class name and options."""
    if isinstance(v, eqx.Module) and callable(getattr(v, "to_dict", None)):
        return v.to_dict()
    if isinstance(v, eqx.Module):
        return {"type": type(v).__name__, **{f: _describe(getattr(v, f)) for f in v.__dataclass_fields__}}
    if isinstance(v, tuple):
        return list(v)
    return v
