"""Shared fixtures: a fresh store on SQLite and on the real PostgreSQL on localhost.

PostgreSQL tests use the database named by KNOWCAST_TEST_PG_URL (default the machine's ``test`` database)
and skip with the reason when the server is unreachable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from knowcast.store import Store

PG_URL = os.environ.get("KNOWCAST_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_available(url: str = PG_URL) -> str | None:
    """None when PostgreSQL answers, else the reason to skip."""
    try:
        s = Store(url)
        with s.engine.connect() as c:
            c.execute(text("SELECT 1"))
        s.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL not reachable at {url}: {type(exc).__name__}: {str(exc).splitlines()[0]}"


PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def fresh_pg_database(name: str) -> str | None:
    """Create database ``name`` if missing and empty its public schema; None, or the reason to skip.

    Areas whose tests seed big fixtures use a database of their own, so they never race the shared one.
    """
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed"
    try:
        with psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=3) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True, connect_timeout=3
        ) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")
    except Exception as exc:  # noqa: BLE001 - any failure means: no PostgreSQL for these tests
        return f"PostgreSQL unreachable at {PG_SERVER}: {exc}"
    return None


def reset_pg(url: str = PG_URL) -> Store:
    store = Store(url)
    with store.engine.begin() as c:
        c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    return store.migrate()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    """A migrated, empty store on each backend."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
    else:
        reason = pg_available()
        if reason:
            pytest.skip(reason)
        s = reset_pg()
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
    yield s
    s.dispose()
