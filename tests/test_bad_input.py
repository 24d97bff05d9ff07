"""Every wrong input refused with an error naming the parameter (and what is allowed), or,
inside a transformation, a failed ``result`` per point; nothing silent, nothing lost.

Table-driven: each row is ``(id, call, exception type, pattern the message must match)``.
The rows cover the Python API, the command line and save/load; the cases of the
reliability issue are all here (hinge by a callable, a summed loss, traced invalid values,
NaN losses in the simulator, fractional n_steps, negative pivot_rtol, abbreviated CLI
flags, names with dots, and so on).
"""
import json
import os
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax._tools import cli
from dmft_jax import io

P = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.0, R0=0.01)
A = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
SMALL = dict(t_max=1.0, n_traj=64)


def solve(**kw):
    return dj.solve(P, A, **{**SMALL, **kw})


_SOFT = lambda r: jnp.mean(jnp.tanh(r), axis=-1)  # a soft committee written by hand

API = [
    # problem and data model
    ("alpha_zero", lambda: dj.Problem(alpha=0.0), ValueError, "alpha"),
    ("alpha_string", lambda: dj.Problem(alpha="abc"), ValueError, "alpha must be a real number"),
    ("delta_none", lambda: dj.Problem(delta=None), ValueError, "delta must be a real number"),
    ("delta_negative", lambda: dj.Problem(delta=-0.5), ValueError, "delta"),
    ("lam_negative", lambda: dj.Problem(lam=-1.0), ValueError, "lam"),
    ("R0_nan", lambda: dj.Problem(R0=np.nan), ValueError, "R0"),
    ("m0_complex", lambda: dj.Problem(m0=1j), ValueError, "m0"),
    ("rho_one", lambda: dj.TwoCluster(1.0), ValueError, "rho"),
    ("L_zero", lambda: dj.ThreeCluster(0.5, 0.0), ValueError, "L"),
    ("three_cluster_m0_zero", lambda: dj.Problem(dj.ThreeCluster(), m0=0.0), ValueError, "m0"),
    ("model_string", lambda: dj.Problem(model="two"), ValueError, "model"),
    # flags where a value belongs, values where a flag belongs (bias=False turned a bias on)
    ("bias_false", lambda: dj.Problem(dj.TwoCluster(0.2), bias=False), ValueError, "bias must be .* not a flag"),
    ("lam_true", lambda: dj.Problem(lam=True), ValueError, "lam must be a real number, not a flag"),
    ("boundary_negative", lambda: dj.PiecewiseConstant([0.2, 0.1], [-3]), ValueError,
     "boundaries must be strictly increasing step indices >= 1"),
    ("boundary_repeated", lambda: dj.PiecewiseConstant([0.2, 0.1, 0.05], [4, 4]), ValueError,
     "boundaries must be strictly increasing"),
    ("boundary_fraction", lambda: dj.PiecewiseConstant([0.2, 0.1], [2.5]), ValueError, "whole step indices"),
    ("alpha_star_bias_string", lambda: dj.alpha_star(0.5, 0.2, bias="no"), ValueError, "bias must be True"),
    # teacher-student data
    ("label_noise_half", lambda: dj.TeacherStudent(0.5), ValueError, "label_noise must satisfy 0 <= label_noise < 0.5"),
    ("label_noise_negative", lambda: dj.TeacherStudent(-0.1), ValueError, "label_noise"),
    ("regression_noise_negative", lambda: dj.TeacherRegression(-1.0), ValueError, "noise"),
    ("regression_f_not_callable", lambda: dj.TeacherRegression(0.1, f=3.0), ValueError, "f must be a function"),
    ("teacher_delta_not_one", lambda: dj.Problem(dj.TeacherStudent(), delta=0.5), ValueError, "delta = 1"),
    ("regression_margin_loss", lambda: dj.Problem(dj.TeacherRegression(), "logistic"), ValueError,
     "residual .*'squared_error'"),
    ("classification_residual_loss", lambda: dj.Problem(dj.TeacherStudent(), "squared_error"), ValueError,
     "margin .*SquaredError"),
    ("pseudo_huber_beta", lambda: dj.PseudoHuber(0.0), ValueError, "beta"),
    ("regression_f_numpy", lambda: dj.TeacherRegression(0.1, f=np.tanh), ValueError, "JAX cannot trace"),
    ("erm_teacher_hinge", lambda: dj.erm(dj.Problem(dj.TeacherStudent(), "hinge", lam=0.1)), ValueError,
     "twice differentiable loss"),
    ("ridge_gd_nodes", lambda: dj.ridge_gd(
        dj.Problem(dj.TeacherRegression()), dj.GD(0.2), n_nodes=0), ValueError, "n_nodes must be an integer >= 16"),
    ("ridge_gd_momentum", lambda: dj.ridge_gd(
        dj.Problem(dj.TeacherRegression()), dj.GD(0.2, beta=0.5)), ValueError, "no momentum"),
    ("bias_array_outside_vmap", lambda: dj.solve(dj.Problem(bias=jnp.array([0.1, 0.2])), A, **SMALL), ValueError,
     "bias must be a single number"),
    ("label_noise_array_outside_vmap", lambda: dj.solve(dj.Problem(dj.TeacherStudent(jnp.array([0.1, 0.2]))), A,
                                                        **SMALL), ValueError, "label_noise must be a single number"),
    ("erm_teacher_nodes", lambda: dj.erm(dj.Problem(dj.TeacherStudent()), n_nodes=200), ValueError, "n_nodes"),
    ("ridge_gd_sgd", lambda: dj.ridge_gd(dj.Problem(dj.TeacherRegression()),
                                                                      dj.SGD(0.2, 0.3)), ValueError, "GD"),
    ("ridge_gd_logistic_teacher", lambda: dj.ridge_gd(
        dj.Problem(dj.TeacherStudent()), dj.GD(0.2)), ValueError, "TeacherRegression"),
    ("grid_unknown_model_parameter", lambda: dj.solve_grid(dj.Problem(dj.TeacherStudent()), A, {"rho": [0.3]},
                                                            **SMALL), ValueError, "TeacherStudent has no parameter 'rho'"),
    ("loss_unknown_name", lambda: dj.Problem(loss="nope"), ValueError, "loss"),
    ("loss_number", lambda: dj.Problem(loss=3), ValueError, "loss"),
    ("smooth_hinge_beta", lambda: dj.SmoothHinge(-1.0), ValueError, "beta"),
    ("alpha_array_outside_vmap", lambda: dj.solve(dj.Problem(alpha=jnp.array([1.0, 2.0])), A, **SMALL),
     ValueError, "alpha must be a single number"),
    # losses the solver would get wrong
    ("hinge_class", lambda: dj.solve(dj.Problem(loss="hinge"), A, **SMALL), ValueError, "SmoothHinge"),
    ("hinge_by_callable", lambda: dj.solve(dj.Problem(loss=lambda v: jnp.maximum(0.0, 1 - v)), A, **SMALL),
     ValueError, "loss: the second derivative"),
    ("smooth_hinge_too_sharp", lambda: dj.solve(dj.Problem(loss=dj.SmoothHinge(1e6)), A, **SMALL),
     ValueError, "loss: the second derivative"),
    ("loss_summed", lambda: dj.solve(dj.Problem(loss=lambda v: jnp.sum(jnp.logaddexp(0.0, -v))), A, **SMALL),
     ValueError, "loss: ell\\(v\\) must be elementwise"),
    ("loss_in_numpy", lambda: dj.solve(dj.Problem(loss=lambda v: np.log1p(np.exp(-v))), A, **SMALL),
     ValueError, "loss: JAX cannot differentiate"),
    ("loss_raises", lambda: dj.solve(dj.Problem(loss=lambda v: v.nonexistent), A, **SMALL),
     ValueError, "loss: calling ell"),
    # algorithms and schedules
    ("eta_zero", lambda: dj.GD(0.0), ValueError, "eta"),
    ("eta_string", lambda: dj.GD("fast"), ValueError, "eta must be a real number"),
    ("b_above_one", lambda: dj.SGD(0.2, 1.5), ValueError, "b"),
    ("b_string", lambda: dj.SGD(0.2, "half"), ValueError, "b must be a real number"),
    ("tau_below_eta", lambda: dj.PersistentSGD(0.2, 0.3, 0.1), ValueError, "tau"),
    ("b_too_large_for_tau", lambda: dj.PersistentSGD(0.2, 0.9, 1.0), ValueError, "b"),
    ("schedule_negative", lambda: dj.ExponentialDecay(-0.1, 0.1), ValueError, "init"),
    ("schedule_boundaries", lambda: dj.PiecewiseConstant([0.2, 0.1], boundaries=[]), ValueError, "boundaries"),
    ("b_schedule_above_one", lambda: dj.solve(P, dj.SGD(0.2, dj.PiecewiseConstant([0.3, 1.2], [2])), **SMALL),
     ValueError, "b"),
    ("algorithm_string", lambda: dj.solve(P, "sgd", **SMALL), ValueError, "algorithm"),
    ("problem_dict", lambda: dj.solve({"alpha": 2}, A, **SMALL), ValueError, "problem"),
    # solve options
    ("t_max_negative", lambda: solve(t_max=-1.0), ValueError, "t_max"),
    ("t_max_below_eta", lambda: solve(t_max=0.1), ValueError, "t_max"),
    ("t_max_string", lambda: solve(t_max="long"), ValueError, "t_max"),
    ("n_steps_fraction", lambda: solve(n_steps=2.5), ValueError, "n_steps must be an integer"),
    ("n_steps_zero", lambda: solve(n_steps=0), ValueError, "n_steps"),
    ("n_traj_odd", lambda: solve(n_traj=63), ValueError, "n_traj"),
    ("n_traj_float", lambda: solve(n_traj=64.5), ValueError, "n_traj must be an integer"),
    ("n_traj_one", lambda: solve(n_traj=1), ValueError, "n_traj"),
    ("key_float", lambda: solve(key=0.5), ValueError, "key"),
    ("key_string", lambda: solve(key="abc"), ValueError, "key"),
    ("key_none", lambda: solve(key=None), ValueError, "key"),
    ("key_too_large", lambda: solve(key=2**64), ValueError, "key"),
    ("dtype_float128", lambda: solve(dtype="float128"), ValueError, "dtype"),
    ("dtype_int", lambda: solve(dtype="int32"), ValueError, "dtype"),
    ("solver_string", lambda: solve(solver="sweep"), ValueError, "solver"),
    ("pivot_rtol_negative", lambda: solve(solver=dj.CausalSweep(pivot_rtol=-1.0)), ValueError, "pivot_rtol"),
    ("time_blocks_zero", lambda: solve(solver=dj.CausalSweep(0)), ValueError, "time_blocks"),
    ("buckets_string", lambda: solve(solver=dj.CausalSweep(buckets="yes")), ValueError, "buckets"),
    ("damping_zero", lambda: solve(solver=dj.DampedIteration(damping=0.0)), ValueError, "damping"),
    ("max_iter_fraction", lambda: solve(solver=dj.DampedIteration(max_iter=2.5)), ValueError, "max_iter"),
    ("response_string", lambda: solve(response="probe"), ValueError, "response"),
    ("n_chi_zero", lambda: solve(response=dj.ExactResponse(0)), ValueError, "n_chi"),
    ("n_probes_zero", lambda: solve(response=dj.ProbeResponse(0)), ValueError, "n_probes"),
    ("n_chi_nan", lambda: solve(response=dj.ExactResponse(float("nan"))), ValueError, "n_chi must be an integer"),
    ("n_probes_nan", lambda: solve(response=dj.ProbeResponse(float("nan"))), ValueError, "n_probes must be an"),
    ("probe_n_traj_nan", lambda: solve(response=dj.ProbeResponse(2, float("nan"))), ValueError,
     "ProbeResponse.n_traj must be an integer"),
    ("adjoint_with_probes", lambda: solve(response=dj.ProbeResponse(2), adjoint=dj.SweepAdjoint()),
     ValueError, "SweepAdjoint supports"),
    ("sharding_string", lambda: solve(trajectories=dj.Trajectories(sharding="gpu")), ValueError, "sharding"),
    ("save_trajectories_fraction", lambda: solve(trajectories=dj.Trajectories(save=1.5)), ValueError,
     "Trajectories.save must be an integer >= 0"),
    ("save_trajectories_former_keyword", lambda: solve(save_trajectories=1.5), ValueError,
     "save_trajectories: Trajectories.save must be an integer"),
    ("save_trajectories_above_n_traj", lambda: solve(trajectories=dj.Trajectories(save=10**6)), ValueError,
     "Trajectories.save \\(save_trajectories\\) must be in \\[0, n_traj"),
    ("fdt_of_a_committee", lambda: dj.fdt(dj.solve(dj.Committee(dj.Problem(dj.TeacherStudent()), dj.SoftCommittee(2)),
                                                   dj.GD(0.2), n_steps=4, n_traj=16)), ValueError,
     "fdt analyses a single unit \\(a dj.Problem\\); this is a committee's solution \\(K = 2 units"),
    ("gd_long_time_of_a_committee", lambda: dj.gd_long_time(dj.Committee(dj.Problem(dj.TeacherStudent()),
                                                                         dj.SoftCommittee(2))), ValueError,
     "gd_long_time runs a single unit"),
    ("trajectories_and_former_keyword", lambda: solve(trajectories=dj.Trajectories(antithetic=False), antithetic=True),
     ValueError, "antithetic: given beside trajectories=dj.Trajectories"),
    ("committee_symmetric_conflict", lambda: dj.solve(dj.Committee(dj.Problem(dj.TeacherStudent()), dj.SoftCommittee(2),
                                                                   symmetric=True), dj.GD(0.2), n_steps=4, n_traj=16,
                                                      symmetric=False),
     ValueError, "the committee was built with symmetric=True and the solve asks symmetric=False"),
    ("sharding_same_device_twice", lambda: solve(trajectories=dj.Trajectories(sharding=[jax.devices()[0]] * 2)),
     ValueError, "sharding: the devices must be distinct"),
    ("memory_estimate_K_zero", lambda: dj.memory_estimate(10, 64, K=0), ValueError, "K must be an integer >= 1"),
    ("memory_estimate_quadrature_negative", lambda: dj.memory_estimate(10, 64, K=2, quadrature=-10**9), ValueError,
     "quadrature must be an integer >= 0"),
    ("memory_estimate_dtype", lambda: dj.memory_estimate(10, 64, dtype="int8"), ValueError,
     "dtype must be float32 or float64"),
    ("memory_estimate_time_blocks", lambda: dj.memory_estimate(10, 64, time_blocks=0), ValueError,
     "time_blocks must be an integer >= 1"),
    ("fdt_of_a_simulation", lambda: dj.fdt(dj.simulate(P, dj.GD(0.2), n_steps=4, d=20, n_seeds=2)), ValueError,
     "fdt analyses a DMFT solution"),
    ("compare_arguments_swapped", lambda: dj.plot.compare(dj.simulate(P, dj.GD(0.2), n_steps=4, d=20, n_seeds=2)),
     ValueError, "compare takes a solution \\(dj.solve\\) first"),
    ("compare_a_grid", lambda: dj.plot.compare(dj.solve_grid(P, dj.GD(0.2), {"lam": [0.0, 0.1]}, n_steps=4,
                                                             n_traj=16)), ValueError, "index a grid first"),
    ("trajectories_not_an_object", lambda: solve(trajectories={"antithetic": False}), ValueError,
     "trajectories must be a dmft_jax.Trajectories"),
    ("unknown_keyword", lambda: solve(n_trajectories=5), TypeError, "n_trajectories"),
    ("too_large_for_memory", lambda: dj.solve(P, dj.GD(0.01), n_steps=2000, n_traj=2**16,
                                              response=dj.ExactResponse(2**16)), ValueError, "GiB"),
    # simulate
    ("simulate_d_one", lambda: dj.simulate(P, A, t_max=1.0, d=1, n_seeds=2), ValueError, "d must"),
    ("simulate_seeds_zero", lambda: dj.simulate(P, A, t_max=1.0, d=10, n_seeds=0), ValueError, "n_seeds"),
    ("simulate_d_fraction", lambda: dj.simulate(P, A, t_max=1.0, d=10.5, n_seeds=2), ValueError, "d must"),
    ("simulate_too_large", lambda: dj.simulate(P, A, t_max=0.2, d=200_000, n_seeds=2), ValueError, "GiB"),
    ("simulate_batch_too_large", lambda: dj.simulate(P, A, t_max=0.2, d=20_000, n_seeds=100, batch_size=100),
     ValueError, "batch_size"),
    ("simulate_key", lambda: dj.simulate(P, A, t_max=1.0, d=10, n_seeds=2, key="x"), ValueError, "key"),
    # grid and tune
    ("grid_unknown_name", lambda: dj.solve_grid(P, A, {"gamma": [1.0]}, **SMALL), ValueError, "unknown hyperparameter"),
    ("grid_beta_not_built", lambda: dj.solve_grid(P, A, {"beta": [0.5]}, **SMALL), ValueError,
     r"no parameter 'beta' \(build it with PersistentSGD\(..., beta=...\)"),
    # a learnable bias
    ("bias_nan", lambda: dj.Problem(bias=np.nan), ValueError, "bias"),
    ("bias_string", lambda: dj.Problem(bias="0"), ValueError, "bias must be a real number"),
    ("bias_damped_iteration", lambda: dj.solve(dj.Problem(bias=0.0), A, solver=dj.DampedIteration(), **SMALL),
     ValueError, "learnable bias is solved by CausalSweep only"),
    ("bias_sweep_adjoint", lambda: dj.solve(dj.Problem(bias=0.0), A, adjoint=dj.SweepAdjoint(), **SMALL),
     ValueError, "SweepAdjoint does not cover"),
    ("grid_bias_without_bias", lambda: dj.solve_grid(P, A, {"bias": [0.0, 0.1]}, **SMALL), ValueError,
     "no learnable bias"),
    ("erm_bias_teacher", lambda: dj.erm(dj.Problem(dj.TeacherStudent(), bias=0.0)), ValueError,
     "intercept supports TwoCluster"),
    ("erm_bias_hinge", lambda: dj.erm(dj.Problem(loss="hinge", lam=0.1, bias=0.0)), ValueError,
     "not the hinge"),
    # momentum, Langevin noise, the FDT analysis
    ("beta_one", lambda: dj.GD(0.2, beta=1.0), ValueError, "beta must satisfy 0 <= beta < 1"),
    ("beta_string", lambda: dj.SGD(0.2, 0.3, beta="x"), ValueError, "beta must be a real number"),
    ("temperature_negative", lambda: dj.PersistentSGD(temperature=-0.1), ValueError, "temperature"),
    ("update_class", lambda: dj.GD(0.2, beta=0.5, update=dj.Nesterov), ValueError,
     "update must be a dmft_jax.AbstractUpdate"),
    ("update_without_beta", lambda: dj.SGD(0.2, 0.3, update=dj.Nesterov()), ValueError,
     "update: Nesterov takes the momentum beta"),
    ("nesterov_beta_nan", lambda: dj.GD(0.2, beta=float("nan"), update=dj.Nesterov()), ValueError,
     "beta must be finite"),
    ("tune_beta_not_built", lambda: dj.tune(P, A, ["beta"], t_max=1.0, steps=1, n_traj=64), ValueError,
     "'beta' cannot be tuned"),
    ("tune_temperature_zero_start", lambda: dj.tune(P, dj.GD(0.2, temperature=0.0), ["temperature"], t_max=1.0,
                                                     steps=1, n_traj=64), ValueError, "starting value > 0"),
    ("fdt_of_a_grid", lambda: dj.fdt(dj.solve_grid(P, dj.GD(0.2), {"lam": [0.0, 0.1]}, **SMALL)), ValueError,
     "fdt takes one solution"),
    ("fdt_t_min_outside", lambda: dj.fdt(solve(), t_min=5.0), ValueError, "t_min must be in"),
    ("grid_bad_value", lambda: dj.solve_grid(P, A, {"b": [0.3, 1.5]}, **SMALL), ValueError, "b"),
    ("grid_empty", lambda: dj.solve_grid(P, A, {}, **SMALL), ValueError, "params"),
    ("grid_tau_on_sgd", lambda: dj.solve_grid(P, dj.SGD(0.2, 0.3), {"tau": [1.0]}, **SMALL), ValueError, "tau"),
    ("tune_unknown", lambda: dj.tune(P, A, ["alpha"], t_max=1.0), ValueError, "params"),
    ("tune_R0_zero", lambda: dj.tune(eqx.tree_at(lambda p: p.R0, P, 0.0), A, ["R0"], t_max=1.0, n_traj=64),
     ValueError, "R0"),
    ("tune_steps_zero", lambda: dj.tune(P, A, ["lam"], t_max=1.0, steps=0), ValueError, "steps"),
    ("tune_errors_indivisible", lambda: dj.tune(P, A, ["lam"], t_max=1.0, n_traj=64, errors=dj.GroupErrors(5)),
     ValueError, "groups = 5 must split n_traj = 64"),
    ("moment_matching_string", lambda: solve(trajectories=dj.Trajectories(moment_matching="no")), ValueError,
     "moment_matching must be True or False"),
    # standard errors
    ("errors_one_group", lambda: solve(errors=dj.GroupErrors(1)), ValueError, "groups must be an integer >= 2"),
    ("errors_fraction", lambda: solve(errors=dj.GroupErrors(2.5)), ValueError, "groups must be an integer"),
    ("errors_float_groups", lambda: dj.GroupErrors(16.0), ValueError, "groups must be an integer >= 2; got 16.0"),
    ("errors_none_groups", lambda: dj.GroupErrors(None), ValueError, "groups must be an integer"),
    ("errors_n_chi_below_groups", lambda: solve(errors=dj.GroupErrors(4), response=dj.ExactResponse(2)), ValueError,
     "n_chi = 2 is below GroupErrors.groups = 4"),
    ("errors_probes_below_groups", lambda: solve(errors=dj.GroupErrors(4), response=dj.ProbeResponse(2, n_traj=2)),
     ValueError, "n_traj = 2 is below GroupErrors.groups = 4"),
    ("tune_errors_unknown_word", lambda: dj.tune(P, A, ["lam"], t_max=1.0, n_traj=64, errors="yes"), ValueError,
     "errors must be 'auto'"),
    ("errors_odd_groups", lambda: solve(errors=dj.GroupErrors(3)), ValueError, "multiple of 6"),
    ("errors_groups_too_many", lambda: solve(errors=dj.GroupErrors(64)), ValueError, "at least 128"),
    ("errors_not_a_strategy", lambda: solve(errors=True), ValueError, "errors must be a dmft_jax.AbstractErrors"),
    ("grid_errors_indivisible", lambda: dj.solve_grid(P, A, {"lam": [0.0, 0.1]}, errors=dj.GroupErrors(3), **SMALL),
     ValueError, "groups"),
    # static anchor
    ("erm_three_cluster", lambda: dj.erm(dj.Problem(dj.ThreeCluster(), m0=0.1)), ValueError, "TwoCluster"),
    ("erm_nodes", lambda: dj.erm(P, n_nodes=2), ValueError, "n_nodes"),
    # issue 26: numbers given as strings are refused when the object is built (they failed inside the solve)
    ("pseudo_huber_string", lambda: dj.PseudoHuber("1"), ValueError, r"beta must be a real number \(beta > 0\); got '1'"),
    ("smooth_hinge_string", lambda: dj.SmoothHinge("10"), ValueError, r"beta must be a real number \(beta > 0\)"),
    ("sign_committee_string", lambda: dj.SignCommittee(3, "2"), ValueError, "beta must be a real number"),
    ("schedule_rate_string", lambda: dj.ExponentialDecay(0.2, "0.1"), ValueError, "rate must be a real number"),
    ("momentum_string", lambda: dj.GD(0.2, beta="0.5"), ValueError, "beta must be a real number"),
    ("model_flag", lambda: dj.TwoCluster(True), ValueError, "rho must be a real number, not a flag"),
    # issue 26: an array where a number belongs, outside vmap: named, with the way to batch
    ("eta_array_outside_vmap", lambda: dj.solve(P, dj.GD(jnp.array([0.1, 0.2])), **SMALL), ValueError,
     r"eta must be a single number \(use jax.vmap or dmft_jax.solve_grid for several\)"),
    ("eta_array_with_n_steps", lambda: dj.solve(P, dj.GD(jnp.array([0.1, 0.2])), n_steps=3, n_traj=64), ValueError,
     "eta must be a single number"),
    ("tau_array_outside_vmap", lambda: dj.solve(P, dj.PersistentSGD(0.2, 0.3, jnp.array([1.0, 2.0])), **SMALL),
     ValueError, "tau must be a single number"),
    ("momentum_array_outside_vmap", lambda: dj.solve(P, dj.GD(0.2, beta=jnp.array([0.1, 0.2])), **SMALL), ValueError,
     "beta must be a single number"),
    ("loss_beta_array_outside_vmap", lambda: dj.solve(dj.Problem(loss=dj.SmoothHinge(jnp.array([1.0, 2.0]))), A,
                                                      **SMALL), ValueError, "loss.beta must be a single number"),
    ("readout_beta_array_outside_vmap", lambda: dj.solve(dj.Committee(dj.Problem(dj.TeacherStudent()), dj.SignCommittee(
        3, jnp.array([1.0, 2.0]))), dj.GD(0.2), **SMALL), ValueError, "readout.beta must be a single number"),
    ("schedule_init_array_outside_vmap", lambda: dj.solve(P, dj.GD(dj.ExponentialDecay(jnp.array([0.2, 0.3]), 0.1)),
                                                          **SMALL), ValueError, "eta.init must be a single number"),
    # issue 26: a grid lists and takes only what it can set (class variables failed with a pytree error)
    ("grid_class_variable", lambda: dj.solve_grid(P, dj.GD(0.2), {"default_delta": [0.1]}, **SMALL), ValueError,
     r"unknown hyperparameter 'default_delta'; this problem and algorithm can grid lam, alpha, delta, R0, m0, rho, "
     r"eta$"),
    ("grid_teacher_flag", lambda: dj.solve_grid(dj.Problem(dj.TeacherStudent()), dj.GD(0.2), {"unit_delta": [1.0]},
                                                **SMALL), ValueError,
     r"unknown hyperparameter 'unit_delta'; this problem and algorithm can grid lam, alpha, delta, R0, m0, "
     r"label_noise, eta$"),
    ("grid_teacher_function", lambda: dj.solve_grid(dj.Problem(dj.TeacherRegression()), dj.GD(0.2), {"f": [1.0]},
                                                    **SMALL), ValueError, "unknown hyperparameter 'f'"),
    # issue 26: erm re-runs the problem's checks (lam = NaN set by tree_at was "no finite minimiser") and checks
    # its own options by name
    ("erm_lam_nan", lambda: dj.erm(eqx.tree_at(lambda p: p.lam, P, float("nan"))), ValueError,
     r"lam must be finite \(lam >= 0\); got nan"),
    ("erm_loss_beta_negative", lambda: dj.erm(eqx.tree_at(lambda p: p.loss.beta, dj.Problem(loss=dj.SmoothHinge()),
                                                          -1.0)), ValueError, r"beta must satisfy beta > 0"),
    ("erm_max_iter_nan", lambda: dj.erm(P, max_iter=float("nan")), ValueError, "max_iter must be an integer >= 1"),
    ("erm_tol_nan", lambda: dj.erm(P, tol=float("nan")), ValueError, r"tol must be finite \(tol > 0\)"),
    ("erm_damping_string", lambda: dj.erm(P, damping="half"), ValueError, r"damping must be a real number \(0 < "),
    ("erm_init_negative_q", lambda: dj.erm(P, init=(0.5, -1.0, 1.0)), ValueError, "init must satisfy .*q > 0"),
    # issue 26: a user function of the wrong signature is told the signature it must have (not "use jax.numpy")
    ("regression_f_two_arguments", lambda: dj.TeacherRegression(f=lambda nu, k: nu), ValueError,
     r"f must be a function of one argument, the teacher field nu .*<lambda>\(nu, k\) cannot be called that way"),
    ("regression_f_fails", lambda: dj.TeacherRegression(f=lambda nu: nu.nonexistent), ValueError,
     "f: calling f\\(nu\\) on an array of teacher fields failed \\(AttributeError"),
    ("loss_two_arguments", lambda: dj.Problem(loss=lambda v, w: v), ValueError,
     r"loss must be a function of one argument, the margins"),
    ("schedule_no_argument", lambda: dj.GD(lambda: 0.1), ValueError, r"eta must be a function of one argument, the step"),
    ("batch_schedule_two_arguments", lambda: dj.SGD(0.2, lambda k, j: 0.3), ValueError, r"b must be a function of one"),
    ("readout_no_argument", lambda: dj.CustomReadout(2, lambda: 0.0), ValueError, r"fn must be a function of one"),
    ("readout_root_number", lambda: dj.CustomReadout(2, lambda r: r.sum(-1), root=3), ValueError,
     r"root must be a function of one argument, the other fields"),
    # issue 26: a user's root is verified on sampled fields before the test error's quadrature trusts it
    # (root=lambda rest: rest gave eps_gen = 1499 with status success)
    ("readout_root_keeps_axis", lambda: dj.Committee(dj.Problem(dj.TeacherStudent()), dj.CustomReadout(
        2, _SOFT, root=lambda rest: rest)), ValueError,
     r"root: root\(rest\) must return one value of the last field per point, shape \(192,\) .* got shape \(192, 1\)"),
    ("readout_root_wrong", lambda: dj.Committee(dj.Problem(dj.TeacherStudent()), dj.CustomReadout(
        2, _SOFT, root=lambda rest: jnp.zeros(rest.shape[:-1]))), ValueError,
     r"root: root\(rest\) is not where f changes sign along the last field"),
    ("readout_root_of_a_decreasing_f", lambda: dj.Committee(dj.Problem(dj.TeacherStudent()), dj.CustomReadout(
        2, lambda r: -_SOFT(r), root=lambda rest: -rest[..., 0])), ValueError, r"f increasing in the last field"),
    ("readout_root_nan", lambda: dj.Committee(dj.Problem(dj.TeacherStudent()), dj.CustomReadout(
        2, _SOFT, root=lambda rest: jnp.full(rest.shape[:-1], jnp.nan))), ValueError, r"root: root\(rest\) is NaN"),
    # issue 26: a schedule turning negative or NaN is blamed (name, step, value) after one small chunk, not t_max
    # after 16.7 million steps; every size is checked against memory before a per-step table is built
    ("schedule_turns_negative", lambda: dj.solve(P, dj.GD(lambda k: 0.2 - 0.01 * k), t_max=10.0, n_traj=64),
     ValueError, r"eta: the schedule .*<lambda> \(a schedule function\) gives eta_k = -0.01 at step k = 21 \(t = 2.1\), "
                 r"before its steps add up to t_max = 10; a learning rate must be positive and finite"),
    ("schedule_turns_nan", lambda: dj.solve(P, dj.GD(lambda k: jnp.where(k > 3, jnp.nan, 0.2)), t_max=10.0, n_traj=64),
     ValueError, r"eta: the schedule .* gives eta_k = nan at step k = 4"),
    ("schedule_too_short_for_memory", lambda: dj.solve(P, dj.GD(dj.ExponentialDecay(0.2, 1e-3, 1e-9)), t_max=1e3,
                                                       n_traj=64), ValueError,
     r"t_max: the schedule ExponentialDecay\(init=0.2, rate=0.001, floor=1e-09\) adds up to only 200[.\d]* in \d+ steps, "
     r"short of t_max = 1000 \((more steps would not fit|searched up to)"),
    ("steps_beyond_memory", lambda: dj.solve(P, dj.GD(1e-9), t_max=5.0, n_traj=64), ValueError,
     r"t_max = 5 at eta = 1e-09 is T = 5000000000 steps: its (kernels and histories alone|kernel rows and "
     r"slot histories), .* need about [\d.e+]+ GiB but "
     r"the device has [\d.]+ GiB \(at most T = \d+ fit\); raise eta, lower t_max"),
    ("n_steps_beyond_memory", lambda: dj.solve(P, dj.GD(0.2), n_steps=10**9, n_traj=64), ValueError,
     r"n_steps = 1000000000 is T = 1000000000 steps: its (kernels|kernel rows)"),
    ("simulate_steps_beyond_memory", lambda: dj.simulate(P, dj.GD(1e-10), t_max=5.0, d=50), ValueError,
     r"t_max = 5 at eta = 1e-10 is T = 50000000000 steps: its per-step tables"),
    ("grid_steps_beyond_memory", lambda: dj.solve_grid(P, dj.GD(1e-6), {"lam": [0.0, 0.1]}, t_max=5.0, n_traj=64),
     ValueError, r"T = 5000000 steps: its (kernels and histories alone|kernel rows and slot histories), .*, for 2 "
                 r"points need about"),
    # issue 26, second table: what the campaign of benchmarks/bad_inputs.py --second found
    ("fdt_t_min_string", lambda: dj.fdt(solve(), t_min="late"), ValueError, r"t_min must be a real number \(a time in \["),
    ("fdt_of_a_failed_solve", lambda: dj.fdt(eqx.tree_at(lambda s: s.result.code, solve(), jnp.asarray(
        dj.RESULTS.diverged, jnp.int32))), ValueError, r"solution: fdt of a failed solve \(the dynamics diverged"),
    ("gd_long_time_rtol_string", lambda: dj.gd_long_time(P, rtol="tight"), ValueError,
     r"rtol must be a real number \(rtol > 0\)"),
    ("gd_long_time_doublings_fraction", lambda: dj.gd_long_time(P, max_doublings=1.5), ValueError,
     "max_doublings must be an integer >= 0"),
    ("schedule_returns_string", lambda: dj.solve(P, dj.GD(lambda k: "fast"), **SMALL), ValueError, r"eta: the schedule function .* returned 'fast'"),
    ("grid_string_values", lambda: dj.solve_grid(P, A, {"lam": ["a", "b"]}, **SMALL), ValueError,
     r"params\['lam'\] must be a non-empty 1-d list of numbers"),
    ("grid_product_string", lambda: dj.solve_grid(P, A, {"lam": [0.1]}, product="yes", **SMALL), ValueError,
     "product must be True or False"),
    ("grid_throw_string", lambda: dj.solve_grid(P, A, {"lam": [0.1]}, throw="no", **SMALL), ValueError,
     "throw must be True or False"),
    ("solve_throw_string", lambda: solve(throw="no"), ValueError, "throw must be True or False"),
    ("erm_throw_string", lambda: dj.erm(P, throw="no"), ValueError, "throw must be True or False"),
    ("tune_steps_fraction", lambda: dj.tune(P, A, ["lam"], t_max=1.0, n_traj=64, steps=2.5), ValueError,
     "steps must be an integer >= 1"),
    ("tune_optimizer_string", lambda: dj.tune(P, A, ["lam"], optimizer="adam", t_max=1.0, n_traj=64, steps=1),
     ValueError, "optimizer must be an optax GradientTransformation"),
    ("tune_objective_string", lambda: dj.tune(P, A, ["lam"], objective="eps_gen", t_max=1.0, n_traj=64, steps=1),
     ValueError, "objective must be a function of the Solution"),
    ("tune_refresh_string", lambda: dj.tune(P, A, ["lam"], refresh="yes", t_max=1.0, n_traj=64, steps=1), ValueError,
     "refresh must be True or False"),
    ("tune_log_every_zero", lambda: dj.tune(P, A, ["lam"], log_every=0, t_max=1.0, n_traj=64, steps=1), ValueError,
     "log_every must be an integer >= 1"),
    ("n_traj_beyond_memory", lambda: solve(n_traj=2**40), ValueError,
     "n_traj = 1099511627776: even a single step needs about"),
    # save
    ("save_number", lambda: dj.save(3, "x"), ValueError, "result must be"),
    ("save_empty_name", lambda: dj.save(dj.solve(P, A, **SMALL), ""), ValueError, "path"),
]


