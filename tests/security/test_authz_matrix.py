"""Authorization matrix: every /v1 route against every kind of caller.

Callers: no credentials, a made-up key, a revoked key, keys with each scope, dashboard sessions (admin,
analyst, creator). The scope a route needs is read from its dependencies (``require_scope`` tags its check
with ``required_scope``) and, for the routes whose scope is part of the contract, pinned in ``CONTRACT`` so a
router cannot silently weaken itself.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.security.conftest import bearer, csrf_token, sign_in

#: Scope each route must need (method, path) -> scope. Routes not listed still need *some* scope.
CONTRACT = {
    ("POST", "/v1/events"): "ingest",
    ("POST", "/v1/users"): "ingest",
    ("POST", "/v1/items"): "ingest",
    ("POST", "/v1/comments"): "ingest",
    ("POST", "/v1/creators"): "ingest",
    ("GET", "/v1/events"): "read",
    ("GET", "/v1/users"): "read",
    ("GET", "/v1/users/{user_id}"): "read",
    ("GET", "/v1/items"): "read",
    ("GET", "/v1/items/{item_id}"): "read",
    ("GET", "/v1/creators"): "read",
    ("GET", "/v1/creators/{creator_id}"): "read",
    ("GET", "/v1/keys"): "admin",
    ("POST", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
    ("GET", "/v1/users/{user_id}/export"): "admin",
    ("DELETE", "/v1/users/{user_id}"): "admin",
    ("POST", "/v1/experiments"): "admin",
    ("POST", "/v1/experiments/{key}/start"): "admin",
    ("POST", "/v1/experiments/{key}/stop"): "admin",
    ("POST", "/v1/segments"): "admin",
    ("POST", "/v1/profiles/update"): "admin",
}

KEY_SCOPES = {
    "ingest": {"ingest"},
    "read": {"read"},
    "admin": {"admin"},
    "read+ingest": {"read", "ingest"},
}


def _required(dependant: Any, out: set[str]) -> set[str]:
    scope = getattr(dependant.call, "required_scope", None)
    if scope:
        out.add(scope)
    for sub in dependant.dependencies:
        _required(sub, out)
    return out


def api_routes(app: Any) -> list[tuple[str, str, set[str]]]:
    """(method, path, scopes needed) for every HTTP route under /v1."""
    out = []
    for ctx in iter_route_contexts(app.routes):
        route = ctx.route
        if not isinstance(route, APIRoute) or not route.path.startswith("/v1/"):
            continue
        for method in sorted(route.methods):
            out.append((method, route.path, _required(route.dependant, set())))
    return out


def _url(path: str) -> str:
    # Path parameters get values that exist nowhere (so an allowed call changes nothing): 404 or 422.
    return re.sub(r"\{key_id\}", "987654", re.sub(r"\{[a-z_]+\}", "zz-nowhere", path))


def _call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    return client.request(method, _url(path), **kwargs).status_code


def test_every_api_route_needs_a_scope_and_honours_the_contract(app: Any) -> None:
    routes = api_routes(app)
    assert len(routes) >= 20
    open_routes = [(m, p) for m, p, scopes in routes if not scopes]
    assert open_routes == [], f"/v1 routes reachable without any scope: {open_routes}"
    found = {(m, p): scopes for m, p, scopes in routes}
    for (method, path), scope in CONTRACT.items():
        assert (method, path) in found, f"{method} {path} is gone"
        got = found[(method, path)]
        assert got == {scope}, f"{method} {path} needs {got}, want {scope}"


def test_matrix_api_keys(app: Any, keys: dict[str, str]) -> None:
    client = TestClient(app)
    wrong: list[str] = []
    for method, path, scopes in api_routes(app):
        callers: dict[str, tuple[dict[str, str], set[int]]] = {
            "none": ({}, {401}),
            "made-up key": (bearer("kc_deadbeef_notarealkeyatall"), {401}),
            "not a key": ({"X-API-Key": "' OR 1=1 --"}, {401}),
            "revoked": (bearer(keys["revoked"]), {401}),
        }
        for name, granted in KEY_SCOPES.items():
            allowed = "admin" in granted or scopes <= granted
            header = bearer(keys[name]) if name != "read" else {"X-API-Key": keys[name]}
            callers[name] = (header, set() if allowed else {403})
        for who, (headers, expect) in callers.items():
            status = _call(client, method, path, headers)
            if expect and status not in expect:
                wrong.append(f"{who:12} {method} {path}: {status}, want {sorted(expect)}")
            if not expect and status in (401, 403):
                wrong.append(f"{who:12} {method} {path}: {status}, want access")
            if status >= 500:
                wrong.append(f"{who:12} {method} {path}: server error {status}")
    assert not wrong, "\n".join(wrong)


def test_matrix_dashboard_sessions(app: Any) -> None:
    """Cookie sessions: admin = admin, analyst = read, creator = nothing on /v1 (their data is filtered in the
    dashboard only); unsafe calls need the CSRF header as well."""
    admin = sign_in(TestClient(app), "admin")
    analyst = sign_in(TestClient(app), "analyst")
    creator = sign_in(TestClient(app), "creator-c0001")
    tokens = {c: csrf_token(c) for c in (admin, analyst, creator)}
    wrong: list[str] = []
    for method, path, scopes in api_routes(app):
        for who, client, granted in (
            ("admin", admin, {"admin"}),
            ("analyst", analyst, {"read"}),
            ("creator", creator, set()),
        ):
            allowed = "admin" in granted or (granted and scopes <= granted)
            status = _call(client, method, path, {"X-CSRF-Token": tokens[client]})
            if allowed and status in (401, 403):
                wrong.append(f"{who} {method} {path}: {status}, want access")
            if not allowed and status != 403:
                wrong.append(f"{who} {method} {path}: {status}, want 403")
            if method != "GET":
                # without the CSRF header, a cookie alone never authorises a write
                status = _call(client, method, path)
                if status != 403:
                    wrong.append(f"{who} {method} {path} without CSRF: {status}, want 403")
    assert not wrong, "\n".join(wrong)


def test_creator_cookie_cannot_read_other_creators_through_api(app: Any) -> None:
    creator = sign_in(TestClient(app), "creator-c0001")
    for url in ("/v1/items?creator_id=c0002", "/v1/creators/c0002", "/v1/events", "/v1/users"):
        r = creator.get(url)
        assert r.status_code == 403, (url, r.status_code)
        assert "c0002" not in r.text


ITEM_ID = re.compile(r"\bi\d{5}\b")


def test_creator_dashboard_never_shows_another_creators_data(app: Any, store: Any) -> None:
    """Every page a creator can open, and every other creator's item, room and creator page."""
    with store.engine.connect() as c:
        owner = dict(c.execute(text("SELECT id, creator_id FROM items")).all())
        rooms = [r for (r,) in c.execute(text("SELECT item_id FROM live_sessions"))]
        creators = [r for (r,) in c.execute(text("SELECT id FROM creators"))]
    mine = {i for i, cr in owner.items() if cr == "c0001"}
    assert mine and len(mine) < len(owner)
    client = sign_in(TestClient(app), "creator-c0001")
    for cid in creators:
        status = client.get(f"/creators/{cid}").status_code
        assert status == (200 if cid == "c0001" else 403), (cid, status)
    for item, cr in owner.items():
        if cr != "c0001":
            assert client.get(f"/content/{item}").status_code == 403, item
    for room in rooms:
        want = 200 if owner[room] == "c0001" else 403
        assert client.get(f"/live/{room}").status_code == want, room
    for other in (c for c in creators if c != "c0001"):
        assert client.get(f"/content?creator={other}").status_code == 403
    pages = ["/", "/content", "/live", "/creators/c0001", "/analytics/funnel", "/analytics/retention",
             "/analytics/attribution", "/analytics/revenue"]
    for page in pages:
        r = client.get(page)
        assert r.status_code == 200, (page, r.status_code)
        leaked = {i for i in ITEM_ID.findall(r.text) if i in owner and i not in mine}
        assert not leaked, f"{page} shows other creators' items {sorted(leaked)[:5]}"
    for page in ("/users", "/experiments", "/data", "/data/keys", "/recommend", "/users/u00001"):
        assert client.get(page).status_code == 403, page


