"""One enumeration of outcomes, shared by ``solve``, ``solve_grid``, ``tune``, ``erm`` and
``simulate``: :data:`RESULTS` names every way a computation can end, each with an
actionable message, and :class:`Result` carries the outcome as data (an integer array, so
that it survives ``jit`` and ``vmap``: a grid has one outcome per point)."""
from __future__ import annotations

import enum
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from .._util import value_repr


# q = C(t, t) above this multiple of 1 + q(0) counts as diverged (finite but exploding)
DIVERGENCE_FACTOR = 1e12


class RESULTS(enum.IntEnum):
    """Outcomes. ``RESULTS.successful`` is 0; read the message with ``.message``."""

    successful = 0
    nonfinite = 1
    max_iter = 2
    diverged = 3
    no_minimiser = 4
    invalid_input = 5
    worse = 6
    history_tolerance = 7

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    RESULTS.successful: "success",
    RESULTS.nonfinite: "the computation produced non-finite values (diverging dynamics: try a smaller "
    "eta, a larger n_traj, or float64)",
    RESULTS.max_iter: "the iteration did not converge within max_iter iterations",
    RESULTS.diverged: "the dynamics diverged (q = C(t,t) grew beyond 1e12 (1 + q(0)); try a smaller eta)",
    RESULTS.invalid_input: "a parameter was outside its valid range (checked inside the compiled program, "
    "e.g. under vmap); no numbers are returned for this point",
    RESULTS.worse: "tuning made the objective worse than at its start (beyond twice the standard error of the "
    "difference, or on the same random numbers): lower the optimiser's learning rate, take more steps or check "
    "its sign; the start is the better point",
    RESULTS.history_tolerance: "the compressed history's error estimate exceeded its tolerance (sol.stats[\"history_error\"] "
    "above CompressedHistory.atol on eps_gen, or sol.stats[\"history_error_q\"] above rtol on q): enlarge window or "
    "per_level, or solve with the full history",
    RESULTS.no_minimiser: "no finite minimiser: the order parameters diverge (with lam = 0 this happens "
    "when the data are separable, alpha < alpha*(Delta))",
}


class Result(eqx.Module):
    """An outcome as data: ``code`` holds :data:`RESULTS` values (a scalar, or one per point
    of a batch). For ``invalid_input``, ``check`` is the index of the first failed check in
    ``checks`` (their descriptions, static), which the message names."""

    code: Any
    check: Any = -1
    checks: tuple = eqx.field(static=True, default=())

    @staticmethod
    def of(code, check=-1, checks=()) -> "Result":
        return Result(jnp.asarray(code, jnp.int32), jnp.asarray(check, jnp.int32), tuple(checks))

    @property
    def ok(self):
        """``True`` where the outcome is success (a numpy bool, or array of them)."""
        return np.asarray(self.code) == RESULTS.successful

    @property
    def message(self) -> str:
        """The message of a scalar outcome; for a batch, the counts per outcome."""
        code = np.asarray(self.code)
        if code.ndim == 0:
            msg = RESULTS(int(code)).message
        else:
            msg = "; ".join(f"{RESULTS(int(v)).message}: {int((code == v).sum())} points" for v in np.unique(code))
        bad = np.broadcast_to(np.asarray(self.check), code.shape)[code == RESULTS.invalid_input]
        names = sorted({self.checks[int(i)] for i in np.ravel(bad) if 0 <= int(i) < len(self.checks)})
        return msg + ("; failed: " + "; ".join(names) if names else "")

    @property
    def code_name(self):
        """The outcome's name in :data:`RESULTS` (``"successful"``, ``"diverged"``, ...; for a
        batch, an array of names)."""
        code = np.asarray(self.code)
        names = np.vectorize(lambda v: RESULTS(int(v)).name, otypes=[object])(code)
        return str(names) if code.ndim == 0 else names

    def __int__(self):
        return int(np.asarray(self.code))

    compact_repr = True  # inside another result's repr too (dmft_jax._util.value_repr)

    def __repr__(self):
        """``Result(successful)``, ``Result(invalid_input: lam: lam >= 0)``, or for a batch the
        count per outcome (not the list of every check's description)."""
        try:
            code = np.asarray(self.code)
        except Exception:  # traced
            return "Result(traced)"
        if code.ndim == 0:
            failed = self.message.partition("; failed: ")[2]
            return f"Result({self.code_name}{': ' + failed if failed else ''})"
        counts = ", ".join(f"{RESULTS(int(v)).name} {int((code == v).sum())}" for v in np.unique(code))
        return f"Result(batch of {code.size}: {counts})"


class AbstractOutcome(eqx.Module):
    """A result type with an outcome: ``result``, and from it ``ok``, ``status`` (the integer
    code) and ``message``."""

    __repr__ = value_repr  # values of scalars and short curves, the outcome by name

    result: eqx.AbstractVar[Result]

    @property
    def ok(self):
        """``True`` where the outcome is success."""
        return self.result.ok

    @property
    def status(self):
        """The outcome's integer code (:data:`RESULTS`)."""
        return self.result.code

    @property
    def message(self) -> str:
        """The outcome in words (an invalid point names the check it failed)."""
        return self.result.message