@pytest.mark.parametrize("case", API, ids=[c[0] for c in API])
def test_api_refuses(case):
    _, call, exc, pattern = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(exc, match=pattern):
            call()


def test_traced_invalid_values_are_failed_points_not_numbers():
    """The cookbook's vmap pattern: lam = -1 or delta = -0.5 set inside the transformation come
    back as ``invalid_input`` with NaN curves; the valid point is unaffected."""
    def one(lam, delta):
        p = eqx.tree_at(lambda q: (q.lam, q.delta), P, (lam, delta))
        return dj.solve(p, dj.GD(0.2), n_steps=5, n_traj=64, key=0)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sol = jax.vmap(one)(jnp.array([0.0, -1.0, 0.0]), jnp.array([0.5, 0.5, -0.5]))
    code = np.asarray(sol.result.code)
    assert list(code) == [dj.RESULTS.successful, dj.RESULTS.invalid_input, dj.RESULTS.invalid_input]
    assert np.all(np.isfinite(np.asarray(sol.eps_gen[0]))) and np.all(np.isnan(np.asarray(sol.eps_gen[1:])))
    assert "lam: lam >= 0" in sol.message and "delta: delta > 0" in sol.message
    # a traced tau below eta of a persistent SGD too
    f = lambda tau: dj.solve(P, dj.PersistentSGD(0.2, 0.3, 1 / 0.6), n_steps=5, n_traj=64).eps_gen
    g = jax.jit(lambda tau: dj.solve(P, eqx.tree_at(lambda a: a.tau, A, tau), n_steps=5, n_traj=64))(0.1)
    assert int(g.result) == dj.RESULTS.invalid_input and "tau" in g.message
    del f
    # a traced momentum outside [0, 1) under Nesterov's rule: a failed point, no numbers
    nesterov = dj.GD(0.2, beta=0.5, update=dj.Nesterov())
    sol = jax.vmap(lambda b: dj.solve(P, eqx.tree_at(lambda a: a.beta, nesterov, b), n_steps=5, n_traj=64))(
        jnp.array([0.5, 1.5]))
    assert list(np.asarray(sol.result.code)) == [dj.RESULTS.successful, dj.RESULTS.invalid_input]
    assert np.all(np.isfinite(np.asarray(sol.eps_gen[0]))) and np.all(np.isnan(np.asarray(sol.eps_gen[1])))


