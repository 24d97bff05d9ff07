"""Classify how dmft_jax handles bad/edge inputs, BEFORE the reliability change (a checkout
of commit 83aea76) and AFTER (this checkout), on the inputs of tests/test_bad_input.py:
clear error naming the parameter / handled (failed result or correct) / unclear error /
silent wrong result or lost data / crash.

    mkdir -p /tmp/old && git archive 83aea76 dmft_jax | tar -x -C /tmp/old
    python benchmarks/bad_inputs.py               # both sides; table in $DMFT_BAD_INPUT_OUT
    python benchmarks/bad_inputs.py --reclassify  # redo only the table from the raw JSON

``DMFT_BAD_INPUT_OLD`` (default /tmp/old) is the folder holding the old ``dmft_jax``;
``DMFT_BAD_INPUT_OUT`` (default /tmp/dmft_bad_inputs) receives the raw JSON and the table.
The classification rules, the old-API translations and the few judgement calls
(``OVERRIDES``) are written out below.

Each side runs in its own worker process (same package name), jax_enable_x64 set before
importing dmft_jax, pinned to one CPU, address space capped at 6 GiB (protects the shared
machine: an "allocate 600 GB" input then fails inside the worker instead of invoking the
OOM killer). A case that kills its worker is a crash; a case running past 120 s is a hang
(crash); the worker is then restarted for the remaining cases.

Nothing in the checkout is written: bytecode writing is disabled, all output goes to the out folder.

The second table (issue 26; ``python benchmarks/bad_inputs.py --second``) runs the cases of
benchmarks/bad_inputs_second.py on this checkout only, in the same kind of worker, and classes
each one automatically as clear / handled / unclear / silent / lost / hang / OOM / security (and
crash, for a worker that died of anything else); the rules are written out in that file and in
``classify_second`` below. ``--second --reclassify`` redoes its table from the raw JSON.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_FILE = os.path.join(REPO, "tests", "test_bad_input.py")
ROOTS = {"before": os.environ.get("DMFT_BAD_INPUT_OLD", "/tmp/old"), "after": REPO, "second": REPO}
OUT = os.environ.get("DMFT_BAD_INPUT_OUT", "/tmp/dmft_bad_inputs")
os.makedirs(OUT, exist_ok=True)
RAW = os.path.join(OUT, "bad_input_raw.json")
TABLE = os.path.join(OUT, "bad_input_counts.md")
WORK = os.path.join(OUT, "work")
CASE_TIMEOUT = 120.0
MEM_LIMIT = 6 << 30

# ---------------------------------------------------------------------------------------
# Old-API translation, explicit per case id. Every API/CLI/extra case not listed here runs
# the very same call on both sides (the lambdas of the test file, evaluated against the
# package imported in that process).
# ---------------------------------------------------------------------------------------
OLD_TRANSLATION = {
    "solver_string": ("solve(method='causal')",
                      "the old strategy selector was the string keyword method= ('sweep'|'iteration'); "
                      "an unknown method string is the equivalent wrong strategy value"),
    "pivot_rtol_negative": ("solve(pivot_rtol=-1.0)", "pivot_rtol was a solve keyword"),
    "time_blocks_zero": ("solve(time_blocks=0)", "time_blocks was a solve keyword"),
    "damping_zero": ("solve(method='iteration', damping=0.0)", "damping was a solve keyword"),
    "max_iter_fraction": ("solve(method='iteration', max_iter=2.5)", "max_iter was a solve keyword"),
    "adjoint_with_probes": ("solve(response=dj.ProbeResponse(2), adjoint=True)", "adjoint was a bool"),
    "sharding_string": ("solve(devices='gpu')", "sharding= was called devices="),
    "save_overwrite": ("dj.save(sol_a, d/'r'); dj.save(sol_b, d/'r')",
                       "no overwrite= keyword; the same two calls"),
    "save_interrupted_json": ("io._atomic_write patched: the .json write writes 9 bytes then raises OSError",
                              "old save wrote each file through io._atomic_write (new: io._temporary)"),
}
# the parameter the old translation names instead (regex for the "clear" check)
OLD_PATTERN = {"solver_string": "method", "sharding_string": "devices", "adjoint_with_probes": "adjoint"}
OLD_NA = {}  # id -> reason (none: every case has an old equivalent)

EXTRA_IDS = ["traced_vmap_lam", "traced_vmap_delta", "sim_nan_loss", "sim_diverging_gd",
             "save_dot_names", "save_overwrite", "save_interrupted_json", "load_foreign_npz",
             "load_format_version_string"]
EXTRA_DESC = {
    "traced_vmap_lam": "jax.vmap over (lam, delta) = [(0,.5), (-1,.5), (0,-.5)] set by eqx.tree_at; "
                       "solve(p, GD(0.2), n_steps=5, n_traj=64, key=0); this row: point 1 (lam=-1)",
    "traced_vmap_delta": "same vmap call; this row: point 2 (delta=-0.5)",
    "sim_nan_loss": "simulate(Problem(loss=lambda v: jnp.sqrt(v)), GD(0.2), t_max=1, d=50, n_seeds=2)",
    "sim_diverging_gd": "simulate(Problem(loss='square'), GD(5.0), t_max=100, d=50, n_seeds=2)",
    "save_dot_names": "save(sol lam=0, d/'lam_0.05') then save(sol lam=0.1, d/'lam_0.1'): does the first survive?",
    "save_overwrite": "save(sol_a, d/'r') then save(sol_b, d/'r') (sol_b has lam=0.1)",
    "save_interrupted_json": "save(sol, d/'run') with the .json file write failing half-way (OSError)",
    "load_foreign_npz": "save(sol, d/'s'); np.savez(d/'s.npz', something=zeros(3)); load(d/'s')",
    "load_format_version_string": "save(sol, d/'s'); set format_version to the string \"1\" in s.json; load",
}

# Manual judgments, after reading the raw messages (side, id) -> (class, note). Only used
# where the automatic rule (regex match -> clear, else unclear) is wrong or needs a note.
_RAW_JAX = "raw JAX error; the regex only hit the word inside JAX's own wording"
OVERRIDES: dict = {
    ("before", "key_float"): ("unclear", "TypeError: JAX encountered invalid PRNG key data ... Got 0.5 (" + _RAW_JAX + ")"),
    ("before", "key_string"): ("unclear", "TypeError: JAX encountered invalid PRNG key data ... Got abc (" + _RAW_JAX + ")"),
    ("before", "key_none"): ("unclear", "TypeError: unexpected PRNG key type <class 'NoneType'> (" + _RAW_JAX + ")"),
    ("before", "simulate_key"): ("unclear", "TypeError: JAX encountered invalid PRNG key data ... Got x (" + _RAW_JAX + ")"),
    ("before", "dtype_float128"): ("unclear", "TypeError: JAX only supports number, bool, and string dtypes, got dtype "
                                   "float128 in astype (" + _RAW_JAX + ")"),
    ("before", "cli:simulate_d_one"): ("clear", "exit 2: 'd must be an integer >= 2; got 1' (names d and the range, "
                                       "without the dashes of --d)"),
    ("before", "cli:n_seeds_zero"): ("clear", "exit 2: 'n_seeds must be an integer >= 1; got 0', but only after the "
                                     "full default solve (t_max=20, N=32768) ran and wrote solution.npz"),
    ("before", "cli:abbreviated_flag"): ("silent", "'--d 100' was taken as --delta 100 (argparse prefix matching): "
                                         "the full default solve ran, exit 0, solution.npz written"),
    ("before", "max_iter_fraction"): ("handled", "2.5 accepted; status 2 'did not converge within max_iter' with a "
                                      "RuntimeWarning, curves hold numbers"),
    ("before", "traced_vmap_delta"): ("handled", "status 1 'non-finite values (try a smaller eta ...)': delta not named, "
                                      "and eps_gen reads 0.5, not NaN"),
    ("before", "load_format_version_string"): ("unclear", "ValueError: 'format version 1 is not supported (this dmft_jax "
                                               "reads version 1)': self-contradictory, the string-vs-int cause is hidden"),
}


# =======================================================================================
# worker
# =======================================================================================
def _summ(x, n=600):
    s = str(x)
    return s if len(s) <= n else s[:n] + "...[cut]"


def worker(side, ids, out_path, workdir):
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    sys.dont_write_bytecode = True
    sys.path.insert(0, ROOTS[side])
    import jax

    jax.config.update("jax_enable_x64", True)
    import contextlib
    import importlib.util
    import io as _io
    import pathlib
    import warnings

    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import dmft_jax as dj
    from dmft_jax import io as djio

    assert dj.__file__.startswith(ROOTS[side]), dj.__file__
    spec = importlib.util.spec_from_file_location("bad_input_cases", TEST_FILE)
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)
    api = {c[0]: c for c in T.API}
    cli = {c[0]: c for c in T.CLI}

    out = open(out_path, "a")

    def emit(rec):
        out.write(json.dumps(rec) + "\n")
        out.flush()

    def status_of(obj):
        st = getattr(obj, "status", None)
        if st is None:
            return None
        try:
            return np.asarray(st).tolist()
        except Exception:
            return repr(st)

    def describe(obj):
        d = {"type": type(obj).__name__, "repr": _summ(repr(obj), 200)}
        st = status_of(obj)
        if st is not None:
            d["status"] = st
            d["message"] = _summ(getattr(obj, "message", ""), 300)
        for name in ("eps_gen", "q"):
            v = getattr(obj, name, None)
            if v is not None:
                try:
                    a = np.asarray(v, dtype=float)
                    d[name + "_last"] = a[..., -1].tolist()
                    d[name + "_all_finite"] = bool(np.all(np.isfinite(a)))
                except Exception:
                    pass
        return d

    def solve_small(**kw):
        return T.solve(**kw)

    # old-side translations (callables), keyed like OLD_TRANSLATION
    old_calls = {
        "solver_string": lambda: solve_small(method="causal"),
        "pivot_rtol_negative": lambda: solve_small(pivot_rtol=-1.0),
        "time_blocks_zero": lambda: solve_small(time_blocks=0),
        "damping_zero": lambda: solve_small(method="iteration", damping=0.0),
        "max_iter_fraction": lambda: solve_small(method="iteration", max_iter=2.5),
        "adjoint_with_probes": lambda: solve_small(response=dj.ProbeResponse(2), adjoint=True),
        "sharding_string": lambda: solve_small(devices="gpu"),
    }

    cache = {}

    def small_solutions():
        if "sols" not in cache:
            a = dj.solve(T.P, T.A, **T.SMALL)
            b = dj.solve(eqx.tree_at(lambda p: p.lam, T.P, 0.1), T.A, **T.SMALL)
            cache["sols"] = (a, b)
        return cache["sols"]

    def fresh_dir(cid):
        return pathlib.Path(tempfile.mkdtemp(prefix=cid + "_", dir=workdir))

    def listing(d):
        return sorted(p.name for p in pathlib.Path(d).rglob("*") if p.is_file())

    # ---- the extra (non-table) cases: each returns a dict merged into the record --------
    def ex_traced(point):
        def one(lam, delta):
            p = eqx.tree_at(lambda q: (q.lam, q.delta), T.P, (lam, delta))
            return dj.solve(p, dj.GD(0.2), n_steps=5, n_traj=64, key=0)

        sol = jax.vmap(one)(jnp.array([0.0, -1.0, 0.0]), jnp.array([0.5, 0.5, -0.5]))
        st = np.asarray(sol.status)
        eps = np.asarray(sol.eps_gen)
        return {"outcome": "returned", "point": point, "status_all": st.tolist(),
                "status": int(st[point]), "eps_last_all": eps[:, -1].tolist(),
                "point_all_finite": bool(np.all(np.isfinite(eps[point]))),
                "valid_point_ok": bool(st[0] == 0 and np.all(np.isfinite(eps[0]))),
                "message": _summ(sol.message, 400)}

    def ex_sim(kind):
        if kind == "nan":
            sim = dj.simulate(dj.Problem(loss=lambda v: jnp.sqrt(v)), dj.GD(0.2), t_max=1.0, d=50, n_seeds=2)
        else:
            sim = dj.simulate(dj.Problem(loss="square"), dj.GD(5.0), t_max=100.0, d=50, n_seeds=2)
        r = {"outcome": "returned", "result": describe(sim)}
        eps = np.asarray(sim.eps_gen, dtype=float)
        r["eps_last"] = float(eps[-1])
        r["eps_all_finite"] = bool(np.all(np.isfinite(eps)))
        r["q_all_finite"] = bool(np.all(np.isfinite(np.asarray(sim.q, dtype=float))))
        r["all_finite"] = r["eps_all_finite"] and r["q_all_finite"]
        r["q_max"] = float(np.nanmax(np.abs(np.asarray(sim.q, dtype=float)))) if np.any(np.isfinite(np.asarray(sim.q, dtype=float))) else None
        return r

    def ex_dot_names():
        a, b = small_solutions()
        d = fresh_dir("dot")
        pa = dj.save(a, d / "lam_0.05")
        pb = dj.save(b, d / "lam_0.1")
        files = listing(d)
        la = dj.load(pa).meta["problem"]["lam"]
        lb = dj.load(pb).meta["problem"]["lam"]
        return {"outcome": "returned", "paths": [pathlib.Path(pa).name, pathlib.Path(pb).name], "files": files,
                "lam_read_from_first": la, "lam_read_from_second": lb,
                "first_survived": pathlib.Path(pa) != pathlib.Path(pb) and abs(float(la)) < 1e-12}

    def ex_overwrite():
        a, b = small_solutions()
        d = fresh_dir("ow")
        dj.save(a, d / "r")
        before = {n: (d / n).read_bytes() for n in listing(d)}
        r = {"files_after_first": sorted(before)}
        try:
            dj.save(b, d / "r")
        except Exception as err:
            r.update(outcome="raised", exc_type=type(err).__name__, message=_summ(err))
        else:
            r.update(outcome="returned")
        after = {n: (d / n).read_bytes() for n in listing(d)}
        r["files_after_second"] = sorted(after)
        r["first_unchanged"] = all(after.get(n) == v for n, v in before.items())
        r["lam_now"] = dj.load(d / "r").meta["problem"]["lam"]
        return r

    def ex_interrupted():
        a, _ = small_solutions()
        d = fresh_dir("int")

        def bad(fh):
            fh.write(b'{"format_')
            raise OSError("disk full while writing the JSON (simulated)")

        if hasattr(djio, "_temporary"):  # after
            real = djio._temporary

            def patched(path, write):
                return real(path, bad if str(path).endswith(".json") else write)
            name = "_temporary"
        else:  # before
            real = djio._atomic_write

            def patched(path, write):
                return real(path, bad if str(path).endswith(".json") else write)
            name = "_atomic_write"
        setattr(djio, name, patched)
        r = {"patched": "io." + name}
        try:
            dj.save(a, d / "run")
        except Exception as err:
            r.update(outcome="raised", exc_type=type(err).__name__, message=_summ(err))
        else:
            r.update(outcome="returned")
        finally:
            setattr(djio, name, real)
        r["files"] = listing(d)
        return r

    def ex_load(kind):
        a, _ = small_solutions()
        d = fresh_dir("load")
        path = dj.save(a, d / "s")
        js = pathlib.Path(path.json)
        if kind == "npz":
            np.savez(path, something=np.zeros(3))
        else:
            meta = json.loads(js.read_text())
            meta["format_version"] = "1"
            js.write_text(json.dumps(meta))
        r = {}
        try:
            got = dj.load(path)
        except Exception as err:
            r.update(outcome="raised", exc_type=type(err).__name__, message=_summ(err))
        else:
            r.update(outcome="returned", loaded=_summ(repr(got), 300),
                     arrays=sorted(getattr(got, "arrays", {})))
        return r

    extras = {
        "traced_vmap_lam": lambda: ex_traced(1), "traced_vmap_delta": lambda: ex_traced(2),
        "sim_nan_loss": lambda: ex_sim("nan"), "sim_diverging_gd": lambda: ex_sim("div"),
        "save_dot_names": ex_dot_names, "save_overwrite": ex_overwrite,
        "save_interrupted_json": ex_interrupted, "load_foreign_npz": lambda: ex_load("npz"),
        "load_format_version_string": lambda: ex_load("fmt"),
    }
    extra_patterns = {"traced_vmap_lam": r"\blam\b", "traced_vmap_delta": r"\bdelta\b",
                      "sim_nan_loss": r"non-?finite|nan", "sim_diverging_gd": r"diverg|non-?finite",
                      "save_overwrite": "overwrite", "load_foreign_npz": "missing arrays",
                      "load_format_version_string": "format_version '1'"}

    for cid in ids:
        emit({"event": "start", "id": cid, "time": time.time()})
        rec = {"event": "done", "id": cid, "side": side}
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if cid.startswith("cli:"):
                    name = cid[4:]
                    _, argv, pattern = cli[name]
                    d = fresh_dir("cli_" + name)
                    full = list(argv) + ["--out", str(d / "out")]
                    rec.update(kind="cli", call="cli.main(%r)" % full, pattern=pattern)
                    err_buf, out_buf = _io.StringIO(), _io.StringIO()
                    try:
                        with contextlib.redirect_stderr(err_buf), contextlib.redirect_stdout(out_buf):
                            ret = T.cli.main(full)
                    except SystemExit as e:
                        rec.update(outcome="exit", exit_code=e.code)
                    except Exception as e:
                        rec.update(outcome="raised", exc_type=type(e).__name__, message=_summ(e))
                    else:
                        rec.update(outcome="returned", exit_code=ret)
                    rec["stderr_tail"] = _summ(err_buf.getvalue()[-600:], 600)
                    rec["stdout_tail"] = _summ(out_buf.getvalue()[-300:], 300)
                    rec["files_written"] = listing(d)
                elif cid in extras:
                    rec.update(kind="extra", call=EXTRA_DESC[cid], pattern=extra_patterns.get(cid))
                    if side == "before" and cid in OLD_TRANSLATION:
                        rec["call"] = OLD_TRANSLATION[cid][0]
                    try:
                        rec.update(extras[cid]())
                    except Exception as e:
                        rec.update(outcome="raised", exc_type=type(e).__name__, message=_summ(e))
                else:
                    _, call, exc, pattern = api[cid]
                    rec.update(kind="api", pattern=pattern, expected_type=exc.__name__)
                    if side == "before" and cid in old_calls:
                        call = old_calls[cid]
                        rec["call"] = OLD_TRANSLATION[cid][0]
                        rec["pattern"] = OLD_PATTERN.get(cid, pattern)
                    try:
                        with contextlib.redirect_stderr(_io.StringIO()):
                            res = call()
                            if hasattr(res, "m"):
                                jax.block_until_ready(res.m)
                    except Exception as e:
                        rec.update(outcome="raised", exc_type=type(e).__name__, message=_summ(e))
                    else:
                        rec.update(outcome="returned", result=describe(res))
            except BaseException as e:  # anything escaping the case itself
                rec.update(outcome="raised", exc_type=type(e).__name__, message=_summ(e), escaped=True)
        rec["warnings"] = sorted({f"{w.category.__name__}: {_summ(w.message, 200)}" for w in caught
                                  if not issubclass(w.category, DeprecationWarning)})
        rec["deprecations"] = sorted({_summ(w.message, 200) for w in caught
                                      if issubclass(w.category, DeprecationWarning)})
        rec["seconds"] = round(time.time() - t0, 2)
        emit(rec)
    out.close()


# =======================================================================================
# the second table (issue 26): worker, classification, table
# =======================================================================================
RAW2 = os.path.join(OUT, "bad_input_second_raw.json")
TABLE2 = os.path.join(OUT, "bad_input_second.md")
CLASSES2 = ["clear", "handled", "unclear", "silent", "lost", "hang", "OOM", "security", "crash"]


def worker_second(ids, out_path, workdir):
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    sys.dont_write_bytecode = True
    sys.path.insert(0, REPO)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # the command line turns the on-disk caches on: here they must neither read nor fill the user's
    os.environ["DMFT_JAX_CACHE_DIR"] = os.path.join(workdir, "cli_cache")
    import jax

    jax.config.update("jax_enable_x64", True)
    import contextlib
    import io as _io
    import warnings

    import equinox as eqx
    import jax.numpy as jnp
    import numpy as np

    import dmft_jax as dj
    import bad_inputs_second as second

    assert dj.__file__.startswith(REPO), dj.__file__
    cases = {c.id: c for c in second.CASES}
    ctx = second.Context(dj, jax, jnp, np, eqx, workdir)
    out = open(out_path, "a")

    def emit(rec):
        out.write(json.dumps(rec) + "\n")
        out.flush()

    for cid in ids:
        case = cases[cid]
        emit({"event": "start", "id": cid, "time": time.time()})
        rec = {"event": "done", "id": cid, "group": case.group, "expect": case.expect, "pattern": case.pattern}
        t0 = time.time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with contextlib.redirect_stderr(_io.StringIO()):
                    value = case.fn(ctx)
                    if hasattr(value, "m"):
                        jax.block_until_ready(value.m)
            except BaseException as e:  # noqa: BLE001 (a case may raise anything, SystemExit included)
                text = str(e)  # head and tail: jax.jit puts the check's message at the end of its traceback
                rec.update(outcome="raised", exc_type=type(e).__name__,
                           message=text if len(text) <= 3000 else text[:1000] + " ...[cut]... " + text[-2000:])
            else:
                rec["outcome"] = "returned"
                if case.expect == "cli":
                    rec["cli"] = value
                elif case.expect == "correct":
                    rec["verdict"] = value if isinstance(value, (bool, str, dict)) else repr(value)[:200]
                else:
                    st = getattr(value, "status", None)
                    rec["status"] = None if st is None else np.asarray(st).tolist()
                    rec["message"] = _summ(getattr(value, "message", ""), 600)
                    rec["repr"] = _summ(repr(value), 200)
        rec["warnings"] = sorted({f"{w.category.__name__}: {_summ(w.message, 200)}" for w in caught})[:6]
        rec["seconds"] = round(time.time() - t0, 2)
        emit(rec)
    out.close()


def _oom(text) -> bool:
    return bool(text) and re.search(r"MemoryError|RESOURCE_EXHAUSTED|Out of memory|bad_alloc|Cannot allocate",
                                    text) is not None


def classify_second(rec):
    """(class, note) of one record of the second table (rules: bad_inputs_second.py)."""
    out, exp, pattern = rec.get("outcome"), rec.get("expect"), rec.get("pattern")
    if out == "hang":
        return "hang", f"still running after {CASE_TIMEOUT:.0f} s (killed)"
    if out == "died":
        tail = rec.get("log_tail", "")
        return ("OOM" if _oom(tail) else "crash"), f"worker died (returncode {rec.get('returncode')})"
    if out == "raised":
        msg = rec.get("message") or ""
        if rec.get("exc_type") == "MemoryError" or _oom(msg):
            return "OOM", f"{rec['exc_type']}: {msg[:160]}"
        if exp in ("refuse", "fail", "correct") and pattern and re.search(pattern, msg, flags=re.S):
            return "clear", ""
        return "unclear", f"{rec['exc_type']}: {msg[:200]}"
    if exp == "cli":
        res = rec["cli"]
        code, err = res["exit"], res["stderr"]
        if code in (1, 2):
            if "Traceback" in err:
                return "unclear", f"exit {code} with a traceback: {err.strip().splitlines()[-1][:160]}"
            if pattern and re.search(pattern, err):
                return "clear", ""
            return "unclear", f"exit {code}: {err.strip().splitlines()[-1][:160] if err.strip() else '(no message)'}"
        return "silent", f"exit {code}; files {res['files']}"
    if exp == "correct":
        v = rec.get("verdict")
        if v is True:
            return "handled", ""
        if isinstance(v, dict):
            return v.get("class", "silent"), v.get("note", "")
        return "silent", str(v)[:200]
    okst = ok_status(rec.get("status"))
    if exp == "refuse":
        if okst is False:
            return "handled", ""
        return "silent", f"returned {rec.get('repr', '')[:80]} " + ("with success status" if okst else "(no outcome)")
    if exp == "fail":
        if okst is False:
            if pattern and re.search(pattern, rec.get("message") or ""):
                return "handled", ""
            return "unclear", f"failed point, message without the check: {(rec.get('message') or '')[:160]}"
        return "silent", f"success: {(rec.get('message') or '')[:120]}"
    return "unclear", "unclassified"


def write_second_table(raw, command):
    import bad_inputs_second as second

    rows, totals, by_group = [], {c: 0 for c in CLASSES2}, {}
    order = [c.id for c in second.CASES]
    group_of = {c.id: c.group for c in second.CASES}
    for cid in order:
        rec = raw["records"][cid]
        cls, note = classify_second(rec)
        totals[cls] += 1
        g = group_of[cid]
        by_group.setdefault(g, {c: 0 for c in CLASSES2})[cls] += 1
        rows.append((g, cid, cls, note, rec.get("seconds", "")))
    lines = ["", "# Second table (issue 26): committees, teacher-student, momentum/fdt, bias, schedules, grids, "
             "tune, save/load, caches, CLI, numerics, jit/vmap/grad", "",
             f"Command: `{command}` (this checkout only; cases in `benchmarks/bad_inputs_second.py`, each in a "
             f"worker process with x64, one CPU, address space capped at {MEM_LIMIT >> 30} GiB, "
             f"{CASE_TIMEOUT:.0f} s per case). Classes: clear (an error naming the parameter and its valid range), "
             "handled (a failed result naming the check, or the correct behaviour), unclear, silent (a wrong or "
             "unflagged result), lost (data), hang, OOM, security, crash. "
             f"{len(order)} inputs in {raw.get('seconds', '?')} s wall.", "",
             "| group | id | class | note | s |", "|---|---|---|---|---|"]
    for g, cid, cls, note, sec in rows:
        lines.append(f"| {g} | {cid} | {cls} | {note.replace('|', '/').replace(chr(10), ' ')} | {sec} |")
    lines += ["", "## Totals by group", "", "| group | " + " | ".join(CLASSES2) + " | total |",
              "|---|" + "---|" * (len(CLASSES2) + 1)]
    for g in second.GROUPS:
        if g in by_group:
            n = by_group[g]
            lines.append(f"| {g} | " + " | ".join(str(n[c]) for c in CLASSES2) + f" | {sum(n.values())} |")
    lines.append("| **total** | " + " | ".join(f"**{totals[c]}**" for c in CLASSES2) + f" | **{len(order)}** |")
    with open(TABLE2, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return totals, rows


def main_second(argv):
    import bad_inputs_second as second

    command = "python benchmarks/bad_inputs.py --second"
    if "--reclassify" in argv:
        raw = json.load(open(RAW2))
    else:
        only = [a for a in argv if not a.startswith("-")]
        ids = only or [c.id for c in second.CASES]
        t0 = time.time()
        records = run_side("second", ids)
        raw = {"records": records, "seconds": round(time.time() - t0, 1)}
        if only:
            for cid in only:
                print(cid, classify_second(records[cid]))
            return
        json.dump(raw, open(RAW2, "w"), indent=1)
    totals, rows = write_second_table(raw, command)
    print(json.dumps(totals, indent=1))
    for g, cid, cls, note, _ in rows:
        if cls not in ("clear", "handled"):
            print("SECOND", cid, cls, note)


# =======================================================================================
# driver
# =======================================================================================
def all_ids():
    ids = []
    with open(TEST_FILE) as fh:
        src = fh.read()
    # API ids: first string of each row in the API list (read by the worker too; here only the order)
    api_block = src[src.index("API = ["): src.index("\n]\n", src.index("API = ["))]
    ids += re.findall(r'^\s+\("([a-zA-Z0-9_]+)",', api_block, flags=re.M)
    cli_block = src[src.index("CLI = ["): src.index("\n]\n", src.index("CLI = ["))]
    ids += ["cli:" + i for i in re.findall(r'^\s+\("([a-zA-Z0-9_]+)",', cli_block, flags=re.M)]
    return ids + EXTRA_IDS


def run_side(side, ids):
    os.makedirs(WORK, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix=side + "_", dir=WORK)
    out_path = os.path.join(workdir, "records.jsonl")
    results, remaining = {}, list(ids)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1",
               XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
               TF_CPP_MIN_LOG_LEVEL="2")
    while remaining:
        pos = os.path.getsize(out_path) if os.path.exists(out_path) else 0
        log = open(os.path.join(workdir, "worker.log"), "ab")
        proc = subprocess.Popen([sys.executable, __file__, "--worker", side, out_path, workdir] + remaining,
                                cwd=workdir, env=env, stdout=log, stderr=log, start_new_session=True)
        current, started = None, None
        while True:
            time.sleep(0.5)
            if os.path.exists(out_path):
                with open(out_path) as fh:
                    fh.seek(pos)
                    chunk = fh.read()
                lines = chunk.split("\n")
                complete = lines[:-1]
                pos += sum(len(l) + 1 for l in complete)
                for line in complete:
                    rec = json.loads(line)
                    if rec["event"] == "start":
                        current, started = rec["id"], time.time()
                    else:
                        results[rec["id"]] = rec
                        remaining.remove(rec["id"])
                        print(f"[{side}] {rec['id']}: {rec.get('outcome')} "
                              f"{rec.get('exc_type', '')} ({rec['seconds']} s)", flush=True)
                        current = None
            rc = proc.poll()
            if current is not None and time.time() - started > CASE_TIMEOUT:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                results[current] = {"id": current, "side": side, "outcome": "hang",
                                    "seconds": round(time.time() - started, 1)}
                remaining.remove(current)
                print(f"[{side}] {current}: HANG (killed after {CASE_TIMEOUT:.0f} s)", flush=True)
                break
            if rc is not None:
                if current is not None:
                    tail = open(os.path.join(workdir, "worker.log"), "rb").read()[-1500:].decode(errors="replace")
                    results[current] = {"id": current, "side": side, "outcome": "died", "returncode": rc,
                                        "log_tail": tail, "seconds": round(time.time() - started, 1)}
                    remaining.remove(current)
                    print(f"[{side}] {current}: DIED rc={rc}", flush=True)
                elif remaining:
                    tail = open(os.path.join(workdir, "worker.log"), "rb").read()[-3000:].decode(errors="replace")
                    raise RuntimeError(f"worker for {side} exited (rc={rc}) before a case:\n{tail}")
                break
        log.close()
    return results


def pattern_match(pattern, text):
    if not pattern or text is None:
        return False
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", pattern):  # a bare name: match it as a word
        return re.search(r"(?<![A-Za-z0-9])" + re.escape(pattern) + r"(?![A-Za-z0-9])", text) is not None
    return re.search(pattern, text) is not None


def ok_status(st):
    if st is None:
        return None
    vals = st if isinstance(st, list) else [st]
    flat = []
    while vals:
        v = vals.pop()
        if isinstance(v, list):
            vals.extend(v)
        else:
            flat.append(v)
    return all(v == 0 for v in flat)


def classify(side, rec):
    """(class, note)."""
    cid = rec["id"]
    if (side, cid) in OVERRIDES:
        return OVERRIDES[(side, cid)]
    out = rec.get("outcome")
    if out == "hang":
        return "crash", f"still running after {CASE_TIMEOUT:.0f} s (killed)"
    if out == "died":
        return "crash", f"worker process died (returncode {rec.get('returncode')})"
    kind = rec.get("kind")
    msg = rec.get("message")
    if kind == "cli":
        err = rec.get("stderr_tail", "")
        files = [f for f in rec.get("files_written", []) if f.endswith(".npz")]
        if out == "exit" and rec.get("exit_code") == 2:
            if pattern_match(rec["pattern"], err) and not files:
                return "clear", ""
            last = err.strip().splitlines()[-1] if err.strip() else ""
            note = f"exit 2: '{last[:150]}'" + (f"; but wrote {files} first" if files else "")
            return ("clear" if pattern_match(rec["pattern"], err) else "unclear"), note
        if out in ("exit", "returned"):
            code = rec.get("exit_code")
            return "silent", f"ran to the end (exit {code}), wrote {files}"
        return "unclear", f"{rec.get('exc_type')}: {(msg or '')[:150]}"
    if kind == "api":
        if out == "raised":
            if pattern_match(rec["pattern"], msg):
                return "clear", ""
            return "unclear", f"{rec['exc_type']}: {(msg or '')[:160]}"
        res = rec.get("result", {})
        okst = ok_status(res.get("status"))
        if okst is False:
            return "handled", ""
        if okst is True:
            return "silent", f"returned {res.get('type')} with success status (eps_gen[-1]={res.get('eps_gen_last')})"
        return "silent", f"accepted: returned {res.get('type')} {res.get('repr', '')[:100]}"
    # extras
    if cid.startswith("traced_vmap"):
        if out == "raised":
            return ("clear" if pattern_match(rec["pattern"], msg) else "unclear"), f"{rec['exc_type']}: {(msg or '')[:150]}"
        if rec["status"] != 0:
            return "handled", ""
        return "silent", (f"point status {rec['status']} (success), eps_gen[-1]={rec['eps_last_all'][rec['point']]:.4g}, "
                          f"all finite={rec['point_all_finite']}")
    if cid.startswith("sim_"):
        if out == "raised":
            return ("clear" if pattern_match(rec["pattern"], msg) else "unclear"), f"{rec['exc_type']}: {(msg or '')[:150]}"
        res = rec["result"]
        okst = ok_status(res.get("status"))
        warned = [w for w in rec.get("warnings", []) if "RuntimeWarning" in w]
        if okst is False:
            return "handled", ""
        if okst is True:
            return "silent", f"status success with eps_gen[-1]={rec['eps_last']}"
        if not rec["all_finite"] and rec["eps_all_finite"]:
            return "silent", ("no status field, no warning: eps_gen reads a number "
                              f"(eps_gen[-1]={rec['eps_last']}) while q is non-finite" if not warned else
                              f"eps_gen[-1]={rec['eps_last']} while q is non-finite; warned: {warned}")
        if not rec["all_finite"]:
            return "handled", ("no status field; failure visible only as non-finite curves "
                               f"(eps_gen[-1]={rec['eps_last']}), " + ("a RuntimeWarning" if warned else "no warning"))
        return "silent", f"no status field, finite numbers: eps_gen[-1]={rec['eps_last']}, max|q|={rec['q_max']:.3g}"
    if cid == "save_dot_names":
        if out == "raised":
            return "unclear", f"{rec['exc_type']}: {(msg or '')[:150]}"
        if rec["first_survived"]:
            return "handled", ""
        return "silent", (f"saved as {rec['paths']}: files now {rec['files']}; the first result is lost "
                          f"(loading it gives lam={rec['lam_read_from_first']})")
    if cid == "save_overwrite":
        if out == "raised" and rec["first_unchanged"]:
            return ("clear" if pattern_match(rec["pattern"], msg) else "unclear"), f"{rec['exc_type']}: {(msg or '')[:150]}"
        if out == "returned" and not rec["first_unchanged"]:
            return "silent", f"second save replaced the first without a word (lam now {rec['lam_now']})"
        return "silent", f"{out}, first unchanged={rec['first_unchanged']}"
    if cid == "save_interrupted_json":
        files = rec["files"]
        if not files:
            return "handled", ""
        return "silent", f"after the failed save the folder holds {files} (a half pair)"
    if cid.startswith("load_"):
        if out == "raised":
            return ("clear" if pattern_match(rec["pattern"], msg) else "unclear"), f"{rec['exc_type']}: {(msg or '')[:160]}"
        return "silent", f"loaded without complaint: arrays {rec.get('arrays')}"
    return "unclear", "unclassified"


def write_table(raw):
    ids = raw["ids"]
    classes = ["clear", "handled", "unclear", "silent", "crash", "n/a"]
    rows, totals = [], {s: {c: 0 for c in classes} for s in ("before", "after")}
    detail = {}
    for cid in ids:
        cells, notes = {}, []
        for side in ("before", "after"):
            rec = raw[side].get(cid)
            if side == "before" and cid in OLD_NA:
                c, n = "n/a", OLD_NA[cid]
            else:
                c, n = classify(side, rec)
            cells[side] = c
            totals[side][c] += 1
            detail[(side, cid)] = (c, n)
            if n and (c not in ("clear", "handled") or (side, cid) in OVERRIDES):
                notes.append(f"{side}: {n}")
        if cid in OLD_TRANSLATION:
            notes.insert(0, f"(before ran `{OLD_TRANSLATION[cid][0]}`)")
        note = "; ".join(notes).replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {cid} | {cells['before']} | {cells['after']} | {note} |")
    lines = ["# Bad/edge inputs: before vs after the reliability change", "",
             "Inputs: `tests/test_bad_input.py` (API table, CLI table with `--out <tmpdir>` appended, and the "
             "non-table cases). before = dmft_jax at commit 83aea76, after = this checkout; each side in its own "
             "process with x64, one CPU, address space capped at 6 GiB; 120 s per case. "
             "Script: `python benchmarks/bad_inputs.py`; raw records: `$DMFT_BAD_INPUT_OUT/bad_input_raw.json`. "
             "The traced-vmap case is one vmap call reported as two rows (its lam=-1 point and its delta=-0.5 point). "
             "The 6 GiB cap did not change a class: the two before-side out-of-memory cases asked for 1.3 and 2.6 TB, "
             "which the 23 GiB machine without swap would refuse the same way.", "",
             "| id | before | after | note |", "|---|---|---|---|"] + rows
    lines += ["", "## Totals", "", "| class | before | after |", "|---|---|---|"]
    for c in classes:
        lines.append(f"| {c} | {totals['before'][c]} | {totals['after'][c]} |")
    lines.append(f"| **total** | {sum(totals['before'].values())} | {sum(totals['after'].values())} |")
    lines += ["", "## Old-API translations (before side)", "",
              "Every case not listed ran the identical call on both sides.", ""]
    for cid, (call, why) in OLD_TRANSLATION.items():
        lines.append(f"- `{cid}`: `{call}` ({why})")
    if OLD_NA:
        for cid, why in OLD_NA.items():
            lines.append(f"- `{cid}`: n/a ({why})")
    else:
        lines.append("- no case is n/a: each has an old equivalent")
    with open(TABLE, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return totals, detail


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        side, out_path, workdir = sys.argv[2:5]
        if side == "second":
            worker_second(sys.argv[5:], out_path, workdir)
        else:
            worker(side, sys.argv[5:], out_path, workdir)
        return
    if "--second" in sys.argv[1:]:
        main_second([a for a in sys.argv[1:] if a != "--second"])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--reclassify":
        raw = json.load(open(RAW))
    else:
        ids = all_ids()
        only = [a for a in sys.argv[1:] if not a.startswith("-")]
        raw = {"ids": ids}
        for side in ("before", "after"):
            t0 = time.time()
            raw[side] = run_side(side, only or ids)
            raw[side + "_seconds"] = round(time.time() - t0, 1)
        if only:
            json.dump(raw, open(RAW.replace(".json", ".partial.json"), "w"), indent=1)
            for side in ("before", "after"):
                for cid in only:
                    print(side, cid, classify(side, raw[side][cid]))
            return
        json.dump(raw, open(RAW, "w"), indent=1)
    totals, detail = write_table(raw)
    print(json.dumps(totals, indent=1))
    for (side, cid), (c, n) in detail.items():
        if side == "after" and c in ("unclear", "silent", "crash"):
            print("AFTER", cid, c, n)


if __name__ == "__main__":
    main()
