"""Fixtures for the served live rooms: a store with a live item, an app, a service with small limits.

PostgreSQL variants use their own database (``kc_live_test``, or KNOWCAST_LIVE_TEST_PG_URL) so they never
reset a database other tests use; they skip with the reason when it is unreachable.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from knowcast.ingest.service import import_records
from knowcast.store import Store

LIVE_PG_URL = os.environ.get("KNOWCAST_LIVE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/kc_live_test")
REDIS_URL = os.environ.get("KNOWCAST_LIVE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def seed_room(store: Store, room_id: str = "live1") -> None:
    """A creator, a course and a live item that promotes it."""
    import_records(store.engine, "creators", [{"creator_id": "c1", "name": "Teacher"}])
    import_records(
        store.engine,
        "items",
        [
            {"item_id": "course1", "kind": "course", "title": "Python", "price": 99, "creator_id": "c1"},
            {"item_id": "video1", "kind": "short_video", "title": "clip", "creator_id": "c1"},
            {
                "item_id": room_id,
                "kind": "live",
                "title": "Live class",
                "creator_id": "c1",
                "promotes": ["course1"],
            },
        ],
    )


def pg_reason(url: str = LIVE_PG_URL) -> str | None:
    try:
        s = Store(url)
        with s.engine.connect() as c:
            c.execute(text("SELECT 1"))
        s.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"PostgreSQL not reachable at {url}: {type(exc).__name__}: {str(exc).splitlines()[0]}"


def redis_reason(url: str = REDIS_URL) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"Redis not reachable at {url}: {type(exc).__name__}: {exc}"


@pytest.fixture(params=["sqlite", "postgresql"])
def live_store(request: pytest.FixtureRequest, tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
    else:
        reason = pg_reason()
        if reason:
            pytest.skip(reason)
        s = Store(LIVE_PG_URL)
        with s.engine.begin() as c:
            c.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            c.execute(text("CREATE SCHEMA public"))
        s.migrate()
    seed_room(s)
    yield s
    s.dispose()


@pytest.fixture
def sqlite_live_store(tmp_path) -> Iterator[Store]:  # type: ignore[no-untyped-def]
    s = Store(f"sqlite:///{tmp_path / 'kc.db'}").migrate()
    seed_room(s)
    yield s
    s.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise AssertionError(f"server on {port} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server on {port} did not start: {log.read_text()[-2000:]}")
