"""``python -m dmft_jax``: the command line (:mod:`dmft_jax._tools.cli`)."""
from ._tools.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
