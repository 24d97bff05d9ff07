"""Multi-host sharding of the trajectories (``jax.distributed``).

Two processes on localhost, each with one CPU device, join one JAX runtime
(``jax.distributed.initialize``, CPU collectives by gloo), so ``jax.devices()`` holds two
devices across the two processes. Each process runs the same ``dj.solve`` with the
trajectories sharded over both devices: every trajectory array is split between the
processes and the kernel averages become cross-process all-reduces. The curves
(``m``, ``q``, ``eps_gen``, ``train_loss``, replicated on both processes) must equal the
single-process solve of the pytest process to rounding (rtol 1e-10).

If this JAX build has no CPU multi-process collectives, a probe (one all-reduce across the
two processes, run by the workers before the solve) fails and the test is skipped.
"""
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

import dmft_jax as dj

# The multi-device keyword of dj.solve, in one place (the workers' call is built from it).
MULTI_DEVICE_KWARGS = 'trajectories=dj.Trajectories(sharding="all")'

SOLVE_ARGS = dict(t_max=2.0, n_traj=512, key=3)
FIELDS = ("m", "q", "eps_gen", "train_loss")
N_PROCESSES = 2
TIMEOUT_S = 120
PROBE_FAILED = 3  # worker exit code: multi-process CPU collectives unavailable

WORKER = textwrap.dedent(
    """
    import sys
    import traceback

    import numpy as np
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", 1)
    port, pid, nproc, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

    # Probe: join the runtime and all-reduce one number per process.
    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}",
                                   num_processes=nproc, process_id=pid,
                                   initialization_timeout=60)
        import jax.numpy as jnp
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

        mesh = Mesh(np.array(jax.devices()), ("p",))
        x = jax.make_array_from_process_local_data(
            NamedSharding(mesh, P("p")), np.array([pid + 1.0]))
        total = jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, P()))(x)
        expected = nproc * (nproc + 1) / 2
        if float(total) != expected:
            raise RuntimeError(f"all-reduce gave {float(total)}, expected {expected}")
    except Exception:
        traceback.print_exc()
        print("PROBE FAILED: no multi-process CPU collectives", file=sys.stderr)
        sys.exit(%(probe_failed)d)

    assert jax.process_count() == nproc, jax.process_count()
    assert len(jax.local_devices()) == 1, jax.local_devices()
    assert len(jax.devices()) == nproc, jax.devices()

    import dmft_jax as dj

    problem = dj.Problem(model=dj.TwoCluster(0.5), loss="logistic", alpha=2.0, delta=0.5,
                         lam=0.0, R0=0.01)
    algo = dj.PersistentSGD(eta=0.2, b=0.3, tau=1 / 0.6)
    sol = dj.solve(problem, algo, %(solve_args)s, %(multi)s)
    # The curves are replicated on every process: each holds a full local copy.
    res = {k: np.asarray(getattr(sol, k)) for k in %(fields)r}
    if pid == 0:
        np.savez(out, status=int(sol.status), **res)
    jax.distributed.shutdown()
    """
) % dict(probe_failed=PROBE_FAILED, multi=MULTI_DEVICE_KWARGS, fields=FIELDS,
         solve_args=", ".join(f"{k}={v!r}" for k, v in SOLVE_ARGS.items()))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker_env() -> dict:
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_NUM_CPU_DEVICES"] = "1"
    # one device per process: drop any forced host device count
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([repo] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _log(path: Path) -> str:
    return path.read_text(errors="replace")[-6000:] if path.exists() else ""


def test_two_process_solve_matches_single_process(tmp_path):
    if "jax_cpu_collectives_implementation" not in jax.config.values:
        pytest.skip(f"jax {jax.__version__} has no CPU multi-process collectives option")

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "result.npz"
    port = _free_port()
    env = _worker_env()
    logs = [tmp_path / f"worker{i}.log" for i in range(N_PROCESSES)]
    procs = []
    try:
        for i in range(N_PROCESSES):
            with open(logs[i], "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, str(script), str(port), str(i), str(N_PROCESSES), str(out)],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path)))

        # single-process reference, computed while the workers run
        problem = dj.Problem(model=dj.TwoCluster(0.5), loss="logistic", alpha=2.0, delta=0.5,
                             lam=0.0, R0=0.01)
        algo = dj.PersistentSGD(eta=0.2, b=0.3, tau=1 / 0.6)
        ref = dj.solve(problem, algo, **SOLVE_ARGS)

        deadline = time.monotonic() + TIMEOUT_S
        codes = []
        for p in procs:
            try:
                codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                codes.append(None)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    report = "\n".join(f"--- worker {i} (exit {c}) ---\n{_log(logs[i])}" for i, c in enumerate(codes))
    if PROBE_FAILED in codes:
        pytest.skip("multi-process CPU collectives unavailable in this JAX build "
                    f"(jax {jax.__version__}):\n{report}")
    assert codes == [0] * N_PROCESSES, f"workers failed or timed out after {TIMEOUT_S} s:\n{report}"
    assert out.exists(), f"process 0 wrote no result:\n{report}"

    got = np.load(out)
    assert int(got["status"]) == int(ref.status)
    for k in FIELDS:
        expected = np.asarray(getattr(ref, k))
        assert got[k].shape == expected.shape, (k, got[k].shape, expected.shape)
        np.testing.assert_allclose(got[k], expected, rtol=1e-10, atol=0, err_msg=k)
