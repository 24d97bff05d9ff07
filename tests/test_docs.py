"""The documentation site (mkdocs.yml) builds with ``--strict`` (a broken link, a missing
page, an API name that no longer resolves or a docstring its parser cannot read fails the
build), covers every public name and every notebook, and writes nothing into the repository."""
import os
import re
import subprocess
import sys
from pathlib import Path

import dmft_jax as dj

ROOT = Path(__file__).parents[1]
CONFIG = (ROOT / "mkdocs.yml").read_text()


def test_mkdocs_build_strict(tmp_path):
    before = _new_files()
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for page in ("index.html", "getting-started/index.html", "api/solving/index.html",
                 "tutorials/nb01_two_cluster/index.html"):
        assert (tmp_path / "site" / page).stat().st_size > 0, page
    html = (tmp_path / "site" / "api" / "solving" / "index.html").read_text()
    assert 'id="dmft_jax.solve"' in html and ":class:" not in html  # rendered, roles turned into code
    assert _new_files() <= before, f"the docs build wrote into the repository: {_new_files() - before}"


def _new_files() -> set:
    """Untracked and ignored paths of the checkout (what a build would leave there; edits of
    tracked files by someone else meanwhile are not the build's)."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True).stdout
    others = ("__pycache__", ".pytest_cache", ".venv", ".egg-info")  # what tests beside this one make
    return {line[3:] for line in out.splitlines()
            if line[:2] in ("??", "!!") and not any(o in line for o in others)}


def test_api_reference_covers_every_public_name():
    pages = "".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: dmft_jax\.(\w+)", pages, flags=re.M))
    modules_or_deprecated = {"__version__", "bounds", "io", "solve_committee"}
    missing = set(dj.__all__) - documented - modules_or_deprecated
    assert not missing, f"public names without an API entry in docs/api/: {sorted(missing)}"


def test_every_notebook_is_a_tutorial():
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("nb[0-9]*.ipynb"))
    listed = re.findall(r"tutorials/(nb\d\d\w*\.ipynb)", CONFIG)
    assert notebooks and sorted(listed) == notebooks
