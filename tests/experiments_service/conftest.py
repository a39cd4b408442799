"""Stores for the experiment service tests: a fresh SQLite file per test, and PostgreSQL when reachable.

PostgreSQL: our own database ``kc_experiments_test`` (created if missing), its ``public`` schema dropped
and recreated once per test session, and every table emptied before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from knowcast.experiments import service as svc
from knowcast.store import Store
from tests.conftest import fresh_pg_database

PG_DB = "kc_experiments_test"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"


def _pg_reason() -> str | None:
    return fresh_pg_database(PG_DB)


@pytest.fixture(scope="session")
def pg_store() -> Iterator[Store]:
    reason = _pg_reason()
    if reason:
        pytest.skip(reason)
    store = Store(PG_URL).migrate()
    yield store
    store.dispose()


def _empty(store: Store) -> None:
    from sqlalchemy import text

    from knowcast.store.models import Base

    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """An empty, migrated store on each backend."""
    svc.invalidate()
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
        yield s
        s.dispose()
    else:
        s = request.getfixturevalue("pg_store")
        _empty(s)
        yield s
    svc.invalidate()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    svc.invalidate()
    s = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
    yield s
    s.dispose()
    svc.invalidate()
