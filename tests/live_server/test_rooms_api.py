"""The rooms API end to end in process: POST → console stream, verdicts, storage, limits, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from knowcast.api.app import create_app
from knowcast.api.security import create_api_key
from knowcast.config import Settings
from knowcast.live.service import LiveConfig, RoomService
from knowcast.store import Store

WORDS = "数理化史地生英日法德俄意韩葡西泰越梵藏蒙"  # distinct texts, so flood control stays quiet
BLOCKED = "微信 13812345678"  # a phone number: blocked as ads whatever the lexicons


def make_client(store: Store, auth: bool = False, config: LiveConfig | None = None) -> TestClient:
    app = create_app(Settings(database_url=store.url, auth_enabled=auth), store)
    if config is not None:
        app.state.live_service = RoomService(store.engine, config=config)
    return TestClient(app)


def comments_until(ws: Any, n: int, max_messages: int = 50) -> list[dict[str, Any]]:
    """Read console messages until ``n`` comments arrived (snapshots in between are skipped)."""
    got: list[dict[str, Any]] = []
    for _ in range(max_messages):
        m = ws.receive_json()
        if m["type"] == "comments":
            got.extend(m["items"])
            if len(got) >= n:
                return got
    raise AssertionError(f"only {len(got)} of {n} comments reached the console")


def count(store: Store, sql: str, **params: Any) -> int:
    with store.engine.connect() as c:
        return int(c.execute(text(sql), params).scalar() or 0)


def test_post_reaches_console_with_verdicts(sqlite_live_store: Store) -> None:
    with make_client(sqlite_live_store) as c, c.websocket_connect("/v1/rooms/live1/stream") as ws:
        first = ws.receive_json()
        assert first["type"] == "snapshot" and first["room_id"] == "live1"
        assert {"metrics", "top_questions", "trending", "sentiment", "highlights"} <= set(first)
        assert first["metrics"]["items"][0]["item_id"] == "course1"  # promoted item listed before sales
        r = c.post(
            "/v1/rooms/live1/comments",
            json=[
                {"comment_id": "k1", "user_id": "u1", "text": "老师讲得真好，请问这门课多少钱？"},
                {"comment_id": "k2", "user_id": "u2", "text": BLOCKED},
            ],
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["accepted"] == 2 and body["duplicates"] == 0
        items = {d["comment_id"]: d for d in comments_until(ws, 2)}
        q = items["k1"]
        assert q["is_question"] is True and q["moderation"]["action"] == "pass"
        assert q["sentiment"]["label"] in ("positive", "neutral", "negative") and q["keywords"]
        b = items["k2"]["moderation"]
        assert b["action"] == "block" and b["category"] == "ads"
        start, end = b["span"]
        assert BLOCKED[start:end] == "13812345678" and b["matched"] == "13812345678"
        assert "tokens" not in items["k1"]
        # the next snapshot counts them
        for _ in range(20):
            m = ws.receive_json()
            if m["type"] == "snapshot" and m["metrics"]["comments"] == 2:
                break
        else:
            raise AssertionError("no snapshot with the two comments")
        assert m["verdicts"] == {"pass": 1, "block": 1}
        assert m["top_questions"] and m["top_questions"][0]["count"] == 1


def test_stored_once_with_verdicts_on_retry(live_store: Store) -> None:
    rows = [
        {
            "comment_id": f"r{i}",
            "user_id": f"u{i % 3}",
            "text": f"{WORDS[i]}课请问怎么报名？",
        }
        for i in range(20)
    ]
    rows.append({"comment_id": "rb", "user_id": "u9", "text": BLOCKED})
    with make_client(live_store) as c:
        r1 = c.post("/v1/rooms/live1/comments", json=rows)
        assert r1.status_code == 200 and r1.json()["accepted"] == 21
        r2 = c.post("/v1/rooms/live1/comments", json=rows)  # the client retries
        assert r2.status_code == 200 and r2.json() == {
            "room_id": "live1", "accepted": 0, "duplicates": 21, "comments": []
        }  # fmt: skip
        # a fresh process (no memory of ids) retrying still stores nothing twice
        c.app.state.live_service = None
        r3 = c.post("/v1/rooms/live1/comments", json=rows[:5])
        assert r3.status_code == 200
        minutes = c.get("/v1/rooms/live1/stored/minutes").json()["items"]
        stored = c.get("/v1/rooms/live1/stored/comments", params={"moderation": "block"}).json()
    assert count(live_store, "SELECT COUNT(*) FROM comments WHERE room_id = 'live1'") == 21
    assert stored["count"] == 1
    s = stored["items"][0]
    assert s["comment_id"] == "rb" and s["category"] == "ads" and s["matched"] == "13812345678"
    with live_store.engine.connect() as conn:
        row = conn.execute(
            text("SELECT moderation, is_question, sentiment, keywords, item_id FROM comments WHERE id = 'r3'")
        ).one()
    assert (
        row.moderation in ("pass", "review") and row.is_question and row.sentiment and row.item_id == "live1"
    )
    assert sum(m["comments"] for m in minutes) == 21  # the retry in a fresh process added nothing
    assert sum(m["blocked"] for m in minutes) == 1
    assert sum(m["questions"] for m in minutes) >= 20


def test_events_metrics_and_idempotence(live_store: Store) -> None:
    events = [
        {"type": "join", "user_id": "u1", "event_id": "e1"},
        {"type": "join", "user_id": "u2", "event_id": "e2"},
        {"type": "gift", "user_id": "u2", "amount": 5, "event_id": "e3"},
        {"type": "purchase", "user_id": "u1", "amount": 99, "item_id": "course1", "event_id": "e4"},
        {"type": "leave", "user_id": "u2", "event_id": "e5"},
    ]
    with make_client(live_store) as c:
        r = c.post("/v1/rooms/live1/events", json=events)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 5
        assert c.post("/v1/rooms/live1/events", json=events).json()["accepted"] == 0
        assert c.post("/v1/rooms/live1/gifts", json=[{"user_id": "u3", "amount": 1}]).status_code == 200
        snap = c.get("/v1/rooms/live1").json()
        minutes = c.get("/v1/rooms/live1/stored/minutes").json()["items"]
        bad = c.post("/v1/rooms/live1/purchases", json=[{"user_id": "u1", "amount": 5}])
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "item_id"
    m = snap["metrics"]
    assert m["peak_viewers"] == 2 and m["concurrent_viewers"] == 1 and m["gmv"] == 99.0 and m["gifts"] == 2
    assert m["items"][0]["item_id"] == "course1" and m["items"][0]["units"] == 1
    # u1 bought; viewers are u1, u2 (joined); RoomMetrics does not count a gift as presence (u3)
    assert m["conversion"] == pytest.approx(1 / 2, abs=1e-3)
    assert count(live_store, "SELECT COUNT(*) FROM events WHERE room_id = 'live1'") == 6
    types = count(live_store, "SELECT COUNT(DISTINCT type) FROM events WHERE room_id = 'live1'")
    assert types == 4  # live_join, tip, purchase, live_leave
    assert sum(x["gifts"] for x in minutes) == 2 and sum(x["gmv"] for x in minutes) == 99.0
    assert max(x["viewers"] for x in minutes) == 2 and sum(x["joins"] for x in minutes) == 2


def test_unknown_room_is_404(sqlite_live_store: Store) -> None:
    with make_client(sqlite_live_store) as c:
        assert c.post("/v1/rooms/nope/comments", json=["hi"]).status_code == 404
        assert c.post("/v1/rooms/video1/comments", json=["hi"]).status_code == 404  # not a live item
        assert c.get("/v1/rooms/nope").status_code == 404
        assert c.post("/v1/rooms/nope/events", json=[]).status_code == 404
        with c.websocket_connect("/v1/rooms/nope/stream") as ws:
            m = ws.receive_json()
            assert m["type"] == "error" and m["status"] == 404


def test_bad_input(sqlite_live_store: Store) -> None:
    long_ok = "好" * 10_000
    with make_client(sqlite_live_store) as c:
        r = c.post(
            "/v1/rooms/live1/comments", json=["ok", "", {"text": "   "}, {"text": 5}, {"user_id": "u"}]
        )
        assert r.status_code == 422
        errs = r.json()["errors"]
        assert [(e["row"], e["field"]) for e in errs] == [(1, "text"), (2, "text"), (3, "text"), (4, "text")]
        assert c.post("/v1/rooms/live1/comments", json=["x" * 10_001]).json()["errors"][0]["message"] == (
            "must be at most 10000 characters"
        )
        assert c.post("/v1/rooms/live1/comments", content=b"not json").status_code == 422
        assert c.post("/v1/rooms/live1/comments", json={"text": "not a list"}).status_code == 422
        assert (
            c.post("/v1/rooms/live1/comments", json=[{"text": "x", "ts": "yesterday-ish"}]).status_code == 422
        )
        # accepted: 10,000 characters, emoji only, invalid UTF-8 bytes, a lone surrogate, a NUL
        assert (
            c.post("/v1/rooms/live1/comments", json=[{"comment_id": "long", "text": long_ok}]).status_code
            == 200
        )
        assert (
            c.post("/v1/rooms/live1/comments", json=[{"comment_id": "emo", "text": "😂😂👍🔥"}]).status_code
            == 200
        )
        raw = b'[{"comment_id": "utf", "text": "\xe4\xbd\xa0\xff\xfe\xe5\xa5\xbd"}]'
        assert c.post("/v1/rooms/live1/comments", content=raw).status_code == 200
        sur = '[{"comment_id": "sur", "text": "a\\ud800b\\u0000c"}]'
        assert c.post("/v1/rooms/live1/comments", content=sur.encode()).status_code == 200
        snap = c.get("/v1/rooms/live1").json()
    with sqlite_live_store.engine.connect() as conn:
        texts = dict(conn.execute(text("SELECT id, text FROM comments")).all())
    assert len(texts["long"]) == 10_000
    assert texts["emo"] == "😂😂👍🔥" and texts["utf"] == "你好"
    assert "\x00" not in texts["sur"] and texts["sur"].startswith("a") and texts["sur"].endswith("c")
    assert snap["metrics"]["comments"] == 4


def test_flood_gets_429_while_others_get_200(sqlite_live_store: Store) -> None:
    with sqlite_live_store.sessions() as s:
        _, flooder = create_api_key(s, "flooder", ["ingest", "read"])
        _, other = create_api_key(s, "other", ["ingest"])
        s.commit()
    config = LiveConfig(rate_per_s=200, burst=400)
    with make_client(sqlite_live_store, auth=True, config=config) as c:
        fh = {"Authorization": f"Bearer {flooder}"}
        oh = {"Authorization": f"Bearer {other}"}
        statuses = []
        for i in range(12):  # 12 × 100 comments at once: far over 200/s with a 400 burst
            batch = [
                {"comment_id": f"f{i}-{j}", "user_id": "spam", "text": f"刷屏 {i} {j}"} for j in range(100)
            ]
            r = c.post("/v1/rooms/live1/comments", json=batch, headers=fh)
            statuses.append(r.status_code)
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1 and r.json()["retry_after_s"] > 0
        assert statuses[:4] == [200] * 4 and statuses.count(429) >= 6
        r = c.post("/v1/rooms/live1/comments", json=[{"text": "我也想问问", "comment_id": "o1"}], headers=oh)
        assert r.status_code == 200 and r.json()["accepted"] == 1
        assert c.post("/v1/rooms/live1/comments", json=["no key"]).status_code == 401
        # websocket auth: a key with read scope in the query string
        with c.websocket_connect("/v1/rooms/live1/stream") as ws:
            assert ws.receive_json()["status"] == 401
        with c.websocket_connect(f"/v1/rooms/live1/stream?api_key={other}") as ws:
            assert ws.receive_json()["status"] == 401  # ingest only, no read scope
        with c.websocket_connect(f"/v1/rooms/live1/stream?api_key={flooder}") as ws:
            assert ws.receive_json()["type"] == "snapshot"
    n = count(sqlite_live_store, "SELECT COUNT(*) FROM comments")
    assert n == statuses.count(200) * 100 + 1


def test_end_room(sqlite_live_store: Store) -> None:
    with make_client(sqlite_live_store) as c, c.websocket_connect("/v1/rooms/live1/stream") as ws:
        ws.receive_json()
        c.post("/v1/rooms/live1/comments", json=["大家好", "老师好"])
        # the server holds no per-comment list (a long room would grow it without end): the store has them
        assert c.app.state.live_service.rooms["live1"].state.comments == []
        rec = c.post("/v1/rooms/live1/end").json()
        assert rec["comments"] == 2 and sum(rec["verdicts"].values()) == 2
        kinds = set()
        for _ in range(20):
            kinds.add(ws.receive_json()["type"])
            if "ended" in kinds:
                break
        assert "ended" in kinds
    with sqlite_live_store.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT state FROM live_sessions WHERE item_id = 'live1'")).scalar() == "ended"
        )
