"""HTTP API: auth and scopes, batch ingest rules, limits, read endpoints with paging and filters."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from knowcast.api.app import create_app
from knowcast.api.security import create_api_key
from knowcast.config import Settings
from knowcast.store import Store


@pytest.fixture
def api(store: Store) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(database_url=store.url, auth_enabled=True, max_body_bytes=200_000, max_batch_rows=500)
    keys = {}
    with store.sessions() as s:
        for scope in ("ingest", "read", "admin"):
            keys[scope] = create_api_key(s, scope, [scope])[1]
        s.commit()
    with TestClient(create_app(settings, store)) as client:
        yield client, keys


def h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def seed(client: TestClient, key: str) -> None:
    r = client.post("/v1/users", json=[{"user_id": f"u{i}"} for i in range(3)], headers=h(key))
    assert r.status_code == 200, r.text
    r = client.post(
        "/v1/items",
        headers=h(key),
        json=[
            {"item_id": "c1", "kind": "course", "price": 99, "title": "Python 数据分析"},
            {"item_id": "v1", "kind": "short_video", "promotes": ["c1"], "title": "3 分钟学会 pandas"},
        ],
    )
    assert r.status_code == 200, r.text


def events(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "event_id": f"e{i}",
            "type": "view" if i % 2 else "click",
            "ts": 1767323045 + i,
            "user_id": f"u{i % 3}",
            "item_id": "v1",
        }
        for i in range(start, start + n)
    ]


def test_auth_401_and_403(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    assert client.get("/v1/users").status_code == 401
    assert client.get("/v1/users", headers=h("kc_bogus_key")).status_code == 401
    assert client.get("/v1/users", headers=h(keys["ingest"])).status_code == 403
    assert client.post("/v1/events", json=[], headers=h(keys["read"])).status_code == 403
    assert client.get("/v1/users", headers=h(keys["read"])).status_code == 200
    assert client.get("/v1/users", headers={"X-API-Key": keys["admin"]}).status_code == 200
    assert client.get("/healthz").json()["status"] == "ok"


def test_ingest_idempotent_and_422_names_rows(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    seed(client, keys["ingest"])
    r = client.post("/v1/events", json=events(20), headers=h(keys["ingest"]))
    assert r.status_code == 200 and r.json()["rows_written"] == 20
    r = client.post("/v1/events", json=events(20), headers=h(keys["ingest"]))
    assert r.json()["rows_written"] == 0 and r.json()["duplicates"] == 20
    bad = events(3, 100) + [{"event_id": "z", "type": "view", "ts": "soon", "user_id": "u1", "item_id": "v1"}]
    r = client.post("/v1/events", json=bad, headers=h(keys["ingest"]))
    assert r.status_code == 422
    assert r.json()["detail"]["errors"] == [
        {
            "line": 4,
            "field": "ts",
            "message": "expected ISO 8601 or epoch seconds/milliseconds",
            "value": "soon",
        }
    ]
    r = client.get("/v1/events", params={"limit": 1000}, headers=h(keys["read"]))
    assert len(r.json()["events"]) == 20  # the bad batch wrote nothing
    r = client.post("/v1/events?on_error=skip", json=bad, headers=h(keys["ingest"]))
    assert r.status_code == 200 and r.json()["rows_written"] == 3 and r.json()["rejected"] == 1


def test_limits_413(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    r = client.post("/v1/events", json=events(501), headers=h(keys["ingest"]))
    assert r.status_code == 413 and "500 rows" in r.json()["detail"]
    big = json.dumps([{"event_id": "x" * 100, "props": {"blob": "y" * 300_000}}])
    r = client.post(
        "/v1/events", content=big, headers={**h(keys["ingest"]), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and "200000 bytes" in r.json()["detail"]


def test_wrong_body_type_is_422(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    r = client.post("/v1/events", json={"not": "a list"}, headers=h(keys["ingest"]))
    assert r.status_code == 422 and r.json()["errors"]


def test_read_endpoints_filters_and_keyset_paging(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    seed(client, keys["ingest"])
    client.post("/v1/events", json=events(25), headers=h(keys["ingest"]))
    rk = h(keys["read"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10, "type": "view"} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/events", params=params, headers=rk).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"e{i}" for i in range(23, 0, -2)]
    r = client.get("/v1/events", params={"user_id": "u1", "since": 1767323045 + 10}, headers=rk).json()
    assert {e["event_id"] for e in r["events"]} == {"e10", "e13", "e16", "e19", "e22"}
    assert client.get("/v1/events", params={"type": "teleport"}, headers=rk).status_code == 422
    assert client.get("/v1/events", params={"cursor": "garbage"}, headers=rk).status_code == 422
    item = client.get("/v1/items/v1", headers=rk).json()
    assert item["promotes"] == ["c1"] and item["title"] == "3 分钟学会 pandas"
    assert client.get("/v1/items/c1", headers=rk).json()["promoted_by"] == ["v1"]
    assert client.get("/v1/items/nope", headers=rk).status_code == 404
    assert client.get("/v1/users/u1", headers=rk).json()["user_id"] == "u1"
    assert (
        client.get("/v1/items", params={"kind": "course"}, headers=rk).json()["items"][0]["item_id"] == "c1"
    )
    assert client.get("/v1/items", params={"q": "pandas"}, headers=rk).json()["items"][0]["item_id"] == "v1"


def test_keys_admin(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    r = client.post("/v1/keys", json={"name": "etl", "scopes": ["ingest"]}, headers=h(keys["admin"]))
    assert r.status_code == 200
    secret, key_id = r.json()["key"], r.json()["id"]
    listed = client.get("/v1/keys", headers=h(keys["admin"])).json()["keys"]
    assert all("key" not in k for k in listed) and secret not in json.dumps(listed)
    assert client.post("/v1/users", json=[{"user_id": "n1"}], headers=h(secret)).status_code == 200
    assert client.delete(f"/v1/keys/{key_id}", headers=h(keys["admin"])).status_code == 200
    assert client.post("/v1/users", json=[{"user_id": "n2"}], headers=h(secret)).status_code == 401
    assert client.post("/v1/keys", json={"scopes": ["root"]}, headers=h(keys["admin"])).status_code == 422
    assert client.get("/v1/keys", headers=h(keys["read"])).status_code == 403


def test_body_must_be_an_array_of_objects(api) -> None:  # type: ignore[no-untyped-def]
    client, keys = api
    hdr = {**h(keys["ingest"]), "Content-Type": "application/json"}
    cases = ((b"[{", "body.2"), (b"", "body"), (b'{"a": 1}', "body"), (b'[{"a": 1}, 7]', "body.1"))
    for body, where in cases:  # even with on_error=skip: a body of the wrong shape is not a batch of rows
        r = client.post("/v1/events?on_error=skip", content=body, headers=hdr)
        assert r.status_code == 422, body
        assert r.json()["errors"][0]["field"] == where, (body, r.json())