def test_keys_are_stored_hashed_and_listed_without_secrets(client: TestClient, keys: dict[str, str],
                                                          store: Any) -> None:
    r = client.post("/v1/keys", json={"name": "ci", "scopes": ["read"]}, headers=bearer(keys["admin"]))
    assert r.status_code == 200
    secret = r.json()["key"]
    assert client.get("/v1/items", headers=bearer(secret)).status_code == 200
    with store.engine.connect() as c:
        rows = c.execute(text("SELECT * FROM api_keys")).all()
    dump = repr(rows)
    for s in [secret, *keys.values()]:
        assert s not in dump
        assert s.split("_", 2)[2] not in dump  # not even the random part
    listing = client.get("/v1/keys", headers=bearer(keys["admin"])).text
    assert secret not in listing and all(s not in listing for s in keys.values())
    key_id = r.json()["id"]
    assert client.delete(f"/v1/keys/{key_id}", headers=bearer(keys["admin"])).status_code == 200
    assert client.get("/v1/items", headers=bearer(secret)).status_code == 401


def test_secrets_never_logged(app: Any, keys: dict[str, str], caplog: pytest.LogCaptureFixture,
                              capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    client = TestClient(app)
    r = client.post("/v1/keys", json={"name": "x", "scopes": ["ingest"]}, headers=bearer(keys["admin"]))
    new = r.json()["key"]
    client.get("/v1/items", headers=bearer(new))
    client.get("/v1/items", headers=bearer(new + "x"))  # wrong secret
    client.post("/v1/events", json=[{"bad": 1}], headers={"X-API-Key": new})
    client.get("/v1/keys", headers=bearer(keys["admin"]))
    sign_in(TestClient(app), "admin")
    client.post("/login", data={"username": "admin", "password": "wrong-password-123", "csrf": "x"})
    out = capsys.readouterr()
    logged = "\n".join(rec.getMessage() for rec in caplog.records) + out.out + out.err
    for secret in (new, keys["admin"], "admin-pass-1", "wrong-password-123"):
        assert secret not in logged


@pytest.mark.slow  # the room stream takes ~10 s to wind down under TestClient
def test_creator_cannot_stream_another_creators_room(app: Any, store: Any) -> None:
    with store.engine.connect() as c:
        other = c.execute(
            text(
                "SELECT l.item_id FROM live_sessions l JOIN items i ON i.id = l.item_id "
                "WHERE i.creator_id != 'c0001'"
            )
        ).scalar()
    client = sign_in(TestClient(app), "creator-c0001")
    with client.websocket_connect(f"/v1/rooms/{other}/stream?snapshot_s=0.2") as ws:
        first = ws.receive_json()
    assert first["type"] == "error" and first["status"] in (401, 403)
