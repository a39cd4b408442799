"""Two real API processes (uvicorn) on loopback sharing rooms through the real Redis on 127.0.0.1:6379.

A comment posted to process A reaches a console connected to process B; B's own room state (its
snapshot) counts it; the store holds it once; ``knowcast live replay --post`` feeds the same server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from knowcast.paths import shared_data
from knowcast.store import Store

from .conftest import REDIS_URL, free_port, redis_reason, seed_room, wait_up

pytestmark = pytest.mark.skipif(redis_reason() is not None, reason=str(redis_reason()))


def _start(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "uvicorn", "knowcast.api.app:create_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


@pytest.fixture
def two_servers(tmp_path) -> Iterator[tuple[int, int, Store]]:  # type: ignore[no-untyped-def]
    db = tmp_path / "shared.db"
    store = Store(f"sqlite:///{db}").migrate()
    room = f"live-{os.getpid()}-{int(time.time())}"
    seed_room(store, room)
    store.room_id = room  # type: ignore[attr-defined]
    env = dict(os.environ)
    env.update({"KNOWCAST_REDIS_URL": REDIS_URL, "KNOWCAST_DATABASE_URL": store.url, "KNOWCAST_AUTH": "off"})
    ports = free_port(), free_port()
    procs = [_start(p, env, tmp_path / f"server-{p}.log") for p in ports]
    try:
        for p, proc in zip(ports, procs, strict=True):
            wait_up(p, proc, tmp_path / f"server-{p}.log")
        yield ports[0], ports[1], store
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        store.dispose()


def test_comment_posted_to_one_process_reaches_console_on_the_other(two_servers) -> None:  # type: ignore[no-untyped-def]
    from websockets.sync.client import connect

    port_a, port_b, store = two_servers
    room = store.room_id
    with connect(f"ws://127.0.0.1:{port_b}/v1/rooms/{room}/stream", open_timeout=60) as ws:
        first = json.loads(ws.recv(timeout=60))
        assert first["type"] == "snapshot" and first["room"]["bus"] == "redis"
        rows = [
            {"comment_id": "x1", "user_id": "u1", "text": "请问老师这门课适合零基础吗？"},
            {"comment_id": "x2", "user_id": "u2", "text": "微信 13812345678"},
        ]
        r = httpx.post(f"http://127.0.0.1:{port_a}/v1/rooms/{room}/comments", json=rows, timeout=60)
        assert r.status_code == 200, r.text
        got: dict[str, dict] = {}
        snap_count = 0
        t_end = time.monotonic() + 30
        while time.monotonic() < t_end and (len(got) < 2 or snap_count < 2):
            m = json.loads(ws.recv(timeout=30))
            if m["type"] == "comments":
                got.update({c["comment_id"]: c for c in m["items"]})
            elif m["type"] == "snapshot":
                snap_count = m["metrics"]["comments"]
        assert set(got) == {"x1", "x2"}
        assert got["x1"]["is_question"] and got["x2"]["moderation"]["action"] == "block"
        assert snap_count == 2  # B's own room state took A's comments
    # a retry to B stores nothing twice (B learnt the ids from the bus)
    r = httpx.post(f"http://127.0.0.1:{port_b}/v1/rooms/{room}/comments", json=rows, timeout=60)
    assert r.json()["duplicates"] == 2
    with store.engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM comments WHERE room_id = :r"), {"r": room}).scalar() == 2

    # the replay CLI posts a real chat log into the room through process A
    path = shared_data("livechat", "douyu_dytools.csv")
    if path.exists():
        out = subprocess.run(
            [sys.executable, "-m", "knowcast.cli", "live", "replay", str(path), "--speed", "0",
             "--room", room, "--post", f"http://127.0.0.1:{port_a}"],  # fmt: skip
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr + out.stdout
        assert "posted 66 comments" in out.stdout
        with store.engine.connect() as c:
            n = c.execute(text("SELECT COUNT(*) FROM comments WHERE room_id = :r"), {"r": room}).scalar()
        assert n == 68