def test_every_construction_check_has_a_traced_twin():
    """Under vmap/jit the construction checks of every object inside the problem and the
    algorithm (a committee's read-out, its m0, the loss, a schedule) are collected as traced
    predicates, which the solve turns into invalid_input: SignCommittee(beta = -1) set inside
    vmap returned success (the read-out's check was not among them)."""
    from dmft_jax._validate import traced_checks

    committee = dj.Committee(dj.Problem(dj.TeacherStudent()), dj.SignCommittee(3, 2.0))
    algorithm = dj.GD(dj.ExponentialDecay(0.2, 0.1))

    names = []

    def valid(beta, m0, smooth, init):
        c = eqx.tree_at(lambda c: (c.readout.beta, c.m0, c.problem.loss), committee,
                        (beta, jnp.full(3, m0), dj.SmoothHinge(smooth)))
        a = eqx.tree_at(lambda a: a.eta.init, algorithm, init)
        checks, ok, first = traced_checks(c, a, 3)
        names[:] = checks
        return ok, first

    ok, first = jax.jit(jax.vmap(valid))(jnp.array([2.0, -1.0, 2.0, 2.0, 2.0]),
                                                   jnp.array([0.0, 0.0, jnp.nan, 0.0, 0.0]),
                                                   jnp.array([10.0, 10.0, 10.0, -1.0, 10.0]),
                                                   jnp.array([0.2, 0.2, 0.2, 0.2, -0.2]))
    assert list(np.asarray(ok)) == [True, False, False, False, False]
    failed = [names[i] for i in np.asarray(first)[1:]]
    assert failed[0] == "beta: beta > 0" and failed[1].startswith("m0") and failed[2] == "beta: beta > 0"
    assert failed[3] == "init: init > 0"


