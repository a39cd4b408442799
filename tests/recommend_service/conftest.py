"""Stores for the recommendation service tests: the tiny demo platform on SQLite and PostgreSQL.

Seeding takes a few seconds, so it happens once per session and backend: SQLite tests get a copy of a seeded
template file; PostgreSQL tests share our own database ``kc_rec_test`` (created if missing, schema recreated
once per session), with model versions, kv, profiles and the rows a test added removed before each test.
Artifacts go to a per-test temporary directory (``KNOWCAST_ARTIFACTS``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text

from knowcast.recommend import service as svc
from knowcast.store import Store
from tests.conftest import fresh_pg_database

PG_DB = "kc_rec_test"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
#: Rows a test adds (events, users) carry ids with this prefix, so they can be removed again.
PREFIX = "kcrec-"


def _seed(store: Store) -> None:
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig

    seed_demo(store.engine, SimConfig(seed=0, **SIZES["tiny"]))


def _pg_reason() -> str | None:
    return fresh_pg_database(PG_DB)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recseed") / "template.db"
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


def _reset(store: Store) -> None:
    from knowcast.store.models import Event, KeyValue, LiveSession, ModelVersion, User, UserProfile

    with store.engine.begin() as conn:
        for table in (ModelVersion, KeyValue, UserProfile):
            conn.execute(delete(table))
        conn.execute(delete(Event).where(Event.id.like(f"{PREFIX}%")))
        conn.execute(delete(User).where(User.id.like(f"{PREFIX}%")))
        conn.execute(text("UPDATE live_sessions SET state = 'ended' WHERE state = 'live'"))
        conn.execute(select(LiveSession.item_id).limit(1))


def _sqlite(tmp_path: Path, template: Path) -> Store:
    path = tmp_path / "kc.db"
    shutil.copy(template, path)
    s = Store(f"sqlite:///{path}").migrate()
    with s.engine.begin() as conn:  # the same starting point as PostgreSQL: no room live
        conn.execute(text("UPDATE live_sessions SET state = 'ended' WHERE state = 'live'"))
    return s


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "artifacts"
    monkeypatch.setenv("KNOWCAST_ARTIFACTS", str(d))
    svc.invalidate()
    return d


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path, artifacts: Path) -> Iterator[Store]:
    """The seeded tiny demo on SQLite (a private copy)."""
    s = _sqlite(tmp_path, request.getfixturevalue("sqlite_template"))
    yield s
    s.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path, artifacts: Path) -> Iterator[Store]:
    """The seeded tiny demo on each backend."""
    if request.param == "sqlite":
        s = _sqlite(tmp_path, request.getfixturevalue("sqlite_template"))
        yield s
        s.dispose()
    else:
        s = request.getfixturevalue("pg_seeded")
        _reset(s)
        svc.invalidate()
        yield s
        _reset(s)
    svc.invalidate()


@pytest.fixture
def api(store: Store):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from knowcast.api.app import create_app
    from knowcast.config import Settings

    app = create_app(Settings(database_url=store.url, auth_enabled=False), store)
    with TestClient(app) as client:
        yield client


def active_users(store: Store, k: int = 3) -> list[str]:
    """The ``k`` users with the most interactions (a rich history makes assertions meaningful)."""
    with store.engine.connect() as c:
        rows = c.execute(
            text(
                "SELECT user_id FROM events WHERE type IN ('view', 'like', 'click', 'purchase') "
                "GROUP BY user_id ORDER BY COUNT(*) DESC, user_id LIMIT :k"
            ),
            {"k": k},
        ).all()
    return [r[0] for r in rows]


def last_ts(store: Store) -> int:
    with store.engine.connect() as c:
        return int(c.execute(text("SELECT MAX(ts) FROM events")).scalar())


_COUNTER = [0]


def add_events(store: Store, user: str, item: str, *types: str, create_user: bool = False) -> None:
    """Ingest events through the normal import path (validated, idempotent), newer than every stored one."""
    from knowcast.ingest.service import import_records

    t0 = max(last_ts(store), int(time.time() * 1000) - 3_600_000)
    rows: list[dict[str, Any]] = []
    for t in types:
        _COUNTER[0] += 1
        rows.append(
            {
                "event_id": f"{PREFIX}{_COUNTER[0]}-{time.time_ns()}",
                "type": t,
                "ts": t0 + _COUNTER[0],
                "user_id": user,
                "item_id": item,
                "watch_ratio": 0.9 if t == "view" else None,
                "amount": 99.0 if t == "purchase" else None,
                "currency": "CNY" if t == "purchase" else None,
                "channel": "feed",
            }
        )
    rep = import_records(store.engine, "events", rows, create_missing=create_user)
    assert rep.rows_written == len(rows), rep.as_dict()
