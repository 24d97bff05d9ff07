"""Command line and save/load round trip."""
import json

import equinox as eqx
import jax

import numpy as np
import pytest

import dmft_jax as dj
from dmft_jax._tools import cli
from dmft_jax import io


def test_cli_solve_writes_results_and_plot(tmp_path, capsys):
    out = tmp_path / "res"
    # --no-cache: JAX's on-disk cache, once on, stays on for the rest of the process (tested
    # in a subprocess below)
    rc = cli.main(["solve", "--no-cache", "--t-max", "1.0", "--n-traj", "512", "--simulate", "50", "--n-seeds", "3",
                   "--out", str(out)])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "successful" and summary["message"] == "success"  # the enumeration's name
    assert summary["t_max"] == 1.0  # a clean number (the steps add up to 1.0000000000000002)
    for name in ("solution.npz", "solution.json", "simulation.npz", "curves.png"):
        assert (out / name).stat().st_size > 0
    loaded = dj.load(out / "solution")
    arrays, meta = loaded.arrays, loaded.meta
    assert meta["problem"]["alpha"] == 2.0 and meta["algorithm"]["b"] == pytest.approx(0.3)
    assert meta["config"]["seed"] == 0 and meta["dmft_jax_version"] == dj.__version__
    assert arrays["m"].shape == (6,) and arrays["eps_gen_se"].shape == (6,) and summary["eps_gen_se"] > 0


def test_cli_rejects_bad_parameter(capsys):
    with pytest.raises(SystemExit):
        cli.main(["solve", "--alpha", "-1"])
    assert "alpha" in capsys.readouterr().err


def test_cli_habits(tmp_path, capsys):
    """--version; a refused run leaves no output folder behind and shows its subcommand's usage;
    each default printed once in --help; --sharpness is the smooth hinge's (beta is momentum)."""
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dmft-jax {dj.__version__}"
    for bad, says in ((["--t-max", "0"], "t_max must satisfy t_max > 0"), (["--n-traj", "0"], "n_traj"),
                      (["--loss", "hinge"], "hinge"), (["--history", "compressed", "--window", "2"], "--window"),
                      (["--history", "compressed", "--per-level", "0"], "--per-level"),
                      (["--history", "compressed", "--n-chi", "64"], "--n-chi: a CompressedHistory needs"),
                      (["--history", "full", "--window", "8"], "--window: applies to --history compressed")):
        out = tmp_path / "refused"
        with pytest.raises(SystemExit) as done:
            cli.main(["solve", "--no-cache", "--out", str(out), *bad])
        err = capsys.readouterr().err
        assert done.value.code == 2 and says in err and "usage: dmft-jax solve" in err, err
        assert not out.exists()
    with pytest.raises(SystemExit):
        cli.main(["solve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default min(N, 4096))" in text and "(default: None)" not in text and "(default: False)" not in text
    assert "--sharpness SHARPNESS" in text
    assert "--simulate D, --d D" in text  # one name for the simulation's dimension in both commands
    assert cli._parser().parse_args(["solve", "--d", "500"]).simulate == 500


def test_save_load_round_trip(tmp_path, seed_two_cluster):
    sol = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=1.0, n_traj=256, key=3)
    path = sol.save(tmp_path / "sol")
    loaded = dj.load(path)
    for name in ("m", "C", "R", "eps_gen", "M_R"):
        np.testing.assert_array_equal(getattr(loaded, name), np.asarray(getattr(sol, name)))
    assert loaded.meta["kind"] == "solution" and loaded.config["n_traj"] == 256
    assert loaded.meta["problem"]["R0"] == pytest.approx(0.01) and loaded.config["seed"] == 3
    # a loaded solution and simulation redraw the standard figure without rerunning
    sim = dj.simulate(seed_two_cluster, dj.GD(0.2), t_max=1.0, d=40, n_seeds=2)
    dj.plot.compare(loaded, dj.load(dj.save(sim, tmp_path / "sim")), path=tmp_path / "fig.pdf")
    assert (tmp_path / "fig.pdf").stat().st_size > 0


def test_kept_trajectories_are_saved(tmp_path, seed_two_cluster):
    sol = dj.solve(seed_two_cluster, dj.GD(0.2), n_steps=4, n_traj=64, trajectories=dj.Trajectories(save=3))
    back = dj.load(dj.save(sol, tmp_path / "kept"))
    for name in ("u", "g", "r", "s", "c", "y"):
        np.testing.assert_array_equal(back.arrays[f"trajectories_{name}"], np.asarray(sol.trajectories[name]))


def test_load_rejects_corrupt_and_foreign_files(tmp_path, seed_two_cluster):
    sol = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=1.0, n_traj=256)
    path = sol.save(tmp_path / "sol")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cannot read arrays"):
        io.load(path)
    path = sol.save(tmp_path / "sol", overwrite=True)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["format_version"] = 99
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format_version"):
        io.load(path)