@pytest.mark.slow
def test_a_traced_invalid_readout_parameter_is_a_failed_point():
    committee = lambda b: dj.Committee(dj.Problem(dj.TeacherStudent()), dj.SignCommittee(3, b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sol = jax.vmap(lambda b: dj.solve(committee(b), dj.GD(0.2), n_steps=3, n_traj=16))(jnp.array([2.0, -1.0]))
    assert list(np.asarray(sol.result.code)) == [dj.RESULTS.successful, dj.RESULTS.invalid_input]
    assert "beta: beta > 0" in sol.message and np.all(np.isnan(np.asarray(sol.eps_gen[1])))


@pytest.mark.slow
def test_erm_at_a_traced_invalid_lam_is_a_failed_point():
    sol = jax.vmap(lambda lam: dj.erm(eqx.tree_at(lambda p: p.lam, P, lam), n_nodes=40))(jnp.array([0.1, -1.0]))
    assert list(np.asarray(sol.result.code)) == [dj.RESULTS.successful, dj.RESULTS.invalid_input]
    assert "lam: lam >= 0" in sol.message and np.isfinite(sol.m[0]) and np.isnan(sol.m[1])


def test_throw_inside_jit_names_the_failed_check():
    """solve(throw=True) under jax.jit: the runtime error carries the outcome's message and the
    check that failed (it said "INTERNAL: CpuCallback error ... dmft_jax.solve failed")."""
    from typing import Any

    from dmft_jax._results.results import Result
    from dmft_jax._results.solution import finish

    class Minimal(eqx.Module):  # what finish reads of a Solution
        m: Any
        stats: dict
        result: Result

    def run(code, check):
        sol = Minimal(jnp.zeros(2), {"n_negative": 0}, Result.of(code, check, ("lam: lam >= 0", "delta: delta > 0")))
        return finish(sol, True).result.code

    assert int(jax.jit(run)(0, -1)) == 0
    with pytest.raises(Exception, match=r"dmft_jax.solve: a parameter was outside its valid range .*; failed: delta: "
                                        r"delta > 0"):
        jax.block_until_ready(jax.jit(run)(dj.RESULTS.invalid_input, 1))
    with pytest.raises(Exception, match=r"dmft_jax.solve: the dynamics diverged"):
        jax.block_until_ready(jax.jit(run)(dj.RESULTS.diverged, -1))


@pytest.mark.slow
def test_throw_inside_jit_of_a_whole_solve_names_lam():
    f = lambda lam: dj.solve(eqx.tree_at(lambda p: p.lam, P, lam), dj.GD(0.2), n_steps=3, n_traj=16, throw=True)
    with pytest.raises(Exception, match="failed: lam: lam >= 0"):
        jax.block_until_ready(jax.jit(f)(-1.0))


def test_simulator_reports_nan_and_divergence():
    nan_loss = dj.Problem(loss=lambda v: jnp.sqrt(v))  # its gradient at a negative margin is NaN
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sim = dj.simulate(nan_loss, dj.GD(0.2), t_max=1.0, d=50, n_seeds=2)
    assert int(sim.result) == dj.RESULTS.nonfinite and np.isnan(np.asarray(sim.eps_gen[-1]))
    with pytest.warns(RuntimeWarning, match="diverged"):
        sim = dj.simulate(dj.Problem(loss="square"), dj.GD(5.0), t_max=100.0, d=50, n_seeds=2)
    assert int(sim.result) in (dj.RESULTS.diverged, dj.RESULTS.nonfinite)


def test_eps_gen_of_a_nan_state_is_nan():
    assert np.isnan(float(P.eps_gen(jnp.nan, 1.0))) and np.isnan(float(P.eps_gen(0.1, jnp.nan)))
    assert float(P.eps_gen(0.0, 0.0)) == 0.5


CLI = [
    ("abbreviated_flag", ["solve", "--alph", "3"], "unrecognized|ambiguous"),  # --d is now a name of --simulate
    ("simulate_zero", ["solve", "--simulate", "0"], "--simulate"),
    ("n_seeds_zero", ["solve", "--simulate", "50", "--n-seeds", "0"], "--n-seeds"),
    ("alpha_negative", ["solve", "--alpha", "-1"], "alpha"),
    ("alpha_string", ["solve", "--alpha", "abc"], "alpha"),
    ("simulate_d_one", ["simulate", "--d", "1"], "--d"),
    ("unknown_model", ["solve", "--model", "four"], "model"),
    ("tune_unknown_param", ["tune", "--params", "alpha"], "params"),
    ("groups_one", ["solve", "--groups", "1"], "groups"),
    ("groups_indivisible", ["solve", "--groups", "3"], "groups"),
    ("tune_lr_nan", ["tune", "--lr", "nan"], "--lr must be a finite number"),
    # a refusal names the option that sets the parameter (rate is --eta-decay's, beta --sharpness's)
    ("eta_decay_negative", ["solve", "--eta-decay", "-0.1"], "--eta-decay: rate must satisfy rate >= 0"),
    ("sharpness_negative", ["solve", "--loss", "smooth_hinge", "--sharpness", "-1"],
     "--sharpness: beta must satisfy beta > 0"),
    ("seed_negative", ["solve", "--seed", "-1"], r"--seed: key must be an integer seed"),
]


@pytest.mark.parametrize("case", CLI, ids=[c[0] for c in CLI])
def test_cli_refuses(case, capsys, tmp_path):
    _, argv, pattern = case
    with pytest.raises(SystemExit) as err:
        cli.main(argv + ["--out", str(tmp_path / "out")])
    assert err.value.code == 2
    assert pytest.importorskip("re").search(pattern, capsys.readouterr().err)
    assert not any((tmp_path / "out").glob("*.npz"))  # nothing was solved or saved


def test_cli_out_is_a_file_or_taken(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(SystemExit):
        cli.main(["solve", "--t-max", "1.0", "--n-traj", "64", "--out", str(f)])
    assert "--out" in capsys.readouterr().err
    out = tmp_path / "res"
    out.mkdir()
    (out / "solution.npz").write_text("earlier")
    with pytest.raises(SystemExit):
        cli.main(["solve", "--t-max", "1.0", "--n-traj", "64", "--out", str(out)])
    assert "--overwrite" in capsys.readouterr().err and (out / "solution.npz").read_text() == "earlier"


def test_cli_refuses_output_files_that_are_folders(tmp_path, capsys):
    # --overwrite when curves.png is a folder: a traceback after the solution was written
    (tmp_path / "out" / "curves.png").mkdir(parents=True)
    with pytest.raises(SystemExit) as err:
        cli.main(["solve", "--t-max", "1.0", "--n-traj", "64", "--overwrite", "--out", str(tmp_path / "out")])
    assert err.value.code == 2 and "curves.png exist and are not files" in capsys.readouterr().err
    assert not list((tmp_path / "out").glob("*.npz"))


def test_cli_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["solve", "--help"])
    assert "(default: 2.0)" in capsys.readouterr().out


# ---- save and load ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_solution():
    return dj.solve(P, A, **SMALL)


def test_names_that_differ_after_a_dot_both_survive(tmp_path, small_solution):
    other = dj.solve(eqx.tree_at(lambda p: p.lam, P, 0.1), A, **SMALL)
    a = small_solution.save(tmp_path / "lam_0.05")
    b = other.save(tmp_path / "lam_0.1")
    assert a.name == "lam_0.05.npz" and b.name == "lam_0.1.npz"
    assert dj.load(a).meta["problem"]["lam"] == 0.0 and dj.load(b).meta["problem"]["lam"] == pytest.approx(0.1)
    assert dj.save(small_solution, tmp_path / "results.v2").name == "results.v2.npz"


def test_save_refuses_to_overwrite(tmp_path, small_solution):
    small_solution.save(tmp_path / "r")
    with pytest.raises(FileExistsError, match="overwrite"):
        small_solution.save(tmp_path / "r")
    small_solution.save(tmp_path / "r", overwrite=True)


def _counting(monkeypatch, fail_at=None):
    """Count the file operations of a save (temporary writes and renames); make the
    ``fail_at``-th raise (as a full disk or a failed rename would)."""
    calls = []

    def wrapped(name, fn, *args):
        calls.append(name)
        if len(calls) == fail_at:
            raise OSError(f"{name} failed (simulated)")
        return fn(*args)
    monkeypatch.setattr(io, "_op", wrapped)
    return calls


@pytest.mark.parametrize("earlier", [False, True], ids=["new", "overwrite"])
def test_interrupted_save_leaves_earlier_files_and_no_half_pair(tmp_path, small_solution, monkeypatch, earlier):
    """Raise at each file operation of a save in turn: the earlier pair survives unchanged (or
    nothing is there), never a new .npz without its .json, no temporary left behind."""
    def setup(folder):
        folder.mkdir()
        if earlier:
            (folder / "run.npz").write_bytes(b"old arrays")
            (folder / "run.json").write_bytes(b"old meta")

    setup(tmp_path / "count")
    calls = _counting(monkeypatch)
    io.save(small_solution, tmp_path / "count" / "run", overwrite=earlier)
    n_ops = len(calls)
    monkeypatch.undo()
    assert n_ops >= (6 if earlier else 4)
    for k in range(1, n_ops + 1):
        folder = tmp_path / f"fail{k}"
        setup(folder)
        _counting(monkeypatch, fail_at=k)
        with pytest.raises(OSError, match="simulated"):
            io.save(small_solution, folder / "run", overwrite=earlier)
        monkeypatch.undo()
        files = sorted(p.name for p in folder.iterdir())
        if earlier:
            assert files == ["run.json", "run.npz"], (k, files)
            assert (folder / "run.npz").read_bytes() == b"old arrays"
            assert (folder / "run.json").read_bytes() == b"old meta"
        else:
            assert files == [], (k, files)


def test_saved_files_follow_the_umask(tmp_path, small_solution):
    old = os.umask(0o022)
    try:
        path = small_solution.save(tmp_path / "perm")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644 and path.with_suffix(".json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("edit, pattern", [
    (lambda m: m.update(format_version="1"), "format_version '1'"),
    (lambda m: m.update(kind="table"), "kind"),
])
def test_load_refuses_foreign_metadata(tmp_path, small_solution, edit, pattern):
    path = small_solution.save(tmp_path / "s")
    meta = json.loads(path.with_suffix(".json").read_text())
    edit(meta)
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=pattern):
        dj.load(path)


