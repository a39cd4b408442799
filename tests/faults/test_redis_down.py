"""Redis dies while a live room is streaming, then comes back.

A real API process (uvicorn) whose live rooms share a bus through a private ``redis-server``; a console is
connected to the room's WebSocket stream; comments are posted in batches. Midway Redis is SIGKILLed and
posting goes on. Then:

- every POST is still answered 200: the worker falls back to its in-process bus;
- it says so: a warning in the server log, ``room.bus`` in the stream's snapshots and ``live_bus`` in
  ``/healthz`` read ``inprocess (redis unavailable)``;
- no comment is lost: the console received every posted comment, and the store holds each exactly once;
- when Redis is started again the worker goes back to ``redis`` by itself (within REDIS_RETRY_S).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from knowcast.live import bus as bus_module
from knowcast.live.bus import FALLBACK_KIND, REDIS_RETRY_S, RedisBus
from knowcast.store import Store

from .conftest import ApiServer, RedisServer

ROOM = "live-faults"
TEXTS = ["老师讲得真清楚", "这门课多少钱？", "nice explanation", "请问有回放吗", "学到了，谢谢老师", "666"]


def _seed(store: Store) -> None:
    from knowcast.ingest.service import import_records

    import_records(store.engine, "creators", [{"creator_id": "c1", "name": "Teacher"}])
    import_records(
        store.engine,
        "items",
        [
            {"item_id": "course1", "kind": "course", "title": "Python", "price": 99, "creator_id": "c1"},
            {
                "item_id": ROOM,
                "kind": "live",
                "title": "Live class",
                "creator_id": "c1",
                "promotes": ["course1"],
            },
        ],
    )


class Console:
    """A console on the room stream, in a thread: collects comment ids and the bus each snapshot names."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.comment_ids: list[str] = []
        self.buses: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=90) as ws:
                while not self.stop.is_set():
                    try:
                        m: dict[str, Any] = json.loads(ws.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    if m["type"] == "snapshot":
                        self.buses.append((time.monotonic(), m["room"]["bus"]))
                        self.ready.set()
                    elif m["type"] == "comments":
                        self.comment_ids.extend(c["comment_id"] for c in m["items"])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_bus_falls_back_when_redis_dies_and_rejoins_it(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers' buses in one loop: kill Redis, keep publishing on one, start Redis again."""
    monkeypatch.setattr(bus_module, "REDIS_RETRY_S", 0.3)

    async def until(cond: Callable[[], bool], timeout: float = 10) -> bool:
        t_end = time.monotonic() + timeout
        while not cond() and time.monotonic() < t_end:
            await asyncio.sleep(0.02)
        return cond()

    async def run() -> None:
        a, b = RedisBus(private_redis.url), RedisBus(private_redis.url)
        await a.start()
        await b.start()
        sub_a, sub_b = a.subscribe("r"), b.subscribe("r")
        await a.publish("r", {"n": 0})
        assert await sub_a.get(2) == {"n": 0} and await sub_b.get(5) == {"n": 0}
        assert a.kind == b.kind == "redis"

        private_redis.kill()
        for n in range(1, 21):  # never raises; a's own console gets every message
            await a.publish("r", {"n": n})
        assert [(await sub_a.get(1) or {}).get("n") for _ in range(20)] == list(range(1, 21))
        assert a.kind == FALLBACK_KIND
        assert await until(lambda: b.kind == FALLBACK_KIND)  # b only listens: its listener noticed
        assert a.fallbacks == b.fallbacks == 1

        private_redis.start()  # same port
        assert await until(lambda: a.kind == b.kind == "redis")  # both rejoin by themselves
        await a.publish("r", {"n": 99})
        assert await sub_a.get(2) == {"n": 99} and await sub_b.get(5) == {"n": 99}
        assert sub_b.get_nowait() is None  # b saw nothing of what a published while Redis was down
        await a.close()
        await b.close()

    with caplog.at_level(logging.WARNING, logger="knowcast.live.bus"):
        asyncio.run(run())
    warnings = [r.getMessage() for r in caplog.records]
    assert sum("fall back to the in-process bus" in w for w in warnings) == 2  # once per bus and outage
    assert sum("is back" in w for w in warnings) == 2


@pytest.mark.slow
def test_redis_down_falls_back_in_process_and_loses_no_comment(
    tmp_path: Path,
    private_redis: RedisServer,
    api_server: Callable[[dict[str, str]], ApiServer],
) -> None:
    pytest.importorskip("websockets")
    store = Store(f"sqlite:///{tmp_path / 'live.db'}").migrate()
    _seed(store)
    api = api_server({"KNOWCAST_DATABASE_URL": store.url, "KNOWCAST_REDIS_URL": private_redis.url})
    console = Console(f"ws://127.0.0.1:{api.port}/v1/rooms/{ROOM}/stream?snapshot_s=0.2")
    posted: list[str] = []

    def post(batch: int) -> None:
        rows = [
            {
                "comment_id": f"rd-{batch}-{i}",
                "user_id": f"u{batch % 7}-{i}",
                "text": TEXTS[(batch + i) % len(TEXTS)],
            }
            for i in range(5)
        ]
        r = httpx.post(f"{api.base}/v1/rooms/{ROOM}/comments", json=rows, timeout=30)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 5
        posted.extend(row["comment_id"] for row in rows)

    try:
        assert console.ready.wait(120) and console.error is None, console.error
        assert console.buses[-1][1] == "redis"
        for b in range(10):
            post(b)
        assert httpx.get(f"{api.base}/healthz", timeout=10).json()["live_bus"] == "redis"

        private_redis.kill()
        killed_at = time.monotonic()
        for b in range(10, 30):
            post(b)
            time.sleep(0.05)
        health = httpx.get(f"{api.base}/healthz", timeout=10).json()
        assert health["status"] == "ok" and health["live_bus"] == FALLBACK_KIND
        _wait(
            lambda: any(t > killed_at and b == FALLBACK_KIND for t, b in console.buses),
            10,
            "a fallback snapshot",
        )
        _wait(lambda: len(console.comment_ids) >= len(posted), 10, "the console to get every comment")

        # Redis back on the same port: the worker rejoins it at its next publish after REDIS_RETRY_S
        private_redis.start()
        time.sleep(REDIS_RETRY_S + 0.5)
        for b in range(30, 33):
            post(b)
        assert httpx.get(f"{api.base}/healthz", timeout=10).json()["live_bus"] == "redis"
        _wait(lambda: len(console.comment_ids) >= len(posted), 10, "the console to get the last comments")
    finally:
        console.close()
    assert console.error is None, console.error
    assert sorted(console.comment_ids) == sorted(posted)  # every comment reached the console, once
    log = api.output()
    assert "fall back to the in-process bus" in log and "is back" in log, log[-3000:]
    with store.engine.connect() as c:
        rows = c.execute(text("SELECT id FROM comments WHERE room_id = :r"), {"r": ROOM}).scalars().all()
    store.dispose()
    assert sorted(rows) == sorted(posted)  # stored, each once
