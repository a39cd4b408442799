"""SQL injection and path traversal attempts against every filter, path and file parameter.

Every string parameter of every GET route (from the OpenAPI document) gets each payload in turn; the API must
answer 200 (with nothing matched), 404 or 422, never a server error or a database message, and the tables must
be intact afterwards. The catalog's filters run on SQLite and on PostgreSQL (skipped when it is not running).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from knowcast.store import Store
from tests.conftest import pg_available, reset_pg
from tests.security.conftest import bearer, copy_store, make_app, sign_in

SQLI = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "1; DROP TABLE users; --",
    "x' UNION SELECT key_hash, name, prefix FROM api_keys --",
    "%' OR '%'='",
    "c0001' --",
    "%",
    "_",
    "\\",
    "x\x00y",  # NUL: PostgreSQL refuses it in text; must still be a clean 4xx or no match
    "é😀中文",
    "a" * 5000,
]
DB_LEAKS = re.compile(r"syntax error|sqlite3\.|psycopg|OperationalError|ProgrammingError|Traceback", re.I)
TABLES = ("users", "items", "events", "creators", "api_keys", "comments")


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as c:
        return {t: c.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, demo_db: dict[str, Any], tmp_path: Path) -> Iterator[Store]:
    """The tiny demo with the same keys, on SQLite (copied) or PostgreSQL (seeded)."""
    if request.param == "sqlite":
        s = copy_store(demo_db, tmp_path / "inj.db")
        yield s
        s.dispose()
        return
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    from knowcast.api.security import hash_key
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig
    from knowcast.store.models import ApiKey

    s = reset_pg()
    seed_demo(s.engine, SimConfig(seed=0, **SIZES["tiny"]))
    with s.sessions() as sess:
        secret = demo_db["keys"]["admin"]
        prefix = secret.split("_")[1]
        sess.add(ApiKey(name="admin", prefix=prefix, key_hash=hash_key(secret), scopes=["admin"]))
        sess.commit()
    yield s
    s.dispose()


CATALOG_FILTERS = [
    ("/v1/items", "kind", "items"),
    ("/v1/items", "creator_id", "items"),
    ("/v1/items", "q", "items"),
    ("/v1/events", "user_id", "events"),
    ("/v1/events", "item_id", "events"),
]


def test_catalog_filters_resist_injection(backend: Store, keys: dict[str, str]) -> None:
    before = _counts(backend)
    client = TestClient(make_app(backend))
    h = bearer(keys["admin"])
    bad: list[str] = []
    for path, param, field in CATALOG_FILTERS:
        for payload in SQLI:
            r = client.get(path, params={param: payload}, headers=h)
            if r.status_code >= 500 or DB_LEAKS.search(r.text):
                bad.append(f"{path}?{param}={payload[:30]!r}: {r.status_code} {r.text[:120]}")
                continue
            if r.status_code == 200 and payload not in ("%", "_", "\\") and param != "q":
                # ids never look like these payloads: an injection that matched rows would show here
                assert r.json()[field] == [], f"{path}?{param}={payload!r} matched rows"
    # LIKE wildcards are literal in the title search: '%' and '_' match only titles containing them
    for payload in ("%", "_"):
        r = client.get("/v1/items", params={"q": payload, "limit": 1000}, headers=h)
        assert all(payload in it["title"] for it in r.json()["items"])
    for param in ("since", "until", "type", "cursor"):
        for payload in SQLI:
            r = client.get("/v1/events", params={param: payload}, headers=h)
            if r.status_code not in (200, 422) or DB_LEAKS.search(r.text):
                bad.append(f"/v1/events?{param}={payload[:30]!r}: {r.status_code} {r.text[:120]}")
    assert not bad, "\n".join(bad)
    assert _counts(backend) == before


def _get_operations(app: Any) -> list[tuple[str, list[str], list[str]]]:
    """(path template, string path params, string query params) of every GET under /v1."""
    out = []
    for path, item in app.openapi()["paths"].items():
        op = item.get("get")
        if not op or not path.startswith("/v1/"):
            continue
        path_params, query_params = [], []
        for p in op.get("parameters", []):
            schema = p.get("schema", {})
            types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
            if "string" in types:
                (path_params if p["in"] == "path" else query_params).append(p["name"])
        out.append((path, path_params, query_params))
    return out


def test_every_get_parameter_resists_injection_and_traversal(store: Store, keys: dict[str, str]) -> None:
    """All routers: each string parameter, each payload (SQL and path traversal), admin key."""
    before = _counts(store)
    app = make_app(store)
    client = TestClient(app)
    h = bearer(keys["admin"])
    traversal = ["../../../../etc/passwd", "..\\..\\windows\\win.ini", "/etc/passwd", "%2e%2e%2f%2e%2e%2fetc"]
    payloads = [p for p in SQLI if "\x00" not in p] + traversal
    bad: list[str] = []
    ops = _get_operations(app)
    assert len(ops) >= 15
    for path, path_params, query_params in ops:
        base = {name: "zz-nowhere" for name in re.findall(r"\{(\w+)\}", path)}
        for payload in payloads:
            for name in path_params:
                url = path.format(**{**base, name: quote(payload, safe="")})
                r = client.get(url, headers=h)
                if r.status_code >= 500 or DB_LEAKS.search(r.text) or "root:" in r.text:
                    bad.append(f"GET {url[:80]}: {r.status_code} {r.text[:160]}")
            for name in query_params:
                r = client.get(path.format(**base), params={name: payload}, headers=h)
                if r.status_code >= 500 or DB_LEAKS.search(r.text) or "root:" in r.text:
                    bad.append(f"GET {path}?{name}={payload[:30]!r}: {r.status_code} {r.text[:160]}")
    assert not bad, "\n".join(bad)
    assert _counts(store) == before


def test_ingest_stores_injection_strings_as_data(store: Store, keys: dict[str, str]) -> None:
    client = TestClient(make_app(store))
    rows = [{"user_id": p, "attributes": {"note": p}} for p in SQLI if "\x00" not in p and len(p) < 200]
    r = client.post("/v1/users", json=rows, headers=bearer(keys["ingest"]))
    assert r.status_code == 200, r.text[:300]
    with store.engine.connect() as c:
        got = {u for (u,) in c.execute(text("SELECT id FROM users"))}
    assert {row["user_id"].strip() for row in rows} <= got
    r = client.get("/v1/users/" + quote("' OR '1'='1", safe=""), headers=bearer(keys["read"]))
    assert r.status_code == 200 and r.json()["user_id"] == "' OR '1'='1"


def test_nul_bytes_in_ingest_are_rejected_cleanly(backend: Store, keys: dict[str, str]) -> None:
    client = TestClient(make_app(backend))
    r = client.post(
        "/v1/users", json=[{"user_id": "nul\x00user"}], headers=bearer(keys["admin"])
    )
    assert r.status_code in (200, 422), r.text[:300]
    assert not DB_LEAKS.search(r.text)


TRAVERSAL_URLS = [
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/%252e%252e/%252e%252e/etc/passwd",
    "/static-plotly/..%2f..%2f..%2fetc%2fpasswd",
    "/static//etc/passwd",
]


def test_static_files_do_not_escape_their_folder(store: Store) -> None:
    client = TestClient(make_app(store))
    for url in TRAVERSAL_URLS:
        r = client.get(url)
        assert r.status_code in (400, 404, 405), (url, r.status_code)
        assert "root:" not in r.text


def test_dashboard_paths_and_upload_names_do_not_traverse(store: Store, tmp_path: Path) -> None:
    app = make_app(store)
    admin = sign_in(TestClient(app), "admin")
    urls = ("/content/..%2f..%2fetc%2fpasswd", "/creators/..%2f..", "/live/%2e%2e%2f%2e%2e", "/lang/..%2f..")
    for url in urls:
        r = admin.get(url, follow_redirects=False)
        assert r.status_code < 500 and "root:" not in r.text, (url, r.status_code)
    token = re.search(r'name="csrf" value="([^"]+)"', admin.get("/data").text).group(1)  # type: ignore[union-attr]
    target = tmp_path / "escaped.csv"
    evil = f"../../../../../../..{target}"
    r = admin.post(
        "/data/import",
        data={"csrf": token, "kind": "users", "dry_run": "1"},
        files={"file": (evil, b"user_id\nu-traversal\n", "text/csv")},
    )
    assert r.status_code == 200
    assert not target.exists()