def test_load_refuses_a_foreign_npz_beside_valid_json(tmp_path, small_solution):
    path = small_solution.save(tmp_path / "s")
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ValueError, match="missing arrays"):
        dj.load(path)


def test_review_findings_stay_fixed(tmp_path):
    # a grid result saves (its seed is per point) and records the grid
    g = dj.solve_grid(P, dj.GD(0.2), {"lam": [0.0, 0.1]}, **SMALL)
    assert dj.load(g.save(tmp_path / "grid")).meta["grid"] == {"lam": [0.0, 0.1]}
    # a schedule is validated over the steps used only
    assert dj.solve(P, dj.GD(eta=lambda k: 0.4 - 0.001 * k), t_max=2.0, n_traj=64).ok
    # an extension's plain-Python __check_init__ does not break solves
    class Sub(dj.TwoCluster):
        def __check_init__(self):
            if not 0 < self.rho < 1:
                raise ValueError("rho")
    assert dj.solve(dj.Problem(Sub(0.5)), dj.GD(0.2), **SMALL).ok
    # options of the damped iteration are not silently ignored by the sweep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="damping"):
            solve(damping=0.3)
    # erm with the exponential loss: a stiff proximal step (omega ~ -35) converges
    e = dj.erm(dj.Problem(dj.TwoCluster(0.5), dj.Exponential(), alpha=5.0, delta=0.5, lam=0.01), n_nodes=100)
    assert e.ok and float(e.q) == pytest.approx(45.4361, rel=1e-4)


