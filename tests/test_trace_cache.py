"""The trace cache (dmft_jax/cache.py): a process that finds a solve's lowered program on disk
skips tracing it, and gets the same numbers; what the key cannot vouch for is not cached."""
import jax
import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax._cache import entry as cache_entry
from dmft_jax._solve import solve as solver
from dmft_jax._cache import trace as cache

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
    from dmft_jax._problem import losses

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


# --- planted files (docs/equations.md, section 8.1): nothing runs, hangs or balloons; the numbers
# are a cold solve's and a warning names each ignored file

class _Payload:  # a pickle that would run code when unpickled (the first campaign's exploit)
    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.flag}",)


def _hostile_files(entry, tmp_path, key):
    """Each kind of hostile file, as bytes (or a callable that plants it at a path)."""
    import json
    import os
    import pickle
    import struct

    good = entry.read_bytes()
    magic = cache_entry.MAGIC
    (size,) = struct.unpack("<I", good[len(magic):len(magic) + 4])
    header = json.loads(good[len(magic) + 4:len(magic) + 4 + size])
    payload = good[len(magic) + 4 + size:]

    def packed(h, p=payload, fix_hash=True):
        h = dict(h)
        if fix_hash:
            import hashlib

            h.update(payload_sha256=hashlib.sha256(p).hexdigest(), payload_size=len(p))
        text = json.dumps(h).encode()
        return magic + struct.pack("<I", len(text)) + text + p

    flag = tmp_path / "planted_code_ran"
    evil_tree = {"object": ["os", "system"], "fields": []}
    return flag, {
        "crafted pickle": pickle.dumps(_Payload(flag)),
        "another version's (format 1, a pickle)": pickle.dumps({"exported": payload, "skeleton": None}),
        "truncated": good[: len(good) // 2],
        "altered program, old hash": good[:-10] + bytes(10),
        "wrong key in the header": packed(dict(header, key="0" * 64)),
        "another format number": packed(dict(header, format=cache_entry.FORMAT + 1)),
        "a class outside dmft_jax in the output tree": packed(dict(header, out_tree=evil_tree)),
        "a dmft_jax function, not a class": packed(dict(header, out_tree={
            "object": ["dmft_jax._cache.compilation", "enable_compilation_cache"], "fields": []})),
        "a FIFO": lambda path: os.mkfifo(path),
        "a link to /dev/zero": lambda path: os.symlink("/dev/zero", path),
        "a link to a good entry": lambda path: os.symlink(tmp_path / "good_copy", path),
    }


def test_planted_files_are_ignored_with_a_warning(seed_two_cluster, tmp_path):
    import warnings

    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    cold = dj.solve(seed_two_cluster, algo, **KW)
    folder = tmp_path / "traces"
    cache.enable_trace_cache(folder)
    cache._MEMO.clear()
    try:
        dj.solve(seed_two_cluster, algo, **KW)
        (entry,) = folder.glob("*.exported")
        (tmp_path / "good_copy").write_bytes(entry.read_bytes())
        flag, planted = _hostile_files(entry, tmp_path, entry.stem)
        for kind, content in planted.items():
            entry.unlink()
            content(entry) if callable(content) else entry.write_bytes(content)
            cache._MEMO.clear()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                sol = dj.solve(seed_two_cluster, algo, **KW)
            assert not flag.exists(), kind
            _same(sol, cold)
            named = [w for w in caught if issubclass(w.category, cache.CacheWarning) and entry.name in str(w.message)]
            assert named, f"{kind}: no warning names the ignored file"
            # the hostile file was replaced by a good entry, which the next process reads
            assert entry.is_file() and not entry.is_symlink(), kind
            header, _ = cache_entry.unpack(entry.read_bytes(), entry.stem, "program")  # raises if not
            assert header["key"] == entry.stem
        assert not list(folder.glob(".*tmp"))
    finally:
        cache.disable_trace_cache()
        cache._MEMO.clear()


def test_a_planted_marker_does_not_pass_a_refused_loss(tmp_path):
    from dmft_jax._problem import losses

    cache.enable_trace_cache(tmp_path)
    try:
        sharp = dj.SmoothHinge(1e6)
        path = tmp_path / f"{cache._key(('curvature', sharp))}.curvature"
        for planted in (b"", cache_entry.pack({"key": "0" * 64, "kind": "curvature", "verdict": "passed"}, b""),
                        cache_entry.pack({"key": path.stem, "kind": "curvature", "verdict": "failed"}, b"")):
            path.write_bytes(planted)
            losses._PASSED.clear()
            with pytest.warns(cache.CacheWarning, match=path.name):
                with pytest.raises(ValueError, match="second derivative|curvature|kink|differentiable"):
                    losses.check_for_solver(sharp)
        # a marker the library wrote is read back
        losses._PASSED.clear()
        losses.check_for_solver(dj.SmoothHinge(10.0))
        assert cache.known("curvature", dj.SmoothHinge(10.0))
    finally:
        cache.disable_trace_cache()
        losses._PASSED.clear()


def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    import os

    folder = tmp_path / "group"
    folder.mkdir()
    os.chmod(folder, 0o775)
    with pytest.raises(ValueError, match="writable by other users.*shared=True"):
        dj.enable_compilation_cache(folder)
    with pytest.raises(ValueError, match="shared must be True or False"):
        dj.enable_compilation_cache(folder, shared="yes")
    try:
        assert dj.enable_compilation_cache(folder, shared=True) == folder
    finally:
        dj.disable_compilation_cache()


def test_second_campaign_entries_are_ignored_quickly(seed_two_cluster, tmp_path):
    """What a review's campaign found past the first test: a symbolic dimension that makes JAX's
    parser run for hours, a program for two devices or of other input shapes, a number that is no
    number, a marker nested too deeply, a folder that became a file."""
    import json
    import struct
    import time

    import jax.numpy as jnp

    algo = dj.PersistentSGD(0.2, 0.3, 1 / 0.6)
    folder = tmp_path / "traces"
    cache.enable_trace_cache(folder)
    cache._MEMO.clear()
    try:
        cold = dj.solve(seed_two_cluster, algo, **KW)
        (entry,) = folder.glob("*.exported")
        good = entry.read_bytes()
        magic = cache_entry.MAGIC
        (size,) = struct.unpack("<I", good[len(magic):len(magic) + 4])
        header = json.loads(good[len(magic) + 4:len(magic) + 4 + size])
        bomb = "a^999999999"
        (dim,) = jax.export.symbolic_shape("q" * len(bomb))
        symbolic = bytes(jax.export.export(jax.jit(lambda x: x))(jax.ShapeDtypeStruct((dim,), jnp.float64))
                         .serialize()).replace(b"q" * len(bomb), bomb.encode())
        other_inputs = bytes(jax.export.export(jax.jit(lambda x: [x] * 17))(jnp.zeros(3)).serialize())
        for kind, content in {
            "a symbolic-dimension bomb": cache_entry.pack(dict(header), symbolic),
            "other input shapes": cache_entry.pack(dict(header), other_inputs),
            "a number that is no number": cache_entry.pack(dict(header, out_tree={"float": "abc"}),
                                                     good[len(magic) + 4 + size:]),
        }.items():
            entry.write_bytes(content)
            cache._MEMO.clear()
            start = time.perf_counter()
            with pytest.warns(cache.CacheWarning, match=entry.name):
                _same(dj.solve(seed_two_cluster, algo, **KW), cold)
            assert time.perf_counter() - start < 30, kind
        # a marker nested too deeply
        sharp = dj.SmoothHinge(1e6)
        marker = folder / f"{cache._key(('curvature', sharp))}.curvature"
        text = b"[" * 100000 + b"]" * 100000
        marker.write_bytes(magic + struct.pack("<I", len(text)) + text)
        with pytest.warns(cache.CacheWarning, match="nested too deeply"):
            assert not cache.known("curvature", sharp)
        # the folder replaced by a file: a warning, and the solve goes on
        import shutil

        shutil.rmtree(folder)
        folder.write_text("")
        cache._MEMO.clear()
        with pytest.warns(cache.CacheWarning, match="cannot be examined"):
            _same(dj.solve(seed_two_cluster, algo, **KW), cold)
    finally:
        cache.disable_trace_cache()
        cache._MEMO.clear()


def test_cache_folders_are_created_private_whatever_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0)
    try:
        path = dj.enable_compilation_cache(tmp_path / "new")
        for p in (path, path / "exported"):
            assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0, oct(os.stat(p).st_mode)
        with pytest.raises(ValueError, match="shared must be True or False"):
            cache.enable_trace_cache(path, shared="no")
    finally:
        os.umask(old)
        dj.disable_compilation_cache()