@pytest.mark.slow  # heavy; run with -m slow (the default suite stays near 10 minutes)
def test_cli_tune_writes_history(tmp_path, capsys):
    out = tmp_path / "tune"
    rc = cli.main(["tune", "--no-cache", "--params", "lam", "--lam", "0.1", "--t-max", "1.0", "--n-traj", "256",
                   "--steps", "3", "--out", str(out)])
    assert rc == 0
    data = json.loads((out / "tune.json").read_text())
    assert len(data["history"]["objective"]) == 3 and data["params"]["lam"] > 0
    assert data["objective_se"] > 0 and data["improvement_se"] > 0
    assert data["within_noise"] == (abs(data["improvement"]) < 2 * data["improvement_se"])


def test_progress_display_under_jit_and_vmap(capfd, seed_two_cluster):
    import equinox as eqx
    import jax

    sol = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=1.0, n_traj=128, progress_meter=dj.TextProgressMeter())
    sol.m.block_until_ready()
    jax.effects_barrier()
    assert "5/5 steps" in capfd.readouterr().err
    run = lambda lam: dj.solve(eqx.tree_at(lambda p: p.lam, seed_two_cluster, lam), dj.GD(0.2),
                               n_steps=4, n_traj=128, progress_meter=dj.TextProgressMeter()).eps_gen[-1]
    jax.jit(jax.vmap(run))(jax.numpy.array([0.0, 0.1])).block_until_ready()
    jax.effects_barrier()
    assert "4/4 steps" in capfd.readouterr().err
    dj.solve(seed_two_cluster, dj.GD(0.2), t_max=1.0, n_traj=128)  # off by default
    jax.effects_barrier()
    assert capfd.readouterr().err == ""
    # the tqdm bar: its count, rate and label, once per solve, under jit and vmap too
    dj.solve(seed_two_cluster, dj.GD(0.2), t_max=1.0, n_traj=128, progress_meter=dj.TqdmProgressMeter()).m
    jax.effects_barrier()
    err = capfd.readouterr().err
    assert "[dmft-jax] sweep: 100%" in err and "5/5" in err and "steps/s" in err, err
    run = lambda lam: dj.solve(eqx.tree_at(lambda p: p.lam, seed_two_cluster, lam), dj.GD(0.2), n_steps=4,
                               n_traj=128, progress_meter=dj.TqdmProgressMeter("grid", "steps")).eps_gen[-1]
    jax.jit(jax.vmap(run))(jax.numpy.array([0.0, 0.1])).block_until_ready()
    jax.effects_barrier()
    err = capfd.readouterr().err
    assert "[dmft-jax] grid: 100%" in err and "4/4" in err and err.count("100%") == 1, err