from killed_save import Fake as _Fake  # noqa: E402 (tests/killed_save.py: the child's script and its result)

KILLED_SAVE = Path(__file__).with_name("killed_save.py")


@pytest.mark.parametrize("earlier", [False, True], ids=["new", "overwrite"])
def test_a_save_killed_at_any_file_operation_never_mixes_two_results(tmp_path, monkeypatch, earlier):
    """kill -9 (SIGKILL, in a child process) at each file operation of a save: what load returns
    is the earlier result whole or the new one whole (or nothing for a new name), never a mix,
    and the next save leaves no temporary behind."""
    import subprocess
    import sys

    calls = _counting(monkeypatch)
    io.save(_Fake(0.0), tmp_path / "count", overwrite=False)
    n_ops = len(calls) + (2 if earlier else 0)  # an overwrite also links the two backups
    monkeypatch.undo()
    script = KILLED_SAVE
    for k in range(1, n_ops + 1):
        path = tmp_path / f"kill{k}" / "run"
        path.parent.mkdir()
        if earlier:
            io.save(_Fake(1.0), path)
        run = subprocess.run([sys.executable, str(script), io.__file__, str(k), str(path), "1" if earlier else "0"],
                             capture_output=True, timeout=60)
        assert run.returncode == -9, (k, run.stderr.decode()[-500:])  # it was killed at operation k
        if not earlier and not path.with_suffix(".npz").exists():
            got = None
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a .json of the earlier save is reported, not used
                loaded = io.load(path)
            got = float(loaded.m[0])
            assert loaded.meta["config"]["v"] == got, k  # metadata and arrays of one save
            assert np.all(loaded.eps_gen == got)
        assert got in ((1.0, 2.0) if earlier else (None, 2.0)), (k, got)
        io.save(_Fake(3.0), path, overwrite=True)  # the next save cleans up after the killed one
        assert sorted(p.name for p in path.parent.iterdir()) == ["run.json", "run.npz"], k


