"""Stores for the experiment service tests: a fresh SQLite file per test, and PostgreSQL when reachable.

PostgreSQL: our own database ``kc_experiments_test`` (created if missing), its ``public`` schema dropped
and recreated once per test session, and every table emptied before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from knowcast.experiments import service as svc
from knowcast.store import Store

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "kc_experiments_test"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"


def _pg_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DB,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{PG_DB}"')
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
    except Exception as exc:  # noqa: BLE001 - any failure means: no PostgreSQL for these tests
        return f"PostgreSQL unreachable at {PG_SERVER}: {exc}"
    return None


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
