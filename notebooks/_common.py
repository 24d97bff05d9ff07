"""Shared set-up of the notebooks (jupytext percent scripts: open them in Jupyter with
jupytext, or run them as scripts). ``DMFT_NOTEBOOK_SMALL=1`` shrinks every size so that the
test suite can execute them in seconds; the default is the full size used for the figures
in ``docs/figures/`` (written there by ``notebooks/build.py`` only)."""
import os
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import dmft_jax  # noqa: E402

# compiled programs on disk: reopening a notebook (a new kernel) skips the compile for sizes
# already seen (dmft_jax.default_cache_dir(); DMFT_JAX_CACHE_DIR moves it)
dmft_jax.enable_compilation_cache()

SMALL = os.environ.get("DMFT_NOTEBOOK_SMALL", "") not in ("", "0")
N_TRAJ = 2**11 if SMALL else 2**16
N_CHI = 256 if SMALL else 8192
D = 100 if SMALL else 1000
SEEDS = 2 if SMALL else 10
T_SCALE = 0.25 if SMALL else 1.0
# a notebook run by a user never writes tracked files: figures go to a temporary folder
# unless DMFT_NOTEBOOK_OUT says where (notebooks/build.py points it at docs/figures/ when it
# refreshes the stored outputs and the figures of the docs)
_DEFAULT_OUT = Path(tempfile.gettempdir()) / ("dmft_jax_notebooks_small" if SMALL else "dmft_jax_notebooks")
OUT = Path(os.environ.get("DMFT_NOTEBOOK_OUT", _DEFAULT_OUT))
OUT.mkdir(parents=True, exist_ok=True)


def save(fig, name):
    path = OUT / name
    fig.savefig(path, dpi=120)
    print("wrote", name)  # the name alone: a stored output must not carry this machine's folders
    return path