def test_two_saves_of_one_new_name_one_wins(tmp_path, monkeypatch):
    import threading

    barrier = threading.Barrier(2)
    real = io._op

    def racing(name, fn, *args):
        if name == "link" and str(args[1]).endswith(".npz"):
            barrier.wait(timeout=10)  # both have passed the existence check
        return real(name, fn, *args)
    monkeypatch.setattr(io, "_op", racing)
    outcome = {}

    def save(value):
        try:
            io.save(_Fake(value), tmp_path / "run")
            outcome[value] = "saved"
        except FileExistsError as err:
            outcome[value] = str(err)
    threads = [threading.Thread(target=save, args=(v,)) for v in (1.0, 2.0)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcome.values()).count("saved") == 1, outcome
    loser = next(v for v in outcome.values() if v != "saved")
    assert "another save took the name first" in loser
    winner = next(k for k, v in outcome.items() if v == "saved")
    monkeypatch.undo()
    assert float(io.load(tmp_path / "run").m[0]) == winner
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.npz"]


def test_load_refuses_edited_arrays_and_metadata(tmp_path):
    path = io.save(_Fake(1.0), tmp_path / "run")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["m"] = arrays["m"][:3]  # a shortened curve
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="array 'm' is not the one saved"):
        io.load(path)
    path = io.save(_Fake(1.0), tmp_path / "run", overwrite=True)
    assert path.json == tmp_path / "run.json" and path.npz == tmp_path / "run.npz"  # both paths returned
    meta = json.loads(path.json.read_text())
    meta["problem"]["v"] = 7.0  # an edited parameter
    path.json.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="edited after the save: problem"):
        io.load(path)
    with pytest.raises(ValueError, match="overwrite must be True or False"):
        io.save(_Fake(1.0), tmp_path / "run", overwrite="yes")


