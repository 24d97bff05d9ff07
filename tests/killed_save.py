"""A save killed by SIGKILL at its ``K``-th file operation, in a process of its own that runs
``dmft_jax/_results/io.py`` alone (with the version string beside it; no JAX). One script for
``tests/test_bad_input.py`` and ``benchmarks/bad_inputs_second.py``:

    python tests/killed_save.py IO_FILE K PATH OVERWRITE [VALUE]

``K = 0`` saves without a kill; ``OVERWRITE`` is 1 or 0; the saved curves are ``VALUE``
(default 2.0) everywhere. :class:`Fake` is the least a result needs to be saved.
"""
import importlib.util
import os
import signal
import sys
import types

import numpy as np


class Fake:
    """The least a result needs to be saved (numpy arrays only: no JAX in a child process)."""

    kind = "solution"
    saved_arrays = ("t", "m", "q", "eps_gen", "train_loss", "train_acc", "status")

    def __init__(self, value):
        for n in self.saved_arrays:
            setattr(self, n, np.full(5, value))
        self.problem = self.algorithm = self.config = type("D", (), {"to_dict": lambda s: {"v": value}})()
        self.seed = value


def load_io(io_file):
    """``dmft_jax._results.io`` from its file, without importing the package (and JAX)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(io_file)))
    package, results = types.ModuleType("dmft_jax"), types.ModuleType("dmft_jax._results")
    package.__path__, results.__path__ = [root], [os.path.join(root, "_results")]
    sys.modules["dmft_jax"], sys.modules["dmft_jax._results"] = package, results
    spec = importlib.util.spec_from_file_location("dmft_jax._results.io", io_file)
    io = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(io)
    return io


def main(argv):
    io = load_io(argv[1])
    k, path, overwrite = int(argv[2]), argv[3], argv[4] == "1"
    value = float(argv[5]) if len(argv) > 5 else 2.0
    done = []

    def die(name, fn, *args):  # io's every file operation goes through io._op
        done.append(name)
        if len(done) == k:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args)

    if k:
        io._op = die
    io.save(Fake(value), path, overwrite=overwrite)


if __name__ == "__main__":
    main(sys.argv)
