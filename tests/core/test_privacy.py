"""Users' data rights: export, erase (audited, everything gone), retention of raw events."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from knowcast.api.app import create_app
from knowcast.api.security import create_api_key
from knowcast.config import Settings
from knowcast.ingest.service import import_records
from knowcast.services.privacy import UnknownUser, erase_user, export_user, prune_events
from knowcast.store import Store
from knowcast.store.models import AuditLog, Comment, Event, Exposure, User


def seed(store: Store) -> None:
    import_records(store.engine, "users", [{"user_id": "alice"}, {"user_id": "bob"}])
    import_records(store.engine, "items", [{"item_id": "v1", "kind": "short_video"}])
    now = int(time.time())
    import_records(
        store.engine,
        "events",
        [
            {"event_id": "a1", "type": "view", "ts": now, "user_id": "alice", "item_id": "v1"},
            {
                "event_id": "a2",
                "type": "exposure",
                "ts": now,
                "user_id": "alice",
                "experiment": "x",
                "variant": "b",
            },
            {"event_id": "b1", "type": "view", "ts": now, "user_id": "bob", "item_id": "v1"},
            {"event_id": "old", "type": "view", "ts": now - 400 * 86400, "user_id": "bob", "item_id": "v1"},
        ],
    )
    import_records(
        store.engine,
        "comments",
        [{"comment_id": "c1", "ts": now, "user_id": "alice", "item_id": "v1", "text": "讲得真好"}],
    )


def n(store: Store, model, **where) -> int:  # type: ignore[no-untyped-def]
    stmt = select(func.count()).select_from(model)
    for k, v in where.items():
        stmt = stmt.where(getattr(model, k) == v)
    with store.engine.connect() as c:
        return int(c.execute(stmt).scalar() or 0)


def test_export_and_erase(store: Store) -> None:
    seed(store)
    data = export_user(store.engine, "alice")
    assert [e["id"] for e in data["events"]] == ["a1", "a2"]
    assert data["comments"][0]["text"] == "讲得真好" and data["exposures"][0]["variant"] == "b"
    counts = erase_user(store.engine, "alice", actor="test")
    assert (
        counts["events"] == 2 and counts["comments"] == 1 and counts["exposures"] == 1 and counts["user"] == 1
    )
    assert n(store, Event, user_id="alice") == 0 and n(store, Comment, user_id="alice") == 0
    assert n(store, Exposure, user_id="alice") == 0 and n(store, User, id="alice") == 0
    assert n(store, Event, user_id="bob") == 2  # nobody else touched
    with store.sessions() as s:
        audit = s.scalars(select(AuditLog)).one()
        assert audit.action == "user.erase" and "alice" not in audit.target
    with pytest.raises(UnknownUser):
        erase_user(store.engine, "alice")


def test_prune_events(store: Store) -> None:
    seed(store)
    assert prune_events(store.engine, 365) == 1
    assert n(store, Event) == 3
    with pytest.raises(ValueError):
        prune_events(store.engine, 0)


def test_http_delete_and_export_need_admin(store: Store) -> None:
    seed(store)
    with store.sessions() as s:
        admin = create_api_key(s, "a", ["admin"])[1]
        read = create_api_key(s, "r", ["read"])[1]
        s.commit()
    with TestClient(create_app(Settings(database_url=store.url), store)) as c:
        assert c.delete("/v1/users/bob", headers={"X-API-Key": read}).status_code == 403
        assert c.get("/v1/users/bob/export", headers={"X-API-Key": admin}).json()["user"]["id"] == "bob"
        r = c.delete("/v1/users/bob", headers={"X-API-Key": admin})
        assert r.status_code == 200 and r.json()["erased"]["events"] == 2
        assert c.delete("/v1/users/bob", headers={"X-API-Key": admin}).status_code == 404
