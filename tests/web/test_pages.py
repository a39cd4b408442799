"""Server-side behaviour of the dashboard (no browser): auth, roles, CSRF, pages, funnels, imports."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import csrf_of, sign_in

ADMIN_PAGES = [
    "/", "/content", "/content/i00001", "/content/i00115", "/users", "/segments/payers", "/users/u000013",
    "/recommend", "/recommend?user=u000013", "/live", "/live/i00115", "/experiments",
    "/experiments/checkout_v2", "/analytics/funnel", "/analytics/retention", "/analytics/attribution",
    "/analytics/revenue", "/creators", "/creators/c0001", "/data", "/data/keys",
]  # fmt: skip


def test_pages_need_sign_in(app) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    r = c.get("/content", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=%2Fcontent")
    assert "kc_csrf=" in r.headers.get("set-cookie", "")


def test_login_rejects_bad_password_and_missing_csrf(app, demo_db) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "admin", "password": "wrong-one", "csrf": token})
    assert r.status_code == 401 and "Wrong username or password" in r.text
    r = c.post(
        "/login", data={"username": "admin", "password": demo_db["passwords"]["admin"], "csrf": "forged"}
    )
    assert r.status_code == 403


def test_session_cookie_flags(app, demo_db) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(app)
    token = csrf_of(c.get("/login").text)
    r = c.post(
        "/login",
        data={"username": "admin", "password": demo_db["passwords"]["admin"], "csrf": token},
        follow_redirects=False,
    )
    cookie = r.headers["set-cookie"]
    assert "kc_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; https adds Secure
    https = TestClient(app, base_url="https://testserver")
    token = csrf_of(https.get("/login").text)
    r = https.post(
        "/login",
        data={"username": "admin", "password": demo_db["passwords"]["admin"], "csrf": token},
        follow_redirects=False,
    )
    assert "Secure" in r.headers["set-cookie"]


@pytest.mark.parametrize("path", ADMIN_PAGES)
def test_every_page_renders_for_admin(admin: TestClient, path: str) -> None:
    r = admin.get(path)
    assert r.status_code == 200, r.text[-800:]
    assert "<html" in r.text and "Traceback" not in r.text
    # every Plotly chart block carries its table and a CSV link
    assert r.text.count('class="plot"') == r.text.count('class="csv"') - r.text.count('id="sentiment-csv"')


def test_overview_numbers_match_sql(admin: TestClient, store) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    html = admin.get("/").text
    m = re.search(r'data-kpi="views">.*?<div class="value">([\d,]+)</div>', html, re.S)
    assert m
    with store.engine.connect() as c:
        hi = c.execute(text("SELECT MAX(ts) FROM events")).scalar()
        day = hi // 86_400_000
        n = c.execute(
            text("SELECT COUNT(*) FROM events WHERE type='view' AND ts / 86400000 = :d"), {"d": day}
        ).scalar()
    assert int(m.group(1).replace(",", "")) == n


def test_creator_sees_only_own_data(creator: TestClient, store) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    with store.engine.connect() as c:
        own = c.execute(text("SELECT id FROM items WHERE creator_id='c0001' LIMIT 1")).scalar()
        other = c.execute(text("SELECT id FROM items WHERE creator_id='c0002' LIMIT 1")).scalar()
        other_room = c.execute(
            text(
                "SELECT l.item_id FROM live_sessions l JOIN items i ON i.id=l.item_id "
                "WHERE i.creator_id != 'c0001'"
            )
        ).scalar()
    assert creator.get(f"/content/{own}").status_code == 200
    assert creator.get(f"/content/{other}").status_code == 403
    assert creator.get("/creators/c0002").status_code == 403
    assert creator.get("/creators/c0001").status_code == 200
    assert creator.get(f"/live/{other_room}").status_code == 403
    assert creator.get("/content?creator=c0002").status_code == 403
    listing = creator.get("/content").text
    assert other not in listing and own in listing
    for admin_only in ("/users", "/experiments", "/data", "/data/keys", "/recommend"):
        assert creator.get(admin_only).status_code == 403, admin_only


def test_analyst_cannot_manage_keys(app, demo_db) -> None:  # type: ignore[no-untyped-def]
    c = sign_in(TestClient(app), "analyst", "analyst-pass")
    assert c.get("/data").status_code == 200
    assert c.get("/data/keys").status_code == 403


def test_api_key_shown_once_and_csrf_required(admin: TestClient) -> None:
    page = admin.get("/data/keys").text
    token = csrf_of(page)
    assert admin.post("/data/keys", data={"name": "ci", "scopes": ["read"], "csrf": "bad"}).status_code == 403
    r = admin.post("/data/keys", data={"name": "ci", "scopes": ["read"], "csrf": token})
    secret = re.search(r'id="new-secret">(kc_[^<]+)<', r.text).group(1)
    assert r.headers["cache-control"] == "no-store"
    again = admin.get("/data/keys").text
    assert secret not in again and "ci" in again
    # the key works against the API
    api = TestClient(admin.app)
    assert api.get("/v1/keys", headers={"Authorization": f"Bearer {secret}"}).status_code in (200, 403)


def test_cookie_session_api_writes_need_csrf_header(admin: TestClient) -> None:
    token = csrf_of(admin.get("/data/keys").text)
    assert admin.post("/v1/keys", json={"name": "x", "scopes": ["read"]}).status_code == 403
    r = admin.post("/v1/keys", json={"name": "x", "scopes": ["read"]}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["key"].startswith("kc_")


def test_funnel_page_matches_library(admin: TestClient, store) -> None:  # type: ignore[no-untyped-def]
    from knowcast.web.pages_ops import funnel_report

    html = admin.get("/analytics/funnel?step=view&step=click&step=purchase&mode=ordered&window=7").text
    page = [int(x) for x in re.findall(r'<td class="num users">(\d+)</td>', html)]
    lib = [
        r["users"]
        for r in funnel_report(store.engine, ["view", "click", "purchase"], "ordered", 7, None)["steps"]
    ]
    assert page == lib and page[0] > page[-1] > 0


def test_import_shows_row_errors(admin: TestClient) -> None:
    token = csrf_of(admin.get("/data").text)
    csv = (
        "id,type,ts,user_id,item_id\ne1,view,2026-10-01T00:00:00Z,u000001,i00001\n"
        "e2,flyaway,notatime,u000001,i00001\n"
    )
    r = admin.post(
        "/data/import",
        data={"csrf": token, "kind": "events", "dry_run": "1"},
        files={"file": ("bad.csv", csv.encode(), "text/csv")},
    )
    assert r.status_code == 200
    assert 'id="import-errors"' in r.text and "type" in r.text and "flyaway" in r.text


def test_language_switch(admin: TestClient) -> None:
    r = admin.get("/lang/zh?next=/content")
    assert r.status_code == 200 and "内容" in r.text and 'lang="zh-CN"' in r.text


def test_experiment_create_start_stop(admin: TestClient) -> None:
    token = csrf_of(admin.get("/experiments").text)
    r = admin.post(
        "/experiments",
        data={
            "csrf": token,
            "key": "web_test",
            "variants": "control,treatment",
            "weights": "50,50",
            "decision_metric": "conversion",
            "guardrails": "",
        },
    )
    assert r.status_code == 200 and "web_test" in r.text, r.text[-1500:]
    r = admin.post("/experiments/web_test/start", data={"csrf": token})
    assert "running" in r.text
    r = admin.post("/experiments/web_test/stop", data={"csrf": token})
    assert "stopped" in r.text