def test_tune_that_makes_the_objective_worse_says_so():
    # a negative learning rate climbs: `dmft-jax tune --lr -0.3` exited 0 with a worse objective
    import optax

    with pytest.warns(RuntimeWarning, match="worse than at its start"):
        res = dj.tune(P, A, ["b"], t_max=1.0, n_traj=64, steps=3, optimizer=optax.adam(-0.3), errors=None)
    assert res.result.code == dj.RESULTS.worse and not res.ok
    assert res.objective > res.history["objective"][0]
    with pytest.raises(ValueError, match="params must be a list of names"):
        dj.tune(P, A, "lam", t_max=1.0, n_traj=64, steps=1)
    with pytest.raises(ValueError, match="each name once"):
        dj.tune(P, A, ["lam", "lam"], t_max=1.0, n_traj=64, steps=1)


def test_an_invalid_traced_point_has_nan_gradients():
    # jax.grad at an invalid lam returned a finite 0.0: an optimiser saw a stationary point
    import warnings

    def final(lam, problem=P):
        return dj.solve(eqx.tree_at(lambda p: p.lam, problem, lam), dj.GD(0.2), n_steps=3, n_traj=32).eps_gen[-1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(float(jax.grad(final)(-0.1)))
        assert np.isfinite(float(jax.grad(final)(0.1)))
        committee = dj.Committee(P, dj.SoftCommittee(2))
        sol = jax.jit(lambda lam: dj.solve(eqx.tree_at(lambda c: c.problem.lam, committee, lam), dj.GD(0.2),
                                           n_steps=3, n_traj=32))(-0.1)
    assert int(sol.result.code) == dj.RESULTS.invalid_input and np.all(np.isnan(np.asarray(sol.Q)))


def test_tune_refuses_a_start_outside_a_declared_range():
    # the declared range names the parameter: b = 1 is full batch, which sigmoid(theta) never reaches
    with pytest.raises(ValueError, match=r"b: tuning b needs starting values strictly inside \(0, 1\)"):
        dj.tune(P, dj.SGD(0.2, 1.0), ["b"], t_max=1.0, n_traj=64, steps=1)
    with pytest.raises(ValueError, match="temperature: tuning temperature needs a starting value > 0"):
        dj.tune(P, dj.GD(0.2, temperature=0.0), ["temperature"], t_max=1.0, n_traj=64, steps=1)


def test_any_name_the_file_system_takes_saves(tmp_path):
    """A legal 251-byte name (255 with .npz) was refused as 'File name too long': its .json
    (256 bytes) is the one name the file system refuses, so the .npz (which holds the metadata)
    is saved alone, with a warning, and loads without one; temporaries are short whatever the
    name. A name whose .npz is too long is refused by name with the limit."""
    name = tmp_path / ("r" * 251)
    with pytest.warns(UserWarning, match="above the 255 this file system allows in a name: only r+.npz is written"):
        saved = io.save(_Fake(1.0), name)
    assert len(saved.npz.name) == 255 and saved.json is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert float(io.load(name).m[0]) == 1.0
    with pytest.warns(UserWarning, match="only r+.npz is written"):
        io.save(_Fake(2.0), name, overwrite=True)
    with pytest.raises(FileExistsError, match="overwrite"), pytest.warns(UserWarning):
        io.save(_Fake(3.0), name)
    assert float(io.load(name).m[0]) == 2.0 and sorted(p.name for p in tmp_path.iterdir()) == [saved.npz.name]
    with pytest.raises(ValueError, match=r"path: the file name 'r+.npz' is 256 bytes, above the 255 this file system "
                                         r"allows; use a name of at most 251 bytes"):
        io.save(_Fake(1.0), tmp_path / ("r" * 252))
    io.save(_Fake(1.0), tmp_path / ("s" * 250))  # 254 and 255 bytes: both files
    assert (tmp_path / ("s" * 250 + ".json")).exists()
