import os
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)
# the command line turns JAX's on-disk compilation cache on: in tests it must neither read nor
# fill the user's cache (tests that run the CLI in this process switch it off again below)
os.environ.setdefault("DMFT_JAX_CACHE_DIR", tempfile.mkdtemp(prefix="dmft_jax_test_cache_"))


@pytest.fixture(scope="session")
def seed_two_cluster():
    import dmft_jax as dj

    return dj.Problem(model=dj.TwoCluster(rho=0.5), loss=dj.Logistic(), alpha=2.0, delta=0.5,
                      lam=0.0, R0=0.01)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module. The suite compiles several
    hundred programs; keeping them all made XLA's CPU compiler segfault late in the run
    (a process-wide resource, not a test's fault)."""
    yield
    jax.clear_caches()
    from dmft_jax._cache import compilation as cache, trace as trace_cache

    cache.disable_compilation_cache()  # JAX's on-disk cache and the trace cache
    trace_cache._MEMO.clear()
