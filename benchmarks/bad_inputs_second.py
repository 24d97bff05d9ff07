"""The second table of benchmarks/bad_inputs.py (issue 26): bad inputs and faults on the surfaces
the first table did not cover, by class. Every case is ``Case(id, group, expect, pattern, fn)``:

- ``expect = "refuse"``: the input is wrong; an exception whose message matches ``pattern`` (the
  parameter and its valid range) is *clear*, another exception *unclear*, a returned failed
  result *handled*, a returned success (or a value without an outcome) *silent*;
- ``expect = "fail"``: a point that must come back as a failed result (inside ``vmap``/``jit``):
  failed with ``pattern`` in its message is *handled*, a matching exception *clear*, success
  *silent*;
- ``expect = "correct"``: a legal (edge) input or a fault the library must survive; ``fn`` checks
  the outcome itself and returns ``True`` (*handled*), a string saying what went wrong
  (*silent*), or ``{"class": ..., "note": ...}`` (*lost*, *security*, ...); an exception is
  *unclear* unless it matches ``pattern``;
- ``expect = "cli"``: ``fn`` returns the command line's outcome; exit code 1 or 2 with
  ``pattern`` in its error output and no traceback is *clear*, a traceback or another message
  *unclear*, exit 0 *silent*.

``fn(ctx)`` gets the worker's context (``ctx.dj``, ``ctx.jnp``, ``ctx.tmp()``, shared small
solutions, the command line). Sizes are tiny (``n_steps`` <= 5 or ``t_max`` = 1, ``n_traj`` = 64)
and the compiled programs are shared where the shapes allow (one ``vmap`` call answers the
traced-value rows), so that the table runs in minutes on 2 cores.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, NamedTuple


class Case(NamedTuple):
    id: str
    group: str
    expect: str  # refuse | fail | correct | cli
    pattern: str | None
    fn: Callable
    note: str = ""


GROUPS = ("committees/read-outs", "teacher-student/regression", "momentum/Langevin/fdt", "bias", "schedules",
          "grids", "tune", "save/load", "caches", "CLI", "numerics float32/float64", "jit/vmap/grad")

CASES: list[Case] = []


def _add(group, expect):
    def add(cid, pattern, fn, note=""):
        assert all(c.id != cid for c in CASES), cid
        CASES.append(Case(cid, group, expect, pattern, fn, note))
    return add


# ---------------------------------------------------------------------------------------------
# shared inputs
# ---------------------------------------------------------------------------------------------
def P(ctx, **kw):
    return ctx.dj.Problem(ctx.dj.TwoCluster(0.5), "logistic", **{**dict(alpha=2.0, delta=0.5, lam=0.0, R0=0.01),
                                                                  **kw})


def TS(ctx, **kw):
    return ctx.dj.Problem(ctx.dj.TeacherStudent(), **kw)


SMALL = dict(t_max=1.0, n_traj=64)
TINY = dict(n_steps=3, n_traj=64)


def solve(ctx, problem=None, algorithm=None, **kw):
    dj = ctx.dj
    return dj.solve(P(ctx) if problem is None else problem, dj.GD(0.2) if algorithm is None else algorithm,
                    **{**SMALL, **kw})


def soft(ctx):
    return lambda r: ctx.jnp.mean(ctx.jnp.tanh(r), axis=-1)


# =============================================================================================
# committees and read-outs
# =============================================================================================
add = _add("committees/read-outs", "refuse")
add("soft_committee_K_zero", r"K must be an integer >= 1", lambda c: c.dj.SoftCommittee(0))
add("soft_committee_K_fraction", r"K must be an integer >= 1", lambda c: c.dj.SoftCommittee(2.5))
add("soft_committee_K_flag", r"K must be an integer >= 1", lambda c: c.dj.SoftCommittee(True))
add("sign_committee_beta_negative", r"beta must satisfy beta > 0", lambda c: c.dj.SignCommittee(3, -1.0))
add("sign_committee_beta_string", r"beta must be a real number", lambda c: c.dj.SignCommittee(3, "4"))
add("sign_committee_beta_nan", r"beta must be finite \(beta > 0\)", lambda c: c.dj.SignCommittee(3, float("nan")))
add("custom_readout_fn_string", r"fn must be a function of one argument", lambda c: c.dj.CustomReadout(2, "tanh"))
add("custom_readout_fn_no_argument", r"fn must be a function of one argument.*cannot be called",
    lambda c: c.dj.CustomReadout(2, lambda: 0.0))
add("custom_readout_root_keeps_axis", r"root: root\(rest\) must return one value of the last field per point",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, soft(c), root=lambda rest: rest)))
add("custom_readout_root_wrong", r"root: root\(rest\) is not where f changes sign",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, soft(c), root=lambda rest: c.jnp.zeros(rest.shape[:-1]))))
add("custom_readout_root_nan", r"root: root\(rest\) is NaN",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, soft(c), root=lambda rest: c.jnp.full(rest.shape[:-1],
                                                                                                  c.jnp.nan))))
add("custom_readout_root_decreasing_f", r"f increasing in the last field",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, lambda r: -soft(c)(r), root=lambda rest: -rest[..., 0])))
add("custom_readout_root_fails", r"root: root\(rest\) fails on the other fields",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, soft(c), root=lambda rest: rest.nonexistent)))
add("custom_readout_sums_samples", r"readout: f\(r\) must map the K fields on the last axis to one output",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, lambda r: c.jnp.sum(r))))
add("committee_readout_string", r"readout must be SoftCommittee\(K\)", lambda c: c.dj.Committee(TS(c), "soft"))
add("committee_problem_dict", r"problem must be a dmft_jax.Problem", lambda c: c.dj.Committee({"alpha": 2},
                                                                                              c.dj.SoftCommittee(2)))
add("committee_m0_wrong_length", r"m0 must have one overlap per unit, shape \(2,\)",
    lambda c: c.dj.Committee(TS(c), c.dj.SoftCommittee(2), m0=[0.1, 0.2, 0.3]))
add("committee_m0_nan", r"m0 must be finite", lambda c: c.dj.Committee(TS(c), c.dj.SoftCommittee(2), m0=float("nan")))
add("committee_with_bias", r"problem: a learnable bias is not built for committee machines",
    lambda c: c.dj.Committee(TS(c, bias=0.0), c.dj.SoftCommittee(2)))
add("committee_symmetric_string", r"symmetric must be True or False",
    lambda c: c.dj.Committee(TS(c), c.dj.SoftCommittee(2), symmetric="yes"))
add("committee_symmetric_unequal_m0", r"symmetric: exchangeable units need equal initial overlaps m0",
    lambda c: c.dj.Committee(TS(c), c.dj.SoftCommittee(2), m0=[0.1, 0.2], symmetric=True))
add("committee_symmetric_asymmetric_readout", r"symmetric: the read-out changes when the units are permuted",
    lambda c: c.dj.Committee(TS(c), c.dj.CustomReadout(2, lambda r: c.jnp.tanh(r[..., 0]) + 0.5 * c.jnp.tanh(r[..., 1])),
                             symmetric=True))
add("committee_sweep_adjoint", r"adjoint: the hand-written SweepAdjoint is built for a single unit",
    lambda c: c.dj.solve(c.dj.Committee(TS(c), c.dj.SoftCommittee(2)), c.dj.GD(0.2), adjoint=c.dj.SweepAdjoint(),
                         **TINY))
add("committee_saved_trajectories", r"Trajectories.save .*built for a single unit",
    lambda c: c.dj.solve(c.dj.Committee(TS(c), c.dj.SoftCommittee(2)), c.dj.GD(0.2),
                         trajectories=c.dj.Trajectories(save=4), **TINY))
add("committee_readout_beta_array", r"readout.beta must be a single number \(use jax.vmap",
    lambda c: c.dj.Committee(TS(c), c.dj.SignCommittee(3, c.jnp.array([1.0, 2.0]))))
add("committee_gd_long_time", r"problem: gd_long_time runs a single unit",
    lambda c: c.dj.gd_long_time(c.dj.Committee(TS(c), c.dj.SoftCommittee(2))))
add("committee_symmetric_keyword_conflict", r"symmetric: the committee was built with symmetric=True",
    lambda c: c.dj.solve(c.dj.Committee(TS(c), c.dj.SoftCommittee(2), symmetric=True), c.dj.GD(0.2), symmetric=False,
                         **TINY))
add("committee_cross_memory_on_one_unit", r"cross_memory: options of a committee machine",
    lambda c: solve(c, cross_memory=False))


def _committee_vmap(c, point):
    dj, jnp = c.dj, c.jnp
    sol = c.shared("committee_vmap", lambda: c.jax.vmap(
        lambda b: dj.solve(dj.Committee(TS(c), dj.SignCommittee(3, b)), dj.GD(0.2), n_steps=3, n_traj=16))(
        jnp.array([2.0, -1.0])))
    return c.point(sol, point)


_add("committees/read-outs", "fail")("committee_vmap_sign_beta_negative", r"failed: beta: beta > 0",
                                     lambda c: _committee_vmap(c, 1))
_add("committees/read-outs", "correct")("committee_vmap_sign_beta_valid_point", None,
                                        lambda c: c.valid_point(c.shared("committee_vmap"), 0))

# =============================================================================================
# teacher-student and regression
# =============================================================================================
add = _add("teacher-student/regression", "refuse")
add("label_noise_half", r"label_noise must satisfy 0 <= label_noise < 0.5", lambda c: c.dj.TeacherStudent(0.5))
add("label_noise_negative", r"label_noise must satisfy 0 <= label_noise < 0.5", lambda c: c.dj.TeacherStudent(-0.1))
add("label_noise_string", r"label_noise must be a real number", lambda c: c.dj.TeacherStudent("0.1"))
add("label_noise_nan", r"label_noise must be finite", lambda c: c.dj.TeacherStudent(float("nan")))
add("regression_noise_negative", r"noise must satisfy noise >= 0", lambda c: c.dj.TeacherRegression(-1.0))
add("regression_noise_inf", r"noise must be finite", lambda c: c.dj.TeacherRegression(float("inf")))
add("regression_f_number", r"f must be a function of one argument", lambda c: c.dj.TeacherRegression(0.1, f=3.0))
add("regression_f_two_arguments", r"f must be a function of one argument, the teacher field nu.*cannot be called",
    lambda c: c.dj.TeacherRegression(f=lambda nu, k: nu))
add("regression_f_numpy", r"f: JAX cannot trace the label function.*jax.numpy",
    lambda c: c.dj.TeacherRegression(f=c.np.tanh))
add("regression_f_not_elementwise", r"f must be elementwise", lambda c: c.dj.TeacherRegression(f=lambda nu: nu.sum()))
add("regression_f_fails", r"f: calling f\(nu\) on an array of teacher fields failed \(AttributeError",
    lambda c: c.dj.TeacherRegression(f=lambda nu: nu.nonexistent))
add("teacher_delta_not_one", r"delta must satisfy delta = 1 for teacher-student data",
    lambda c: c.dj.Problem(c.dj.TeacherStudent(), delta=0.5))
add("regression_margin_loss", r"loss: TeacherRegression passes the loss its residual",
    lambda c: c.dj.Problem(c.dj.TeacherRegression(), "logistic"))
add("classification_residual_loss", r"loss: TeacherStudent passes the loss its margin",
    lambda c: c.dj.Problem(c.dj.TeacherStudent(), "squared_error"))
add("pseudo_huber_zero", r"beta must satisfy beta > 0", lambda c: c.dj.PseudoHuber(0.0))
add("pseudo_huber_string", r"beta must be a real number \(beta > 0\)", lambda c: c.dj.PseudoHuber("1"))
add("erm_teacher_hinge", r"loss: erm of teacher-student data needs a twice differentiable loss",
    lambda c: c.dj.erm(c.dj.Problem(c.dj.TeacherStudent(), "hinge", lam=0.1)))
add("erm_teacher_nodes", r"n_nodes must satisfy 8 <= n_nodes <= 80", lambda c: c.dj.erm(TS(c), n_nodes=200))
add("erm_lam_nan_by_tree_at", r"lam must be finite \(lam >= 0\)",
    lambda c: c.dj.erm(c.eqx.tree_at(lambda p: p.lam, TS(c, lam=0.1), float("nan"))))
add("erm_max_iter_nan", r"max_iter must be an integer >= 1", lambda c: c.dj.erm(TS(c, lam=0.1), max_iter=float("nan")))
add("erm_tol_negative", r"tol must satisfy tol > 0", lambda c: c.dj.erm(TS(c, lam=0.1), tol=-1.0))
add("ridge_gd_momentum", r"no momentum", lambda c: c.dj.ridge_gd(c.dj.Problem(c.dj.TeacherRegression()),
                                                                c.dj.GD(0.2, beta=0.5)))
add("ridge_gd_classification", r"TeacherRegression", lambda c: c.dj.ridge_gd(TS(c), c.dj.GD(0.2)))
add("ridge_gd_nodes_zero", r"n_nodes must be an integer >= 16",
    lambda c: c.dj.ridge_gd(c.dj.Problem(c.dj.TeacherRegression()), c.dj.GD(0.2), n_nodes=0))
add("grid_teacher_rho", r"TeacherStudent has no parameter 'rho'",
    lambda c: c.dj.solve_grid(TS(c), c.dj.GD(0.2), {"rho": [0.3]}, **SMALL))
add("label_noise_array_outside_vmap", r"model.label_noise must be a single number",
    lambda c: solve(c, c.dj.Problem(c.dj.TeacherStudent(c.jnp.array([0.1, 0.2])))))
add("alpha_star_bias_string", r"bias must be True .* or False", lambda c: c.dj.alpha_star(0.5, 0.2, bias="no"))

# =============================================================================================
# momentum, Langevin noise, fdt
# =============================================================================================
add = _add("momentum/Langevin/fdt", "refuse")
add("momentum_one", r"beta must satisfy 0 <= beta < 1", lambda c: c.dj.GD(0.2, beta=1.0))
add("momentum_negative", r"beta must satisfy 0 <= beta < 1", lambda c: c.dj.GD(0.2, beta=-0.1))
add("momentum_string", r"beta must be a real number", lambda c: c.dj.GD(0.2, beta="0.5"))
add("momentum_nan", r"beta must be finite \(0 <= beta < 1\)", lambda c: c.dj.SGD(0.2, 0.3, beta=float("nan")))
add("temperature_negative", r"temperature must satisfy temperature >= 0", lambda c: c.dj.GD(0.2, temperature=-1.0))
add("temperature_string", r"temperature must be a real number", lambda c: c.dj.GD(0.2, temperature="hot"))
add("temperature_inf", r"temperature must be finite", lambda c: c.dj.PersistentSGD(0.2, 0.3, 2.0,
                                                                                  temperature=float("inf")))
add("nesterov_without_momentum", r"update: Nesterov takes the momentum beta; give beta=",
    lambda c: c.dj.GD(0.2, update=c.dj.Nesterov()))
add("update_string", r"update must be a dmft_jax.AbstractUpdate", lambda c: c.dj.GD(0.2, beta=0.5, update="nesterov"))
add("update_class", r"update must be a dmft_jax.AbstractUpdate", lambda c: c.dj.GD(0.2, beta=0.5,
                                                                                  update=c.dj.Nesterov))
add("momentum_array_outside_vmap", r"beta must be a single number \(use jax.vmap",
    lambda c: solve(c, algorithm=c.dj.SGD(0.2, 0.3, beta=c.jnp.array([0.1, 0.2]))))
add("momentum_sweep_adjoint", r"adjoint: SweepAdjoint does not cover momentum",
    lambda c: solve(c, algorithm=c.dj.GD(0.2, beta=0.5), adjoint=c.dj.SweepAdjoint()))
add("fdt_t_min_negative", r"t_min must be in", lambda c: c.dj.fdt(c.sol(), t_min=-1.0))
add("fdt_t_min_string", r"t_min must be a real number \(a time in \[", lambda c: c.dj.fdt(c.sol(), t_min="late"))
add("fdt_of_a_number", r"solution: fdt analyses a DMFT solution", lambda c: c.dj.fdt(3.0))
add("fdt_of_a_failed_solution", r"solution: fdt of a failed solve \(the dynamics diverged", lambda c: c.dj.fdt(c.failed_sol()))
add("gd_long_time_eta_negative", r"eta must satisfy eta > 0", lambda c: c.dj.gd_long_time(P(c), eta=-0.5))
add("gd_long_time_rtol_string", r"rtol must be a real number \(rtol > 0\)", lambda c: c.dj.gd_long_time(P(c), rtol="tight"))
add("gd_long_time_doublings_fraction", r"max_doublings must be an integer >= 0",
    lambda c: c.dj.gd_long_time(P(c), max_doublings=1.5))

# =============================================================================================
# the learnable bias
# =============================================================================================
add = _add("bias", "refuse")
add("bias_false", r"bias must be a real number, not a flag", lambda c: c.dj.Problem(bias=False))
add("bias_string", r"bias must be a real number", lambda c: c.dj.Problem(bias="0"))
add("bias_nan", r"bias must be finite", lambda c: c.dj.Problem(bias=float("nan")))
add("bias_complex", r"bias must be a real number", lambda c: c.dj.Problem(bias=1j))
add("bias_array_outside_vmap", r"bias must be a single number \(use jax.vmap",
    lambda c: solve(c, c.dj.Problem(bias=c.jnp.array([0.1, 0.2]))))
add("bias_erm_teacher", r"bias: erm with an intercept supports TwoCluster", lambda c: c.dj.erm(TS(c, bias=0.0)))
add("bias_erm_hinge", r"loss: erm with an intercept needs a differentiable loss",
    lambda c: c.dj.erm(c.dj.Problem(loss="hinge", bias=0.0)))
add("bias_damped_iteration", r"solver: a learnable bias is solved by CausalSweep only",
    lambda c: solve(c, c.dj.Problem(bias=0.0), solver=c.dj.DampedIteration()))
add("bias_sweep_adjoint", r"adjoint: SweepAdjoint does not cover .*a learnable bias",
    lambda c: solve(c, c.dj.Problem(bias=0.0), adjoint=c.dj.SweepAdjoint()))
add("bias_grid_without_bias", r"params: the problem has no learnable bias",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"bias": [0.1]}, **SMALL))
add("bias_ridge_gd", r"bias: ridge_gd has no learnable bias",
    lambda c: c.dj.ridge_gd(c.dj.Problem(c.dj.TeacherRegression(), bias=0.0), c.dj.GD(0.2)))
add("alpha_star_bias_number", r"bias must be True .* or False", lambda c: c.dj.alpha_star(0.5, 0.2, bias=1))
add("bias_model_without_bias_error", r"bias: .* has no generalisation error with a bias",
    lambda c: c.dj.Problem(c.custom_model(), bias=0.0))

# =============================================================================================
# schedules
# =============================================================================================
add = _add("schedules", "refuse")
add("decay_init_negative", r"init must satisfy init > 0", lambda c: c.dj.ExponentialDecay(-0.1, 0.1))
add("decay_rate_negative", r"rate must satisfy rate >= 0", lambda c: c.dj.ExponentialDecay(0.1, -1.0))
add("decay_floor_negative", r"floor must satisfy floor >= 0", lambda c: c.dj.ExponentialDecay(0.1, 0.1, -1.0))
add("decay_init_string", r"init must be a real number", lambda c: c.dj.ExponentialDecay("0.1", 0.1))
add("decay_rate_nan", r"rate must be finite", lambda c: c.dj.ExponentialDecay(0.1, float("nan")))
add("piecewise_boundary_negative", r"boundaries must be strictly increasing step indices >= 1",
    lambda c: c.dj.PiecewiseConstant([0.2, 0.1], [-3]))
add("piecewise_boundary_repeated", r"boundaries must be strictly increasing",
    lambda c: c.dj.PiecewiseConstant([0.2, 0.1, 0.05], [4, 4]))
add("piecewise_boundary_fraction", r"boundaries must be whole step indices",
    lambda c: c.dj.PiecewiseConstant([0.2, 0.1], [2.5]))
add("piecewise_boundary_string", r"boundaries must be (a list of step indices|whole step indices)",
    lambda c: c.dj.PiecewiseConstant([0.2, 0.1], "ab"))
add("piecewise_value_negative", r"values must satisfy values > 0", lambda c: c.dj.PiecewiseConstant([0.2, -0.1], [3]))
add("piecewise_count_mismatch", r"boundaries: need len\(values\) - 1 = 1 step boundaries",
    lambda c: c.dj.PiecewiseConstant([0.2, 0.1], [2, 3]))
add("schedule_turns_negative", r"eta: the schedule .* gives eta_k = -0.01 at step k = 21 \(t = 2.1\), before its steps",
    lambda c: solve(c, algorithm=c.dj.GD(lambda k: 0.2 - 0.01 * k), t_max=10.0))
add("schedule_turns_nan", r"eta: the schedule .* gives eta_k = nan at step k = 4",
    lambda c: solve(c, algorithm=c.dj.GD(lambda k: c.jnp.where(k > 3, c.jnp.nan, 0.2)), t_max=10.0))
add("schedule_no_argument", r"eta must be a function of one argument, the step indices",
    lambda c: c.dj.GD(lambda: 0.1))
add("schedule_too_short", r"t_max: the schedule ExponentialDecay\(.*\) adds up to only",
    lambda c: solve(c, algorithm=c.dj.GD(c.dj.ExponentialDecay(0.2, 1e-3, 1e-9)), t_max=1e3))
add("batch_schedule_above_one", r"b must satisfy 0 < b <= 1",
    lambda c: solve(c, algorithm=c.dj.SGD(0.2, c.dj.PiecewiseConstant([0.3, 1.2], [2]))))
add("persistent_schedule_beyond_tau", r"tau must satisfy tau >= eta",
    lambda c: solve(c, algorithm=c.dj.PersistentSGD(c.dj.PiecewiseConstant([0.2, 2.0], [3]), 0.3, 1.0)))
add("schedule_returns_string", r"eta: the schedule function .* returned 'fast'", lambda c: solve(c, algorithm=c.dj.GD(lambda k: "fast")))
add("schedule_init_array_outside_vmap", r"eta.init must be a single number",
    lambda c: solve(c, algorithm=c.dj.GD(c.dj.ExponentialDecay(c.jnp.array([0.2, 0.3]), 0.1))))
add = _add("schedules", "correct")
add("schedule_reaches_t_max", None, lambda c: c.check(
    float(solve(c, algorithm=c.dj.GD(c.dj.ExponentialDecay(0.2, 0.01, 0.05))).t[-1]) >= 1.0 - 1e-9,
    "the decaying schedule's run ends before t_max"))
add("schedule_negative_after_t_max", None, lambda c: c.check(
    bool(solve(c, algorithm=c.dj.GD(lambda k: 0.2 - 0.01 * k)).ok), "a schedule positive up to t_max was refused"))

# =============================================================================================
# grids
# =============================================================================================
add = _add("grids", "refuse")
G = dict(**SMALL)
add("grid_class_variable", r"unknown hyperparameter 'default_delta'; this problem and algorithm can grid lam, alpha, "
                           r"delta, R0, m0, rho, eta$",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"default_delta": [0.1]}, **G))
add("grid_teacher_flag", r"unknown hyperparameter 'unit_delta'",
    lambda c: c.dj.solve_grid(TS(c), c.dj.GD(0.2), {"unit_delta": [1.0]}, **G))
add("grid_teacher_function", r"unknown hyperparameter 'f'",
    lambda c: c.dj.solve_grid(c.dj.Problem(c.dj.TeacherRegression()), c.dj.GD(0.2), {"f": [1.0]}, **G))
add("grid_empty_list", r"params\['lam'\] must be a non-empty 1-d list",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": []}, **G))
add("grid_nested_list", r"params\['lam'\] must be a non-empty 1-d list",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [[0.1, 0.2]]}, **G))
add("grid_string_values", r"params\['lam'\] must be .*numbers",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": ["a", "b"]}, **G))
add("grid_nan_value", r"lam must be finite \(lam >= 0\)",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [0.1, float("nan")]}, **G))
add("grid_negative_value", r"lam must satisfy lam >= 0",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [0.1, -1.0]}, **G))
add("grid_eta_without_n_steps", r"n_steps: eta is gridded",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"eta": [0.1, 0.2]}, **G))
add("grid_zip_unequal", r"params: with product=False all value lists need the same length",
    lambda c: c.dj.solve_grid(P(c), c.dj.SGD(0.2, 0.3), {"lam": [0.1], "b": [0.1, 0.2]}, product=False, **G))
add("grid_params_list", r"params must be a non-empty dict",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), [("lam", [0.1])], **G))
add("grid_batch_size_zero", r"batch_size must be an integer >= 1",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [0.1]}, batch_size=0, **G))
add("grid_batch_size_fraction", r"batch_size must be an integer >= 1",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [0.1]}, batch_size=2.5, **G))
add("grid_product_string", r"product must be True or False",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [0.1]}, product="yes", **G))
add("grid_throw_string", r"throw must be True or False",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"lam": [0.1]}, throw="yes", **G))
add("grid_tau_on_sgd", r"params: SGD has no parameter 'tau'",
    lambda c: c.dj.solve_grid(P(c), c.dj.SGD(0.2, 0.3), {"tau": [1.0]}, **G))
add("grid_momentum_absent", r"params: GD has no parameter 'beta' \(build it with GD\(..., beta=...\)",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"beta": [0.5]}, **G))
add("grid_schedule_eta", r"params: eta is a schedule",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(c.dj.ExponentialDecay(0.2, 0.1)), {"eta": [0.1]}, n_steps=3, n_traj=64))
add("grid_committee_m0", r"params: m0 of a committee is one overlap per unit",
    lambda c: c.dj.solve_grid(c.dj.Committee(TS(c), c.dj.SoftCommittee(2)), c.dj.GD(0.2), {"m0": [0.1]}, **TINY))
add("grid_steps_beyond_memory", r"T = 5000000 steps: its kernels and histories alone, .*, for 2 points need about",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(1e-6), {"lam": [0.0, 0.1]}, t_max=5.0, n_traj=64))
add("grid_unknown_name", r"params: unknown hyperparameter 'gamma'",
    lambda c: c.dj.solve_grid(P(c), c.dj.GD(0.2), {"gamma": [0.1]}, **G))

# =============================================================================================
# tune
# =============================================================================================
add = _add("tune", "refuse")
T_KW = dict(t_max=1.0, n_traj=64, steps=1)
add("tune_params_string", r"params must be a list of names", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), "lam", **T_KW))
add("tune_params_repeated", r"params: each name once", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam", "lam"], **T_KW))
add("tune_params_unknown", r"params: 'alpha' cannot be tuned", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["alpha"],
                                                                                  **T_KW))
add("tune_params_empty", r"params: give at least one of", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), [], **T_KW))
add("tune_params_number", r"params must be a list of names", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), [3], **T_KW))
add("tune_steps_zero", r"steps must be an integer >= 1", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"], t_max=1.0, steps=0))
add("tune_steps_fraction", r"steps must be an integer >= 1", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"], t_max=1.0,
                                                                            n_traj=64, steps=2.5))
add("tune_errors_word", r"errors must be 'auto'", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"], errors="yes",
                                                                     **T_KW))
add("tune_b_start_full_batch", r"b: tuning b needs starting values strictly inside \(0, 1\)",
    lambda c: c.dj.tune(P(c), c.dj.SGD(0.2, 1.0), ["b"], **T_KW))
add("tune_temperature_start_zero", r"temperature: tuning temperature needs a starting value > 0",
    lambda c: c.dj.tune(P(c), c.dj.GD(0.2, temperature=0.0), ["temperature"], **T_KW))
add("tune_optimizer_string", r"optimizer must be an optax", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"],
                                                                              optimizer="adam", **T_KW))
add("tune_objective_string", r"objective must be a function", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"],
                                                                                objective="eps_gen", **T_KW))
add("tune_mode_word", r"mode must be 'auto', 'forward' or 'reverse'",
    lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"], mode="backward", **T_KW))
add("tune_key_string", r"key must be an integer seed", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"], key="a",
                                                                          **T_KW))
add("tune_adjoint_passed", r"adjoint: set by tune's mode", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"],
                                                                              adjoint=c.dj.SweepAdjoint(), **T_KW))
add("tune_refresh_string", r"refresh must be True or False", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"],
                                                                                refresh="yes", **T_KW))
add("tune_eta_tiny", r"t_max = 5 at eta = 1e-09 is T = 5000000000 steps",
    lambda c: c.dj.tune(P(c), c.dj.GD(1e-9), ["lam"], t_max=5.0, n_traj=64, steps=1))
add("tune_log_every_zero", r"log_every must be an integer >= 1", lambda c: c.dj.tune(P(c), c.dj.GD(0.2), ["lam"],
                                                                                    log_every=0, **T_KW))

# =============================================================================================
# save and load
# =============================================================================================
add = _add("save/load", "refuse")
add("save_a_number", r"result must be a dmft_jax Solution or Simulation", lambda c: c.dj.save(3, c.tmp() / "x"))
add("save_empty_name", r"path must be a non-empty file name", lambda c: c.dj.save(c.sol(), ""))
add("save_overwrite_string", r"overwrite must be True or False", lambda c: c.dj.save(c.sol(), c.tmp() / "r",
                                                                                    overwrite="yes"))
add("save_name_too_long", r"path: the file name .* is 256 bytes, above the 255 this file system allows",
    lambda c: c.dj.save(c.sol(), c.tmp() / ("r" * 252)))
add("save_folder_is_a_file", r"path: cannot create the folder", lambda c: c.save_under_a_file())
add("save_name_is_a_folder", r"path: .* exists and is not a file", lambda c: c.save_onto_a_folder())
add("save_twice", r"exists: pass overwrite=True", lambda c: c.save_twice())
add("load_missing", r"cannot read arrays", lambda c: c.dj.load(c.tmp() / "nothing"))
add("load_shortened_array", r"array 'm' is not the one saved", lambda c: c.load_edited("array"))
add("load_edited_json", r"edited after the save: problem", lambda c: c.load_edited("json"))
add("load_truncated", r"cannot read arrays", lambda c: c.load_edited("truncate"))
add("load_foreign_npz", r"missing arrays|not those its metadata lists", lambda c: c.load_edited("foreign"))
add("load_format_version_string", r"format_version '1' is not supported", lambda c: c.load_edited("version"))
add("save_a_loaded_result", r"result must be a dmft_jax Solution or Simulation",
    lambda c: c.dj.save(c.dj.load(c.dj.save(c.sol(), c.tmp() / "s")), c.tmp() / "again"))
add = _add("save/load", "correct")
add("save_251_byte_name", None, lambda c: c.save_long_name())
add("load_without_json", None, lambda c: c.load_without_json())
add("save_killed_at_every_operation", None, lambda c: c.killed_saves(overwrite=False))
add("overwrite_killed_at_every_operation", None, lambda c: c.killed_saves(overwrite=True))
add("two_concurrent_saves", None, lambda c: c.concurrent_saves())
add("save_dotted_names", None, lambda c: c.dotted_names())
add("save_failed_solution_records_failure", None, lambda c: c.saved_failure())

# =============================================================================================
# caches (the trace cache with planted files, the compilation cache's folder)
# =============================================================================================
add = _add("caches", "correct")
for kind in ("crafted pickle", "format-1 pickle", "truncated", "wrong key", "a FIFO", "a link to /dev/zero",
             "another format number", "a class outside dmft_jax"):
    add("planted_" + kind.replace(" ", "_").replace("/", "").replace("-", "_"), None,
        (lambda k: lambda c: c.planted(k))(kind))
add("planted_curvature_marker", None, lambda c: c.planted_marker())
add = _add("caches", "refuse")
add("cache_folder_writable_by_others", r"writable by other users.*shared=True", lambda c: c.open_cache_folder())
add("cache_shared_string", r"shared must be True or False",
    lambda c: c.dj.enable_compilation_cache(c.tmp() / "cc", shared="no"))
add("cache_trace_cache_string", r"trace_cache must be True or False",
    lambda c: c.dj.enable_compilation_cache(c.tmp() / "cc", trace_cache="yes"))
add("cache_folder_under_a_file", r"path: cannot create the compilation cache folder",
    lambda c: c.dj.enable_compilation_cache(c.a_file() / "sub"))
add("cache_min_compile_time_negative", r"min_compile_time_secs must be >= 0",
    lambda c: c.dj.enable_compilation_cache(c.tmp() / "cc", min_compile_time_secs=-1.0))

# =============================================================================================
# the command line (refusals: nothing is solved)
# =============================================================================================
add = _add("CLI", "cli")
add("cli_t_max_negative", r"--t-max: t_max must satisfy t_max > 0", lambda c: c.cli(["solve", "--t-max", "-1"]))
add("cli_t_max_string", r"argument --t-max: invalid float value", lambda c: c.cli(["solve", "--t-max", "long"]))
add("cli_n_traj_odd", r"--n-traj: n_traj must be even", lambda c: c.cli(["solve", "--n-traj", "63"]))
add("cli_eta_zero", r"--eta: eta must satisfy eta > 0", lambda c: c.cli(["solve", "--eta", "0"]))
add("cli_lam_nan", r"--lam: lam must be finite \(lam >= 0\)", lambda c: c.cli(["solve", "--lam", "nan"]))
add("cli_tune_lr_nan", r"--lr must be a finite number", lambda c: c.cli(["tune", "--lr", "nan"]))
add("cli_tune_steps_zero", r"--steps: steps must be an integer >= 1", lambda c: c.cli(["tune", "--steps", "0"]))
add("cli_tune_params_repeated", r"--params: each name once", lambda c: c.cli(["tune", "--params", "b", "b"]))
add("cli_simulate_d_one", r"--d must be an integer >= 2", lambda c: c.cli(["simulate", "--d", "1"]))
add("cli_unknown_loss", r"--loss: unknown name 'nope'; valid names are", lambda c: c.cli(["solve", "--loss", "nope"]))
add("cli_unknown_subcommand", r"invalid choice: 'solv' \(choose from", lambda c: c.cli(["solv"]))
add("cli_seed_negative", r"--seed: key must be an integer seed in \[0, 2\*\*63\)", lambda c: c.cli(["solve", "--seed", "-1"]))
add("cli_groups_one", r"--groups: GroupErrors.groups must be an integer >= 2", lambda c: c.cli(["solve", "--groups", "1"]))
add("cli_sharpness_negative", r"--sharpness: beta must satisfy beta > 0", lambda c: c.cli(["solve", "--loss", "smooth_hinge", "--sharpness",
                                                                 "-1"]))
add("cli_eta_decay_negative", r"--eta-decay: rate must satisfy rate >= 0", lambda c: c.cli(["solve", "--eta-decay", "-0.1"]))
add("cli_probes_zero", r"--probes: n_probes must be an integer >= 1", lambda c: c.cli(["solve", "--probes", "0"]))
add("cli_n_chi_zero", r"--n-chi: n_chi must be an integer with 1 <= n_chi <= n_traj", lambda c: c.cli(["solve", "--n-chi", "0"]))
add("cli_rho_one", r"--rho: rho must satisfy 0 < rho < 1", lambda c: c.cli(["solve", "--rho", "1"]))
add("cli_out_is_a_file", r"--out: .* exists and is not a folder", lambda c: c.cli(["solve", "--t-max", "1", "--n-traj", "64"], out=c.a_file()))
add("cli_curves_is_a_folder", r"--out: .*curves.png exist and are not files", lambda c: c.cli_curves_folder())

# =============================================================================================
# numerics: float32 and float64
# =============================================================================================
add = _add("numerics float32/float64", "refuse")
add("dtype_float16", r"dtype must be float32 or float64", lambda c: solve(c, dtype="float16"))
add("dtype_complex", r"dtype must be float32 or float64", lambda c: solve(c, dtype="complex64"))
add("alpha_inf", r"alpha must be finite \(alpha > 0\)", lambda c: c.dj.Problem(alpha=float("inf")))
add("delta_tiny_negative", r"delta must satisfy delta > 0", lambda c: c.dj.Problem(delta=-1e-300))
add("t_max_inf", r"t_max must be finite", lambda c: solve(c, t_max=float("inf")))
add("t_max_nan", r"t_max must be finite", lambda c: solve(c, t_max=float("nan")))
add("eta_tiny_beyond_memory", r"t_max = 5 at eta = 1e-09 is T = 5000000000 steps: its kernels",
    lambda c: solve(c, algorithm=c.dj.GD(1e-9), t_max=5.0))
add("n_steps_beyond_memory", r"n_steps = 1000000000 is T = 1000000000 steps",
    lambda c: solve(c, n_steps=10**9, t_max=None))
add("n_traj_beyond_memory", r"n_traj = 1099511627776: even a single step needs about .* GiB",
    lambda c: solve(c, n_traj=2**40))
add("n_steps_flag", r"n_steps must be an integer >= 1", lambda c: solve(c, n_steps=True))
add("key_negative", r"key must be an integer seed in \[0, 2\*\*63\)", lambda c: solve(c, key=-1))
add("simulate_eta_tiny", r"t_max = 5 at eta = 1e-10 is T = 50000000000 steps: its per-step tables",
    lambda c: c.dj.simulate(P(c), c.dj.GD(1e-10), t_max=5.0, d=50))
add("pivot_rtol_nan", r"pivot_rtol", lambda c: solve(c, solver=c.dj.CausalSweep(pivot_rtol=float("nan"))))
add = _add("numerics float32/float64", "correct")
add("float32_step_count", None, lambda c: c.check(
    solve(c, algorithm=c.dj.GD(c.jnp.asarray(0.2, c.jnp.float32)), t_max=2.0, dtype="float32").config.n_steps == 10,
    "eta = 0.2 in float32 to t_max = 2 took a step count other than 10"))
add("float64_long_count_exact", None, lambda c: c.check(
    c.count_steps(c.dj.GD(1e-3), 5.0) == 5000, "t_max = 5 at eta = 1e-3 is not 5000 steps"))
add("typed_key", None, lambda c: c.check(bool(solve(c, key=c.jax.random.key(0)).ok), "a typed jax.random.key failed"))
add("denormal_lam", None, lambda c: c.check(bool(solve(c, P(c, lam=1e-320)).ok), "lam = 1e-320 failed"))

# =============================================================================================
# jit, vmap and grad with bad traced values: one vmap call over every parameter (one compile)
# =============================================================================================
TRACED = [  # (row, parameter set inside vmap, value, the check the message must name)
    ("valid", None, None, None),
    ("lam", "lam", -1.0, r"lam: lam >= 0"),
    ("delta", "delta", -0.5, r"delta: delta > 0"),
    ("alpha", "alpha", 0.0, r"alpha: alpha > 0"),
    ("R0", "R0", float("nan"), r"R0: R0 >= 0"),
    ("m0", "m0", float("nan"), r"m0: a finite number"),
    ("rho", "rho", 1.5, r"rho: 0 < rho < 1"),
    ("loss_beta", "loss_beta", -1.0, r"beta: beta > 0"),
    ("eta", "eta", -0.2, r"eta: eta > 0"),
    ("b", "b", 1.5, r"b: 0 < b <= 1"),
    ("tau", "tau", 0.1, r"tau: tau >= eta"),
    ("momentum", "beta", 1.5, r"beta: 0 <= beta < 1"),
    ("temperature", "temperature", -1.0, r"temperature: temperature >= 0"),
]
add = _add("jit/vmap/grad", "fail")
for row, name, value, pattern in TRACED[1:]:
    add(f"vmap_{row}", pattern, (lambda i: lambda c: c.traced(i))(TRACED.index((row, name, value, pattern))))
_add("jit/vmap/grad", "correct")("vmap_valid_point_unaffected", None, lambda c: c.valid_point(c.traced_all(), 0))
add("vmap_label_noise", r"label_noise: 0 <= label_noise < 0.5", lambda c: c.traced_teacher(1))
add("jit_invalid_lam", r"lam: lam >= 0", lambda c: c.jit_lam(-1.0))
add("erm_vmap_lam", r"lam: lam >= 0", lambda c: c.erm_vmap(1))
add = _add("jit/vmap/grad", "refuse")
add("jit_throw_names_check", r"failed: lam: lam >= 0", lambda c: c.jit_throw())
add("jit_eta_traced_without_n_steps", r"eta is traced \(inside jit/vmap/grad\): pass n_steps",
    lambda c: c.jax.jit(lambda e: solve(c, algorithm=c.dj.GD(e)))(0.2))
add("vmap_eta_array_without_n_steps", r"eta is traced|pass n_steps",
    lambda c: c.jax.vmap(lambda e: solve(c, algorithm=c.dj.GD(e)))(c.jnp.array([0.1, 0.2])))
add = _add("jit/vmap/grad", "correct")
add("grad_at_invalid_lam_is_nan", None, lambda c: c.grad_invalid())


# =============================================================================================
# the worker's helpers (ctx): shared solutions, files, processes
# =============================================================================================
_KILLED_SAVE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "killed_save.py")


class Context:
    """What the cases use: the modules, fresh folders, shared small solutions, the CLI."""

    def __init__(self, dj, jax, jnp, np, eqx, workdir):
        self.dj, self.jax, self.jnp, self.np, self.eqx = dj, jax, jnp, np, eqx
        self.workdir = workdir
        self._shared: dict[str, Any] = {}
        self._n = 0

    # -- small utilities ---------------------------------------------------------------------
    def tmp(self):
        import pathlib
        import tempfile

        return pathlib.Path(tempfile.mkdtemp(dir=self.workdir))

    def a_file(self):
        f = self.tmp() / "a_file"
        f.write_text("x")
        return f

    def shared(self, name, make=None):
        if name not in self._shared:
            self._shared[name] = make()
        return self._shared[name]

    @staticmethod
    def check(ok, what):
        return True if ok else what

    def count_steps(self, algorithm, t_max):
        from dmft_jax._engine.timegrid import count_steps

        return count_steps(algorithm, t_max)

    def sol(self):
        return self.shared("sol", lambda: solve(self))

    def failed_sol(self):
        """A diverged solution (the square loss at a large eta)."""
        import warnings

        def make():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.dj.solve(self.dj.Problem(loss="square"), self.dj.GD(3.0), n_steps=40, n_traj=64)
        sol = self.shared("failed", make)
        assert not bool(sol.ok), "the diverging solve succeeded"
        return sol

    def custom_model(self):
        dj, jnp = self.dj, self.jnp

        class Plain(dj.TwoCluster):  # a user model that does not define eps_gen_bias
            eps_gen_bias = dj.AbstractModel.eps_gen_bias

        return Plain(0.5)

    def point(self, sol, i):
        """One point of a batched solution: its outcome and message."""
        from types import SimpleNamespace

        from dmft_jax._results.results import Result

        code, check = self.np.asarray(sol.result.code), self.np.asarray(sol.result.check)
        one = Result(code[i], check[i], sol.result.checks)
        eps = self.np.asarray(sol.eps_gen)[i]
        return SimpleNamespace(status=int(code[i]), message=one.message, eps_gen=eps)

    def valid_point(self, sol, i):
        p = self.point(sol, i)
        return self.check(p.status == 0 and self.np.all(self.np.isfinite(p.eps_gen)),
                          f"the valid point of the batch came back {p.message}")

    # -- traced values ---------------------------------------------------------------------------
    def traced_all(self):
        dj, jnp, eqx = self.dj, self.jnp, self.eqx

        def make():
            base_p = dj.Problem(dj.TwoCluster(0.5), dj.SmoothHinge(10.0), alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
            base_a = dj.PersistentSGD(0.2, 0.3, 2.0, beta=0.5, temperature=0.01)
            names = ["lam", "delta", "alpha", "R0", "m0", "rho", "loss_beta", "eta", "b", "tau", "beta", "temperature"]
            defaults = {"lam": 0.0, "delta": 0.5, "alpha": 2.0, "R0": 0.01, "m0": 0.0, "rho": 0.5, "loss_beta": 10.0,
                        "eta": 0.2, "b": 0.3, "tau": 2.0, "beta": 0.5, "temperature": 0.01}
            rows = []
            for _, name, value, _ in TRACED:
                rows.append([value if n == name else defaults[n] for n in names])
            table = jnp.asarray(rows)

            def one(v):
                x = dict(zip(names, v))
                p = eqx.tree_at(lambda p: (p.lam, p.delta, p.alpha, p.R0, p.m0, p.model.rho, p.loss.beta), base_p,
                                (x["lam"], x["delta"], x["alpha"], x["R0"], x["m0"], x["rho"], x["loss_beta"]))
                a = eqx.tree_at(lambda a: (a.eta, a.b, a.tau, a.beta, a.temperature), base_a,
                                (x["eta"], x["b"], x["tau"], x["beta"], x["temperature"]))
                return dj.solve(p, a, n_steps=3, n_traj=64, key=0)

            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.jax.vmap(one)(table)
        return self.shared("traced", make)

    def traced(self, i):
        return self.point(self.traced_all(), i)

    def traced_teacher(self, i):
        dj, jnp, eqx = self.dj, self.jnp, self.eqx

        def make():
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return self.jax.vmap(lambda e: dj.solve(eqx.tree_at(lambda p: p.model.label_noise, TS(self), e),
                                                        dj.GD(0.2), **TINY))(jnp.array([0.1, 0.7]))
        return self.point(self.shared("traced_teacher", make), i)

    def jit_lam(self, lam):
        import warnings

        dj, eqx = self.dj, self.eqx
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sol = self.jax.jit(lambda x: dj.solve(eqx.tree_at(lambda p: p.lam, P(self), x), dj.GD(0.2), **TINY))(lam)
        return self.point(self.jax.tree_util.tree_map(lambda a: a[None], sol), 0)

    def jit_throw(self):
        dj, eqx = self.dj, self.eqx
        sol = self.jax.jit(lambda x: dj.solve(eqx.tree_at(lambda p: p.lam, P(self), x), dj.GD(0.2), throw=True,
                                              **TINY))(-1.0)
        self.jax.block_until_ready(sol.m)
        return sol

    def erm_vmap(self, i):
        dj, eqx, jnp = self.dj, self.eqx, self.jnp
        sol = self.shared("erm_vmap", lambda: self.jax.vmap(
            lambda lam: dj.erm(eqx.tree_at(lambda p: p.lam, TS(self, lam=0.1), lam), n_nodes=20))(
            jnp.array([0.1, -1.0])))
        from types import SimpleNamespace

        from dmft_jax._results.results import Result

        code, check = self.np.asarray(sol.result.code), self.np.asarray(sol.result.check)
        return SimpleNamespace(status=int(code[i]), message=Result(code[i], check[i], sol.result.checks).message)

    def grad_invalid(self):
        import warnings

        dj, eqx = self.dj, self.eqx

        def final(lam):
            return dj.solve(eqx.tree_at(lambda p: p.lam, P(self), lam), dj.GD(0.2), **TINY).eps_gen[-1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = float(self.jax.grad(final)(-0.1))
        return self.check(self.np.isnan(g), f"jax.grad at lam = -0.1 gave {g} (a finite number)")

    # -- save and load -----------------------------------------------------------------------
    def save_under_a_file(self):
        return self.dj.save(self.sol(), self.a_file() / "sub" / "r")

    def save_onto_a_folder(self):
        d = self.tmp()
        (d / "r.npz").mkdir()
        return self.dj.save(self.sol(), d / "r", overwrite=True)

    def save_twice(self):
        d = self.tmp()
        self.dj.save(self.sol(), d / "r")
        return self.dj.save(self.sol(), d / "r")

    def load_edited(self, how):
        np = self.np
        d = self.tmp()
        path = self.dj.save(self.sol(), d / "s")
        npz, js = d / "s.npz", d / "s.json"
        if how == "array":
            with np.load(npz) as data:
                arrays = {k: data[k] for k in data.files}
            arrays["m"] = arrays["m"][:3]
            np.savez(npz, **arrays)
        elif how == "json":
            meta = json.loads(js.read_text())
            meta["problem"]["lam"] = 0.7
            js.write_text(json.dumps(meta))
        elif how == "truncate":
            npz.write_bytes(npz.read_bytes()[:200])
        elif how == "foreign":
            np.savez(npz, something=np.zeros(3))
        elif how == "version":
            with np.load(npz) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(arrays["__meta__"].tobytes().decode())
            meta["format_version"] = "1"
            arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
            np.savez(npz, **arrays)
            js.write_text(json.dumps(meta))
        return self.dj.load(path)

    def save_long_name(self):
        import warnings

        d = self.tmp()
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            self.dj.save(self.sol(), d / ("r" * 251))
        back = self.dj.load(d / ("r" * 251))
        return self.check(self.np.array_equal(back.m, self.np.asarray(self.sol().m)), "the reloaded m differs")

    def load_without_json(self):
        import warnings

        d = self.tmp()
        self.dj.save(self.sol(), d / "s")
        (d / "s.json").unlink()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            back = self.dj.load(d / "s")
        same = self.np.array_equal(back.m, self.np.asarray(self.sol().m))
        warned = any("missing" in str(w.message) for w in caught)
        return self.check(same and warned, f"loaded without its .json: same arrays {same}, warned {warned}")

    def _io_file(self):
        from dmft_jax._results import io

        return io.__file__

    def killed_saves(self, overwrite):
        """kill -9 at each file operation of a save (a child process running io.py alone):
        load gives the earlier result or the new one whole, never a mix; the next save leaves
        no temporary."""
        import warnings

        script = _KILLED_SAVE  # tests/killed_save.py, the test suite's script
        problems = []
        for k in range(1, 9):
            path = self.tmp() / "run"
            if overwrite:
                subprocess.run([sys.executable, str(script), self._io_file(), "0", str(path), "0", "1.0"], check=True,
                               capture_output=True, timeout=60)
            run = subprocess.run([sys.executable, str(script), self._io_file(), str(k), str(path),
                                  "1" if overwrite else "0", "2.0"], capture_output=True, timeout=60)
            if run.returncode != -signal.SIGKILL:  # the save had fewer operations than k
                break
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    back = self.dj.load(path)
                got = float(back.m[0])
                if back.meta["config"]["v"] != got or not self.np.all(back.eps_gen == got):
                    problems.append(f"op {k}: metadata of one save, arrays of another")
                if got not in ((1.0, 2.0) if overwrite else (2.0,)):
                    problems.append(f"op {k}: loaded {got}")
            except ValueError as err:
                if overwrite or (path.parent / "run.npz").exists():
                    problems.append(f"op {k}: {err}")
            subprocess.run([sys.executable, str(script), self._io_file(), "0", str(path), "1", "3.0"], check=True,
                           capture_output=True, timeout=60)
            left = sorted(p.name for p in path.parent.iterdir())
            if left != ["run.json", "run.npz"]:
                problems.append(f"op {k}: after the next save the folder holds {left}")
        if problems:
            return {"class": "lost", "note": "; ".join(problems[:3])}
        return True

    def concurrent_saves(self):
        from dmft_jax._results import io

        d = self.tmp()
        barrier = threading.Barrier(2)
        real = io._op

        def racing(name, fn, *args):
            if name == "link" and str(args[1]).endswith(".npz"):
                barrier.wait(timeout=10)
            return real(name, fn, *args)
        outcome = {}

        def save(value):
            import numpy as np

            sol = self.eqx.tree_at(lambda s: s.m, self.sol(), self.jnp.full_like(self.sol().m, value))
            try:
                io.save(sol, d / "run")
                outcome[value] = "saved"
            except FileExistsError:
                outcome[value] = "refused"
            del np
        io._op = racing
        try:
            threads = [threading.Thread(target=save, args=(v,)) for v in (1.0, 2.0)]
            [t.start() for t in threads]
            [t.join() for t in threads]
        finally:
            io._op = real
        winners = [v for v, o in outcome.items() if o == "saved"]
        if len(winners) != 1:
            return {"class": "lost", "note": f"two saves of one new name: {outcome}"}
        back = float(self.dj.load(d / "run").m[0])
        return self.check(back == winners[0], f"the winner saved {winners[0]} but {back} loads")

    def dotted_names(self):
        d = self.tmp()
        a = self.dj.save(self.sol(), d / "lam_0.05")
        b = self.dj.save(self.sol(), d / "lam_0.1")
        files = sorted(p.name for p in d.iterdir())
        ok = files == ["lam_0.05.json", "lam_0.05.npz", "lam_0.1.json", "lam_0.1.npz"] and str(a) != str(b)
        return True if ok else {"class": "lost", "note": f"files {files}"}

    def saved_failure(self):
        d = self.tmp()
        import warnings

        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                self.dj.save(self.failed_sol(), d / "f")
            except ValueError:
                return True  # refused by name: fine too
            back = self.dj.load(d / "f")
        status = int(self.np.asarray(back.status))
        return self.check(status != 0, "a diverged solution saved and loaded as a success")

    # -- caches ----------------------------------------------------------------------------------
    def _cache_setup(self):
        """A trace-cache folder holding one good entry of the shared small solve, and the cold
        solve's numbers."""
        from dmft_jax._cache import trace as cache

        def make():
            folder = self.tmp() / "traces"
            cold = self.sol()
            # JAX's compilation cache too, as in use: each re-read program compiles from disk
            self.jax.config.update("jax_compilation_cache_dir", str(self.tmp()))
            self.jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            cache.enable_trace_cache(folder)
            cache._MEMO.clear()
            try:
                solve(self)
            finally:
                cache.disable_trace_cache()
                cache._MEMO.clear()
            (entry,) = folder.glob("*.exported")
            return folder, entry, entry.read_bytes(), cold
        return self.shared("cache", make)

    def planted(self, kind):
        import hashlib
        import pickle
        import struct
        import time
        import warnings

        from dmft_jax._cache import entry as cache_entry
        from dmft_jax._cache import trace as cache

        folder, entry, good, cold = self._cache_setup()
        flag = self.tmp() / "planted_code_ran"
        magic = cache_entry.MAGIC
        (size,) = struct.unpack("<I", good[len(magic):len(magic) + 4])
        header = json.loads(good[len(magic) + 4:len(magic) + 4 + size])
        payload = good[len(magic) + 4 + size:]

        def packed(h):
            h = dict(h, payload_sha256=hashlib.sha256(payload).hexdigest(), payload_size=len(payload))
            text = json.dumps(h).encode()
            return magic + struct.pack("<I", len(text)) + text + payload

        class Payload:
            def __reduce__(self):
                return os.system, (f"touch {flag}",)
        contents = {
            "crafted pickle": lambda: pickle.dumps(Payload()),
            "format-1 pickle": lambda: pickle.dumps({"exported": payload, "skeleton": Payload()}),
            "truncated": lambda: good[: len(good) // 2],
            "wrong key": lambda: packed(dict(header, key="0" * 64)),
            "another format number": lambda: packed(dict(header, format=cache_entry.FORMAT + 1)),
            "a class outside dmft_jax": lambda: packed(dict(header, out_tree={"object": ["os", "system"],
                                                                              "fields": []})),
            "a FIFO": None, "a link to /dev/zero": None,
        }
        if entry.exists() or entry.is_symlink():
            entry.unlink()
        if kind == "a FIFO":
            os.mkfifo(entry)
        elif kind == "a link to /dev/zero":
            os.symlink("/dev/zero", entry)
        else:
            entry.write_bytes(contents[kind]())
        cache.enable_trace_cache(folder)
        cache._MEMO.clear()
        start = time.time()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sol = solve(self)
        finally:
            cache.disable_trace_cache()
            cache._MEMO.clear()
        if flag.exists():
            return {"class": "security", "note": f"{kind}: the planted file ran a command"}
        same = all(self.np.array_equal(self.np.asarray(getattr(sol, n)), self.np.asarray(getattr(cold, n)))
                   for n in ("m", "q", "eps_gen"))
        warned = any(entry.name in str(w.message) for w in caught)
        if not same:
            return f"{kind}: the numbers differ from a cold solve's"
        return self.check(warned, f"{kind}: ignored without a warning naming the file ({time.time() - start:.1f} s)")

    def planted_marker(self):
        import warnings

        from dmft_jax._cache import trace as cache
        from dmft_jax._problem import losses

        folder = self.tmp()
        cache.enable_trace_cache(folder)
        try:
            sharp = self.dj.SmoothHinge(1e6)
            (folder / f"{cache._key(('curvature', sharp))}.curvature").write_bytes(b"")
            losses._PASSED.clear()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    sol = self.dj.solve(self.dj.Problem(loss=sharp), self.dj.GD(0.2), **SMALL)
                except ValueError as err:
                    return self.check("second derivative" in str(err), f"refused without naming the curvature: {err}")
            return {"class": "security", "note": f"a planted marker passed SmoothHinge(1e6): {sol.message}"}
        finally:
            cache.disable_trace_cache()

    def open_cache_folder(self):
        folder = self.tmp() / "group"
        folder.mkdir()
        os.chmod(folder, 0o777)
        try:
            return self.dj.enable_compilation_cache(folder)
        finally:
            self.dj.disable_compilation_cache()

    # -- the command line ----------------------------------------------------------------------
    def cli(self, argv, out=None):
        import contextlib
        import io as _io

        from dmft_jax._tools import cli

        d = self.tmp()
        out = d / "out" if out is None else out
        err, std = _io.StringIO(), _io.StringIO()
        code = None
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            try:
                code = cli.main(list(argv) + ["--out", str(out)])
            except SystemExit as e:
                code = e.code
        files = sorted(p.name for p in d.rglob("*") if p.is_file()) if d.exists() else []
        return {"exit": code, "stderr": err.getvalue()[-1500:], "stdout": std.getvalue()[-500:], "files": files}

    def cli_curves_folder(self):
        d = self.tmp()
        out = d / "out"
        (out / "curves.png").mkdir(parents=True)
        return self.cli(["solve", "--t-max", "1", "--n-traj", "64", "--no-cache", "--overwrite"], out=out)
