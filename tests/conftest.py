import jax
import pytest

jax.config.update("jax_enable_x64", True)


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
