"""Rollups and cached results give the dashboard the same numbers as the event-log SQL, and stay current."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from knowcast.services import rollups
from knowcast.web import cache
from knowcast.web import queries as q

DAY = q.DAY_MS


def _both(fn, *args, **kw):  # type: ignore[no-untyped-def]
    """(rollup answer, event-log answer) of one query function."""
    q.USE_ROLLUPS = True
    a = fn(*args, **kw)
    q.USE_ROLLUPS = False
    try:
        b = fn(*args, **kw)
    finally:
        q.USE_ROLLUPS = True
    return a, b


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    if isinstance(a, dict):
        assert set(a) >= set(b) or set(b) >= set(a)
        for k in set(a) & set(b):
            _same(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b), (a, b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(float(a or 0), float(b or 0), rel_tol=1e-9, abs_tol=1e-6), (a, b)
    else:
        assert a == b, (a, b)


def _window(engine, off_ms: int, days: int = 14) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    _, hi = q.data_bounds(engine)
    today = (hi + off_ms) // DAY
    return (today - days + 1) * DAY - off_ms, (today + 1) * DAY - off_ms


@pytest.fixture(autouse=True)
def _fresh_memory():  # type: ignore[no-untyped-def]
    rollups.forget()
    cache.clear()
    yield
    q.USE_ROLLUPS = True


@pytest.mark.parametrize("off_min", [0, 480, -300])
def test_overview_and_revenue_match_event_log(store, off_min: int) -> None:  # type: ignore[no-untyped-def]
    eng, off = store.engine, off_min * 60_000
    lo, hi = _window(eng, off)
    a, b = _both(q.daily_kpis, eng, lo, hi, off)
    assert len(a) >= 5 and sum(r["views"] for r in a) > 0
    _same(a, b)
    _same(*_both(q.window_totals, eng, hi - 7 * DAY, hi, None, off))
    _same(*_both(q.top_items, eng, hi - 7 * DAY, hi, off_ms=off))
    _same(*_both(q.top_creators, eng, hi - 7 * DAY, hi, off_ms=off))
    a, b = _both(q.revenue_daily, eng, lo, hi, off)
    key = lambda r: (int(r["day"]), r["stream"])  # noqa: E731
    assert a and {r["stream"] for r in a} >= {"tip"}
    _same(sorted(a, key=key), sorted(b, key=key))
    _same(*_both(q.revenue_daily, eng, lo, hi, off, "c0001"))
    assert rollups.ensure_fresh(eng, off_min) is not None
    with eng.connect() as c:
        offs = {r[0] for r in c.execute(text("SELECT DISTINCT off_min FROM rollup_days"))}
    assert {0, off_min} <= offs


def test_tiers_items_and_retention_match(store) -> None:  # type: ignore[no-untyped-def]
    from knowcast.analytics.queries import retention_counts

    eng = store.engine
    _, hi = q.data_bounds(eng)
    a, b = _both(q.activity_tiers, eng, hi)
    assert {r["tier"] for r in a} >= {"payers"}
    _same(a, b)
    ids = [r["id"] for r in q._rows(eng, "SELECT id FROM items ORDER BY id LIMIT 40")]
    _same(*_both(q.item_stats, eng, ids))
    for period in ("day", "week"):
        sizes, ret = q.view_retention(eng, period)
        s2, r2 = retention_counts(eng, start_types=("view",), return_types=("view",), period=period)
        assert sorted(map(tuple, sizes.astype(int).values.tolist())) == sorted(
            map(tuple, s2.astype(int).values.tolist())
        )
        assert sorted(map(tuple, ret.astype(int).values.tolist())) == sorted(
            map(tuple, r2[["cohort", "offset", "users"]].astype(int).values.tolist())
        )
        assert len(ret) > 0 or period == "week"  # the tiny demo spans about one week


def _add_events(eng, rows: list[tuple]) -> None:  # type: ignore[no-untyped-def]
    with eng.begin() as c:
        c.execute(
            text(
                "INSERT INTO events (id, type, ts, user_id, item_id, amount, watch_seconds) "
                "VALUES (:id, :type, :ts, :u, :i, :a, :w)"
            ),
            [dict(zip(("id", "type", "ts", "u", "i", "a", "w"), r, strict=True)) for r in rows],
        )


def test_refresh_recomputes_only_changed_days(store) -> None:  # type: ignore[no-untyped-def]
    eng = store.engine
    first = rollups.refresh(eng)
    assert len(first.recomputed[0]) >= 5
    assert rollups.refresh(eng).recomputed == {}  # nothing new: nothing recomputed
    lo, hi = q.data_bounds(eng)
    old_day = lo // DAY + 1  # a late (back-dated) event on an old day, and a new day after the last one
    item = q._rows(eng, "SELECT id FROM items ORDER BY id LIMIT 1")[0]["id"]
    _add_events(
        eng,
        [
            ("late-1", "purchase", old_day * DAY + 5000, "u-late", item, 99.5, None),
            ("new-1", "view", (hi // DAY + 1) * DAY + 1000, "u-new", item, None, 30.0),
        ],
    )
    rep = rollups.refresh(eng, full=False)  # SQLite: only the days of the new rowids are checked
    assert sorted(rep.recomputed[0]) == [old_day, hi // DAY + 1]
    assert rollups.refresh(eng).recomputed == {}  # the full comparison agrees: nothing left to do
    lo2, hi2 = _window(eng, 0, days=40)
    _same(*_both(q.daily_kpis, eng, lo2, hi2, 0))
    _same(*_both(q.revenue_daily, eng, lo2, hi2, 0))
    # deleting a day's events drops (or recomputes) that day
    with eng.begin() as c:
        c.execute(text("DELETE FROM events WHERE id = 'new-1'"))
    rep = rollups.refresh(eng)
    assert rep.dropped.get(0) == [hi // DAY + 1]
    _same(*_both(q.daily_kpis, eng, lo2, hi2, 0))


def test_ensure_fresh_follows_writes_and_cache_follows_token(store) -> None:  # type: ignore[no-untyped-def]
    eng = store.engine
    t1 = rollups.ensure_fresh(eng, 0)
    calls = []

    def compute() -> dict:
        calls.append(1)
        return {"n": len(calls), "pairs": [("a", 1)]}

    v1 = cache.cached(eng, "test", "k", compute)
    assert v1 == {"n": 1, "pairs": [["a", 1]]}  # JSON round trip: what every worker reads back
    assert cache.cached(eng, "test", "k", compute) == v1 and len(calls) == 1
    cache.clear()  # another worker / a restart: read back from the kv table, not recomputed
    assert cache.cached(eng, "test", "k", compute) == v1 and len(calls) == 1
    _, hi = q.data_bounds(eng)
    _add_events(eng, [("w-1", "view", hi + 1, "u-w", None, None, 10.0)])
    rollups.forget()  # skip the CHECK_S throttle
    t2 = rollups.ensure_fresh(eng, 0)
    assert t2 != t1
    assert cache.cached(eng, "test", "k", compute)["n"] == 2
    from knowcast.web.warm import prune

    cache.cached(eng, "test", "other", compute)
    with eng.begin() as c:  # an entry of an older data version
        c.execute(
            text('UPDATE kv SET value = \'{"token": "old", "value": 1}\' WHERE key = \'web.cache.test.k\'')
        )
    assert prune(eng) == 1
    with eng.connect() as c:
        keys = {r[0] for r in c.execute(text("SELECT key FROM kv WHERE key LIKE 'web.cache.%'"))}
    assert keys == {"web.cache.test.other"}
    lo, hi2 = _window(eng, 0)
    _same(*_both(q.daily_kpis, eng, lo, hi2, 0))


def test_item_funnel_matches_analytics_sql(admin: TestClient, store) -> None:  # type: ignore[no-untyped-def]
    from knowcast.analytics.funnel import FunnelSpec, summarize_funnel
    from knowcast.analytics.queries import funnel_users
    from knowcast.web.pages import _item_funnel

    eng = store.engine
    checked = 0
    for row in q._rows(eng, "SELECT id FROM items ORDER BY id"):
        it = q.item(eng, row["id"])
        names, vals, how = _item_funnel(eng, it)
        assert how.startswith("ordered funnel")
        if it["kind"] in ("short_video", "live") and it["promotes"]:
            first = "view" if it["kind"] == "short_video" else "live_join"
            steps = [
                {"type": "impression", "where": {"item_id": it["id"]}, "name": "impression"},
                {"type": first, "where": {"item_id": it["id"]}, "name": first},
                {"type": "purchase", "where": {"item_id__in": [p["id"] for p in it["promotes"]]}},
            ]
        elif it["kind"] not in ("short_video", "live"):
            steps = [
                {"type": t, "where": {"item_id": it["id"]}, "name": t}
                for t in ("impression", "view", "click", "add_to_cart", "purchase")
            ]
        else:
            continue
        spec = FunnelSpec(steps=tuple(steps), window_ms=7 * DAY)
        res = summarize_funnel(funnel_users(eng, spec), spec).steps
        sql_vals = [int(v) for v in res[res["group"] == "(all)"].sort_values("step")["users"]]
        sql_vals += [0] * (len(steps) - len(sql_vals))
        assert vals == sql_vals, (it["id"], vals, sql_vals)
        checked += 1
        if checked >= 12:
            break
    assert checked >= 5
    r = admin.get(f"/content/{row['id']}")
    assert r.status_code == 200


def test_server_timing_reports_wall_and_cpu(admin: TestClient) -> None:
    st = admin.get("/").headers["server-timing"]
    assert "app;dur=" in st and "cpu;dur=" in st


def test_pages_render_from_rollups_and_from_event_log(admin: TestClient) -> None:
    paths = ["/", "/users", "/segments/payers", "/analytics/retention", "/analytics/revenue"]
    paths.append("/creators/c0001")
    with_rollups = {p: admin.get(p) for p in paths}
    q.USE_ROLLUPS = False
    cache.clear()
    try:
        without = {p: admin.get(p) for p in paths}
    finally:
        q.USE_ROLLUPS = True
    for p in paths:
        assert with_rollups[p].status_code == 200 == without[p].status_code, p
    # the overview's KPI cards are the same numbers either way
    import re

    cards = lambda h: re.findall(r'data-kpi="(\w+)">.*?<div class="value">([^<]+)</div>', h, re.S)  # noqa: E731
    assert cards(with_rollups["/"].text) == cards(without["/"].text) != []


@pytest.mark.slow  # seeds a demo into a private PostgreSQL database (~25 s on the shared box)
def test_rollups_match_event_log_on_postgresql() -> None:
    """The rollup SQL, the data token and the kv cache on PostgreSQL (a private database, dropped after)."""
    import os

    psycopg = pytest.importorskip("psycopg")
    from knowcast.services.demo import SIZES, seed_demo
    from knowcast.sim import SimConfig
    from knowcast.store import Store
    from tests.conftest import PG_URL

    admin_url = PG_URL.rsplit("/", 1)[0] + "/postgres"
    db = f"kc_web_rollups_{os.getpid()}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {db}")
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"PostgreSQL not reachable at {admin_url}: {type(exc).__name__}")
    st = Store(PG_URL.rsplit("/", 1)[0] + f"/{db}").migrate()
    try:
        seed_demo(st.engine, SimConfig(seed=0, **SIZES["tiny"]))
        eng = st.engine
        assert rollups.data_token(eng).startswith("p")
        assert rollups.refresh(eng, [480]).recomputed[480]
        for off in (0, 480 * 60_000):
            lo, hi = _window(eng, off)
            _same(*_both(q.daily_kpis, eng, lo, hi, off))
            _same(*_both(q.window_totals, eng, hi - 7 * DAY, hi, None, off))
            _same(*_both(q.top_items, eng, hi - 7 * DAY, hi, off_ms=off))
            _same(*_both(q.top_creators, eng, hi - 7 * DAY, hi, off_ms=off))
        _, hi = q.data_bounds(eng)
        _same(*_both(q.activity_tiers, eng, hi))
        assert len(q.view_retention(eng, "day")[1]) > 0
        assert q.creator_items(eng, "c0001")[0]["views"] > 0  # no GROUP BY on JSON tags
        q.USE_ROLLUPS = False
        assert q.popular_items(eng, hi - 14 * DAY)[0]["views"] > 0
        q.USE_ROLLUPS = True
        assert cache.cached(eng, "t", "k", lambda: {"a": [1, 2]}) == {"a": [1, 2]}
        cache.clear()
        assert cache.cached(eng, "t", "k", lambda: None) == {"a": [1, 2]}  # read back from kv
    finally:
        st.dispose()
        with psycopg.connect(admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
