"""Seeded stores for the content/profile service tests: the tiny demo platform on SQLite and PostgreSQL.

Seeding takes a few seconds, so it happens once per session and backend: SQLite tests get a copy of a seeded
template file; PostgreSQL tests share our own database ``kc_content_test`` (created if missing, schema
recreated once per session), with the derived tables (features, profiles, segments, kv) and the events a
test added emptied before each test.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, text

from knowcast.content import service as content_svc
from knowcast.store import Store
from tests.conftest import fresh_pg_database

PG_DB = "kc_content_test"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
#: Events a test adds carry ids with this prefix, so they can be removed again.
TEST_EVENT_PREFIX = "kctest-"


def _seed(store: Store) -> None:
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig

    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))


def _pg_reason() -> str | None:
    return fresh_pg_database(PG_DB)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("seed") / "template.db"
    s = Store(f"sqlite:///{path}").migrate()
    _seed(s)
    with s.engine.connect() as c:
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    s.dispose()
    return path


@pytest.fixture(scope="session")
def pg_seeded() -> Iterator[Store]:
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    s = Store(PG_URL).migrate()
    _seed(s)
    yield s
    s.dispose()


def _reset_derived(store: Store) -> None:
    from knowcast.store.models import Event, ItemFeatures, KeyValue, Segment, SegmentMember, UserProfile

    with store.engine.begin() as conn:
        for table in (SegmentMember, Segment, UserProfile, ItemFeatures, KeyValue):
            conn.execute(delete(table))
        conn.execute(delete(Event).where(Event.id.like(f"{TEST_EVENT_PREFIX}%")))
        conn.execute(text("SELECT 1"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The seeded tiny demo store (no features, profiles or segments yet) on each backend."""
    monkeypatch.setenv("KNOWCAST_ARTIFACTS", str(tmp_path / "artifacts"))
    content_svc.invalidate()
    if request.param == "sqlite":
        path = tmp_path / "kc.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        s = Store(f"sqlite:///{path}").migrate()
        yield s
        s.dispose()
    else:
        s = request.getfixturevalue("pg_seeded")
        _reset_derived(s)
        yield s
    content_svc.invalidate()


@pytest.fixture
def api(store: Store):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from knowcast.api.app import create_app
    from knowcast.config import Settings

    app = create_app(Settings(database_url=store.url, auth_enabled=False), store)
    with TestClient(app) as client:
        yield client
