import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session")
def seed_two_cluster():
    import dmft_jax as dj

    return dj.Problem(model=dj.TwoCluster(rho=0.5), loss=dj.Logistic(), alpha=2.0, delta=0.5,
                      lam=0.0, R0=0.01)
