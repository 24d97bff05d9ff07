"""The notebooks as Jupyter notebooks: each percent script ``nbXX_*.py`` (the source, easy to
diff and review) becomes ``nbXX_*.ipynb``, executed at full size so that its figures are
stored in it (they render on code-hosting sites and in the documentation site without
running anything), and refreshes their PNGs in ``docs/figures/`` (the only writer of those
tracked files: a notebook run by a user writes to a temporary folder).

    python notebooks/build.py            # write and execute every notebook (minutes on 2 cores)
    python notebooks/build.py nb02       # only those whose name starts with nb02
    python notebooks/build.py --check    # exit 1 if a notebook's cells differ from its script
    python notebooks/build.py --markdown-only   # take the text from the scripts, keep the outputs

``--markdown-only`` is for edits to the text alone: it rewrites a notebook from its script
without executing it, keeping the stored outputs of the code cells, and refuses (by name,
writing nothing for that notebook) when any code cell differs from the stored one in source or
order, since its outputs would then not be those of its code.

Needs the ``notebooks`` extra (``pip install -e '.[notebooks]'``): nbformat, nbclient and a
Python kernel. ``tests/test_notebooks.py`` checks that every notebook matches its script and
executes each at reduced size into a temporary folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def scripts() -> list[Path]:
    return sorted(HERE.glob("nb[0-9]*.py"))


def cells(script: Path) -> list[tuple[str, str]]:
    """``(kind, source)`` of every cell of a percent script (``# %%`` starts a code cell,
    ``# %% [markdown]`` a markdown cell whose lines drop their leading ``# ``)."""
    out, kind, lines = [], None, []

    def flush():
        if kind is not None:
            text = "\n".join(lines).strip("\n")
            out.append((kind, text))

    for line in script.read_text().splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind is not None:
            lines.append(line)
    flush()
    return out


def notebook(script: Path):
    """The (unexecuted) notebook of ``script``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [make[kind](source) for kind, source in cells(script)]
    return nb


def in_sync(script: Path) -> bool:
    """Whether ``script``'s notebook exists and holds the same cells."""
    import nbformat

    path = script.with_suffix(".ipynb")
    if not path.exists():
        return False
    nb = nbformat.read(path, as_version=4)
    return [(c.cell_type, c.source) for c in nb.cells] == cells(script)


class CodeChanged(Exception):
    """The code cells of a script are not those of its stored notebook: only executing it
    gives the notebook outputs that belong to its code."""


def with_markdown_of(script: Path):
    """The stored notebook of ``script`` with the markdown cells of the script and the stored
    code cells (their outputs included), unexecuted; raises ``CodeChanged`` unless the code
    cells of the two are the same sources in the same order. Keeps the notebook's metadata
    (the kernel's language_info, nb08's widget state) and the ids of the markdown cells."""
    import nbformat

    name = script.name[:4]
    path = script.with_suffix(".ipynb")
    if not path.exists():
        raise CodeChanged(f"no notebook for {name}: run python notebooks/build.py {name} to execute it")
    stored = nbformat.read(path, as_version=4)
    stored_code = [c for c in stored.cells if c.cell_type == "code"]
    if [c.source for c in stored_code] != [source for kind, source in cells(script) if kind == "code"]:
        raise CodeChanged(f"code changed in {name}: run python notebooks/build.py {name} to execute it")
    code, old_markdown = iter(stored_code), [c for c in stored.cells if c.cell_type == "markdown"]
    out = []
    for kind, source in cells(script):
        if kind == "code":
            out.append(next(code))
        else:
            cell = nbformat.v4.new_markdown_cell(source)
            i = sum(c.cell_type == "markdown" for c in out)
            if i < len(old_markdown) and "id" in old_markdown[i]:
                cell["id"] = old_markdown[i]["id"]  # a stable id: the diff shows only the text
            out.append(cell)
    stored.cells = out
    return stored


def execute(nb, timeout: int = 1800):
    """Run ``nb`` in a fresh kernel with the notebooks folder as working directory (in place).
    The kernel talks over unix sockets in a folder of its own: kernels started at once (the
    test suite runs two) cannot race for the same TCP ports, which once left a cell waiting for
    its whole timeout."""
    import tempfile

    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="dmft_jax_kernel_") as folder:
        km = KernelManager(kernel_name=KERNEL["name"], transport="ipc", ip=str(Path(folder) / "kernel"))
        NotebookClient(nb, km=km, timeout=timeout, kernel_name=KERNEL["name"],
                       resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("only", nargs="*", help="name prefixes (default: every notebook)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="only compare notebooks with their scripts")
    mode.add_argument("--markdown-only", action="store_true",
                      help="take the markdown cells from the scripts and keep the stored outputs, without "
                           "executing; refuses a notebook whose code cells differ from its script's")
    args = ap.parse_args(argv)
    chosen = [s for s in scripts() if not args.only or any(s.name.startswith(p) for p in args.only)]
    if args.check:
        stale = [s.name for s in chosen if not in_sync(s)]
        for name in stale:
            print(f"{name}: its notebook is missing or differs; run python notebooks/build.py {name[:4]}")
        return 1 if stale else 0
    import os

    import nbformat

    if args.markdown_only:
        refused = 0
        for script in chosen:
            try:
                nb = with_markdown_of(script)
            except CodeChanged as err:
                print(err, file=sys.stderr)
                refused += 1
                continue
            nbformat.write(nb, script.with_suffix(".ipynb"))
        return 1 if refused else 0

    os.environ.setdefault("DMFT_NOTEBOOK_OUT", str(HERE.parent / "docs" / "figures"))  # the kernels inherit it
    for script in chosen:
        print(f"executing {script.name} ...", file=sys.stderr, flush=True)
        nb = execute(notebook(script))
        nbformat.write(nb, script.with_suffix(".ipynb"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
