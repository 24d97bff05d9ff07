"""Every notebook (jupytext percent script in notebooks/) runs at reduced size."""
import runpy
import sys
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("nb*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_small(path, tmp_path, monkeypatch):
    monkeypatch.setenv("DMFT_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("DMFT_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.syspath_prepend(str(path.parent))
    sys.modules.pop("_common", None)
    import matplotlib

    matplotlib.use("Agg")
    runpy.run_path(str(path), run_name="__main__")
    assert (tmp_path / (path.stem + ".png")).stat().st_size > 0
