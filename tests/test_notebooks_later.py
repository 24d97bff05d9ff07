"""The second half of the notebooks, executed at reduced size (see test_notebooks.py)."""
import pytest

from test_notebooks import FIRST, SCRIPTS, execute_small

LATER = [s for s in SCRIPTS if s not in FIRST]


@pytest.mark.parametrize("script", LATER, ids=[p.stem for p in LATER])
def test_notebook_executes_small(script, tmp_path, monkeypatch):
    execute_small(script, tmp_path, monkeypatch)
