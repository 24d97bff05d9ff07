"""The trace cache (dmft_jax/cache.py): a process that finds a solve's lowered program on disk
skips tracing it, and gets the same numbers; what the key cannot vouch for is not cached."""
import jax
import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax import cache, solver

KW = dict(n_steps=7, n_traj=80, key=3)  # sizes no other test uses
FIELDS = ("m", "q", "eps_gen", "train_loss", "train_acc", "C", "R", "M_R")


@pytest.fixture
def trace_dir(tmp_path):
    # JAX's compilation cache too, as in use: a "new process" below compiles nothing
    dj.enable_compilation_cache(tmp_path / "xla", min_compile_time_secs=0.0, trace_cache=False)
    cache.enable_trace_cache(tmp_path)
    cache._MEMO.clear()
    yield tmp_path
    dj.disable_compilation_cache()
    cache._MEMO.clear()


def _same(a, b):
    for name in FIELDS:
        np.testing.assert_array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), err_msg=name)
    assert a.config == b.config and a.message == b.message


def test_a_new_process_reads_the_program_and_gets_the_same_numbers(seed_two_cluster, trace_dir, monkeypatch):
    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    cache.disable_trace_cache()
    plain = dj.solve(seed_two_cluster, algo, **KW)
    cache.enable_trace_cache(trace_dir)
    first = dj.solve(seed_two_cluster, algo, **KW)  # traces, writes the program, runs it
    files = list(trace_dir.glob("*.exported"))
    assert len(files) == 1 and not list(trace_dir.glob(".*tmp"))
    _same(first, plain)
    # a "new process": nothing in memory; the sweep must not be traced again
    cache._MEMO.clear()

    def no_trace(*args, **kwargs):
        raise AssertionError("the sweep was traced although its program is on disk")

    monkeypatch.setattr(solver, "solve_traced", no_trace)
    again = dj.solve(seed_two_cluster, algo, **KW)
    _same(again, plain)
    # new parameter values share the program (parameters are data)
    other = dj.solve(seed_two_cluster, dj.PersistentSGD(0.2, 0.4, 2.0), **KW)
    assert not np.allclose(np.asarray(other.m), np.asarray(plain.m))
    assert len(list(trace_dir.glob("*.exported"))) == 1
    # a damaged file is a miss: the program is traced and written again
    monkeypatch.undo()
    cache._MEMO.clear()
    files[0].write_bytes(b"not a program")
    _same(dj.solve(seed_two_cluster, algo, **KW), plain)
    assert files[0].stat().st_size > 1000


def test_what_the_key_cannot_vouch_for_is_not_cached(seed_two_cluster, trace_dir):
    def my_loss(v):  # a user's function: its code is not part of the key
        return jax.numpy.logaddexp(0.0, -v)

    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    custom = dj.Problem(dj.TwoCluster(0.5), dj.CustomLoss(my_loss), alpha=2.0, delta=0.5, R0=0.01)
    with pytest.raises(cache._Unkeyable, match="my_loss"):
        cache._key((custom, algo))
    # a static choice (the loss) is part of the key; a value (alpha) is not
    square = dj.Problem(dj.TwoCluster(0.5), "square", alpha=2.0, delta=0.5, R0=0.01)
    other_alpha = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=3.0, delta=0.5, lam=0.0, R0=0.01)
    key = cache._key((seed_two_cluster.astype("float64"), algo))
    assert cache._key((square.astype("float64"), algo)) != key
    assert cache._key((other_alpha.astype("float64"), algo)) == key
    # a progress bar is a host callback, which a saved program cannot hold: solved as before
    sol = dj.solve(seed_two_cluster, algo, progress_meter=dj.TextProgressMeter(), **KW)
    assert bool(sol.ok) and not list(trace_dir.glob("*.exported"))


def test_bad_trace_cache_option(tmp_path):
    with pytest.raises(ValueError, match="trace_cache must be True or False"):
        dj.enable_compilation_cache(tmp_path, trace_cache="yes")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="trace cache folder"):
        cache.enable_trace_cache(blocker / "sub")


def test_a_passed_loss_check_is_remembered_by_value(trace_dir):
    from dmft_jax import losses

    losses._PASSED.clear()
    losses.check_for_solver(dj.SmoothHinge(10.0))
    assert cache.known("curvature", dj.SmoothHinge(10.0))
    # another value is another key: a sharp smooth hinge is still refused
    losses._PASSED.clear()
    assert not cache.known("curvature", dj.SmoothHinge(1e5))
    with pytest.raises(ValueError, match="second derivative|curvature|kink|differentiable"):
        losses.check_for_solver(dj.SmoothHinge(1e5))
    # an array-valued parameter is never taken from the cache (its key would hold the shape only)
    assert not cache.known("curvature", dj.SmoothHinge(jax.numpy.asarray(10.0)))
