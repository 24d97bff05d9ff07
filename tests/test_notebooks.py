"""Every notebook (notebooks/nbXX_*.ipynb) holds the cells of its percent script and executes,
in a fresh Jupyter kernel (nbclient), at reduced size into a temporary folder: nothing
tracked changes (the stored outputs are those of notebooks/build.py at full size). The notebooks
are split between this file and test_notebooks_later.py so that the two pytest-xdist workers
(a file each at a time) share them."""
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
import build  # noqa: E402  (notebooks/build.py)

SCRIPTS = build.scripts()
FIRST = SCRIPTS[0::2]  # every other one; the rest: test_notebooks_later.py


def test_every_script_has_a_notebook_with_the_same_cells():
    assert len(SCRIPTS) >= 8
    stale = [s.name for s in SCRIPTS if not build.in_sync(s)]
    assert not stale, f"run python notebooks/build.py for {stale}"


@pytest.mark.parametrize("script", FIRST, ids=[p.stem for p in FIRST])
def test_notebook_executes_small(script, tmp_path, monkeypatch):
    execute_small(script, tmp_path, monkeypatch)


def execute_small(script, tmp_path, monkeypatch):
    """Execute the stored notebook of ``script`` at reduced size into ``tmp_path``."""
    monkeypatch.setenv("DMFT_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DMFT_NOTEBOOK_OUT", str(tmp_path))
    stored = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    assert any(o.get("output_type") == "display_data" and "image/png" in o.get("data", {})
               for c in stored.cells if c.cell_type == "code" for o in c.get("outputs", [])), \
        "the stored notebook shows no figure: run python notebooks/build.py"
    build.execute(stored, timeout=600)  # raises CellExecutionError on any failing cell
    assert (tmp_path / (script.stem + ".png")).stat().st_size > 0


@pytest.mark.parametrize("small", ["1", "0"])
def test_a_user_run_writes_no_tracked_file(small, tmp_path):
    """A notebook run by a user (full or reduced size, no DMFT_NOTEBOOK_OUT) puts its figures
    outside the repository; only notebooks/build.py points them at docs/figures/."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "DMFT_NOTEBOOK_OUT"}
    env.update(DMFT_NOTEBOOK_SMALL=small, TMPDIR=str(tmp_path), JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", "import _common; print(_common.OUT)"], cwd=NOTEBOOKS, env=env,
                         capture_output=True, text=True, check=True).stdout.split()[-1]
    assert Path(out).resolve().is_relative_to(tmp_path.resolve())
    assert not Path(out).resolve().is_relative_to(NOTEBOOKS.parent.resolve())


def _write_script(path, cells):
    """A percent script with ``cells`` (``(kind, source)``, as build.cells reads them)."""
    text = []
    for kind, source in cells:
        if kind == "markdown":
            text += ["# %% [markdown]"] + [("# " + line).rstrip() for line in source.splitlines()]
        else:
            text += ["# %%"] + source.splitlines()
        text.append("")
    path.write_text("\n".join(text))


@pytest.mark.parametrize("code_change", ["edited", "reordered", "added"])
def test_markdown_only_keeps_outputs_and_refuses_changed_code(code_change, tmp_path, monkeypatch, capsys):
    """build.py --markdown-only on a copy: a changed markdown cell is taken from the script with
    the stored outputs kept (nothing executed), an unchanged notebook is rewritten byte for byte,
    and a notebook whose code cells differ (source, order, number) is refused by name and left
    as it was."""
    import shutil

    src = next(s for s in SCRIPTS if s.name.startswith("nb13"))  # three code and three markdown cells
    script = tmp_path / src.name
    shutil.copy(src, script)
    shutil.copy(src.with_suffix(".ipynb"), script.with_suffix(".ipynb"))
    monkeypatch.setattr(build, "HERE", tmp_path)
    stored = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    original = script.with_suffix(".ipynb").read_bytes()

    _write_script(script, build.cells(src))  # the same cells, as this test writes them
    assert build.main(["--markdown-only"]) == 0
    assert script.with_suffix(".ipynb").read_bytes() == original, "an unchanged notebook was rewritten"

    cells = build.cells(src)
    i = [kind for kind, _ in cells].index("markdown", 1)
    cells[i] = ("markdown", cells[i][1] + "\nA sentence added by the test.")
    _write_script(script, cells)
    assert build.main(["--markdown-only", "nb13"]) == 0
    nb = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    assert build.in_sync(script)
    assert nb.cells[i].source.endswith("A sentence added by the test.")
    assert [c.outputs for c in nb.cells if c.cell_type == "code"] == \
        [c.outputs for c in stored.cells if c.cell_type == "code"], "the stored outputs were not kept"
    assert nb.metadata == stored.metadata
    refreshed = script.with_suffix(".ipynb").read_bytes()

    code = [j for j, (kind, _) in enumerate(cells) if kind == "code"]
    if code_change == "edited":
        cells[code[-1]] = ("code", cells[code[-1]][1].replace("steps=10", "steps=11"))
    elif code_change == "reordered":
        cells[code[0]], cells[code[1]] = cells[code[1]], cells[code[0]]
    else:
        cells.append(("code", "print('one more cell')"))
    _write_script(script, cells)
    capsys.readouterr()
    assert build.main(["--markdown-only"]) == 1
    assert "code changed in nb13: run python notebooks/build.py nb13 to execute it" in capsys.readouterr().err
    assert script.with_suffix(".ipynb").read_bytes() == refreshed, "a refused notebook was written"
    assert not build.in_sync(script)