def test_interrupted_write_leaves_previous_file_intact(tmp_path, seed_two_cluster, monkeypatch):
    sol = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=1.0, n_traj=256)
    path = sol.save(tmp_path / "sol")
    before = path.read_bytes()

    def broken_savez(fh, **arrays):
        fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        sol.save(tmp_path / "sol", overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sol.json", "sol.npz"]


@pytest.mark.slow
def test_second_process_takes_the_sweep_from_the_compilation_cache(tmp_path):
    """The CLI turns JAX's persistent cache on: a second process with the same sizes loads
    the compiled sweep from disk instead of compiling it (and says so on stderr)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, DMFT_JAX_CACHE_DIR=str(tmp_path / "cache"))
    runs = []
    for i in range(2):
        out = subprocess.run([sys.executable, "-m", "dmft_jax", "solve", "--t-max", "1.0", "--n-traj", "64",
                              "--out", str(tmp_path / f"o{i}")], capture_output=True, text=True, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(out.stderr)
    assert "compiled in" in runs[0] and "taken from the compilation cache" in runs[1], runs
    assert any((tmp_path / "cache").iterdir())


def test_compile_notice_only_when_compiling(capfd, seed_two_cluster):
    jax.config.update("jax_compilation_cache_dir", None)  # a CLI test in this process may have turned it on
    meter = dj.TextProgressMeter(steps=False)
    kw = dict(t_max=0.6, n_traj=66, progress_meter=meter)  # sizes no other test compiles
    dj.solve(seed_two_cluster, dj.GD(0.2), key=0, **kw)
    first = capfd.readouterr().err
    dj.solve(seed_two_cluster, dj.GD(0.2), key=1, **kw)
    again = capfd.readouterr().err
    assert "compiling the sweep for T = 3, N = 66" in first and "compiled in" in first, first
    assert again == ""


def test_reprs_show_values():
    """Reprs read like the call that made the object (values, not f32[]), and an outcome by its
    name: what a user sees when a notebook cell ends with a problem, an ERM or a solution."""
    P = dj.Problem(dj.TwoCluster(0.5), "logistic", alpha=2.0, delta=0.5, lam=0.1, R0=0.01)
    text = repr(P)
    for part in ("TwoCluster(rho=0.5)", "alpha=2.0", "delta=0.5", "lam=0.1", "R0=0.01"):
        assert part in text, text
    assert repr(dj.PersistentSGD(0.2, 0.3, 2.0)).startswith("PersistentSGD(eta=0.2, b=0.3, tau=2.0")
    assert repr(dj.SmoothHinge(10.0)) == "SmoothHinge(beta=10.0)"
    assert repr(dj.PiecewiseConstant([0.2, 0.1], [5.0])) == "PiecewiseConstant(values=[0.2, 0.1], boundaries=(5,))"
    assert "m0=[0.3, -0.1]" in repr(dj.Committee(P, dj.SoftCommittee(2), m0=[0.3, -0.1]))
    erm = dj.erm(P)
    assert f"eps_gen={float(erm.eps_gen)!r}"[:14] in repr(erm) and "f32[]" not in repr(erm) and "f64[]" not in repr(erm)
    sol = dj.solve(P, dj.GD(0.2), t_max=0.4, n_traj=64, key=0)
    assert "result=Result(successful)" in repr(sol) and "'alpha: alpha > 0'" not in repr(sol)
    bad = jax.jit(lambda lam: dj.solve(eqx.tree_at(lambda p: p.lam, P, lam), dj.GD(0.2), n_steps=2, n_traj=64).result)(-1.0)
    assert repr(bad) == "Result(invalid_input: lam: lam >= 0)"


def test_progress_by_default_for_long_runs_and_in_tune(capfd, monkeypatch, seed_two_cluster):
    """A run estimated above a few seconds shows a tqdm bar unless told otherwise (here the
    threshold is lowered to 0 s to see it on a small solve); tune counts its optimiser steps
    with a meter of its own; an explicit NoProgressMeter stays silent."""
    from dmft_jax._solve import memory

    monkeypatch.setattr(memory, "AUTO_PROGRESS_S", 0.0)
    sol = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=0.4, n_traj=64, key=0)
    assert isinstance(sol.config.progress_meter, dj.TqdmProgressMeter)
    assert "[dmft-jax] sweep" in capfd.readouterr().err
    quiet = dj.solve(seed_two_cluster, dj.GD(0.2), t_max=0.4, n_traj=64, key=0, progress_meter=dj.NoProgressMeter())
    assert isinstance(quiet.config.progress_meter, dj.NoProgressMeter) and "[dmft-jax]" not in capfd.readouterr().err
    dj.tune(seed_two_cluster, dj.GD(0.2), ["lam"], t_max=0.4, n_traj=64, steps=3, key=0, errors=None,
            progress_meter=dj.TextProgressMeter("tune", "steps"))
    err = capfd.readouterr().err
    assert "[dmft-jax] tune" in err and "3/3 steps" in err and "[dmft-jax] sweep" not in err
    with pytest.raises(ValueError, match="progress_meter"):
        dj.tune(seed_two_cluster, dj.GD(0.2), ["lam"], t_max=0.4, n_traj=64, steps=1, progress_meter=True)
    monkeypatch.setattr(memory, "AUTO_PROGRESS_S", 1e9)
    assert isinstance(dj.solve(seed_two_cluster, dj.GD(0.2), t_max=0.4, n_traj=64, key=0).config.progress_meter,
                      dj.NoProgressMeter)
