"""Fixtures for the Spark engine tests: one local Spark session per test module, a seeded SQLite store.

Every test here skips, with the reason, when pyspark or Java is missing. The session is started once per
module (a JVM start costs seconds); the code under test finds it as the active session and reuses it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from knowcast.recommend import service as svc
from knowcast.recommend.spark_als import spark_available
from knowcast.store import Store


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    reason = spark_available()
    if reason:
        pytest.skip(f"Spark engine not testable here: {reason}")
    from knowcast.recommend.spark_als import QUICK_JVM_OPTIONS, spark_session

    with spark_session("local[2]", conf={"spark.driver.extraJavaOptions": QUICK_JVM_OPTIONS}) as session:
        yield session


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo platform (300 users, 120 items, a week of events) seeded once into a SQLite file."""
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig

    path = tmp_path_factory.mktemp("sparkseed") / "template.db"
    s = Store(f"sqlite:///{path}").migrate()
    seed_demo(s.engine, SimConfig(seed=0, **SIZES["tiny"]))
    with s.engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    s.dispose()
    return path


@pytest.fixture
def store(tmp_path: Path, seeded_template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A private copy of the seeded store; artifacts under the test's temporary directory."""
    monkeypatch.setenv("KNOWCAST_ARTIFACTS", str(tmp_path / "artifacts"))
    svc.invalidate()
    path = tmp_path / "kc.db"
    shutil.copy(seeded_template, path)
    s = Store(f"sqlite:///{path}").migrate()
    yield s
    s.dispose()
    svc.invalidate()
