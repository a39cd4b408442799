import pytest

from knowcast.sim import SimConfig, simulate_platform

SMALL = SimConfig(seed=3, n_creators=30, n_items=400, n_users=600, days=8)


@pytest.fixture(scope="session")
def small_cfg() -> SimConfig:
    return SMALL


@pytest.fixture(scope="session")
def small_platform():
    return simulate_platform(SMALL)
