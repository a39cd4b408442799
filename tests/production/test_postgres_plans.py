"""PostgreSQL production mode: the analytics and read queries use the indexes the migrations create.

The real query functions run against 200,000 events (inserted with ``generate_series``, then ANALYZE);
every SQL statement they send is captured and explained with ``EXPLAIN (FORMAT JSON)``; the plan must
read ``events`` through the index that statement was designed for, never by a sequential scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from knowcast.analytics import queries
from knowcast.analytics.funnel import FunnelSpec, Step
from knowcast.store import Store
from tests.conftest import fresh_pg_database

N_EVENTS = 200_000
N_USERS = 20_000
DAY_MS = 86_400_000
T0 = 1_750_000_000_000


@pytest.fixture(scope="module")
def pg_store() -> Iterator[Store]:
    reason = fresh_pg_database("kc_plans_test")
    if reason:
        pytest.skip(reason)
    store = Store("postgresql://postgres@127.0.0.1:5432/kc_plans_test").migrate()
    with store.engine.begin() as c:
        c.execute(
            text(
                """
                INSERT INTO events (id, type, ts, user_id, item_id, channel, amount)
                SELECT 'e' || g,
                       CASE WHEN g % 1000 = 0 THEN 'purchase' WHEN g % 50 = 0 THEN 'click' ELSE 'view' END,
                       :t0 + (g::bigint * 13000),
                       'u' || (g % :users),
                       'i' || (g % 5000),
                       CASE WHEN g % 3 = 0 THEN 'feed' ELSE 'search' END,
                       CASE WHEN g % 1000 = 0 THEN 99.0 END
                FROM generate_series(1, :n) AS g
                """
            ),
            {"t0": T0, "users": N_USERS, "n": N_EVENTS},
        )
        c.execute(text("ANALYZE events"))
    yield store
    store.dispose()


def _plans(store: Store, fn: Any) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Run ``fn()``; explain every statement it sends that reads ``events``, on its own connection at the
    moment it is sent (so temporary tables of multi-statement queries exist).

    Returns (statement, [(plan node type, index name) of each node that reads events]).
    """
    out: list[tuple[str, list[tuple[str, str | None]]]] = []

    def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        head = statement.lstrip().upper()
        if "EVENTS" not in head or not head.startswith(("SELECT", "WITH", "INSERT")) or "EXPLAIN" in head:
            return
        if head.startswith("INSERT") and "SELECT" not in head:
            return
        with cursor.connection.cursor() as cur:
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = cur.fetchone()[0]
        plan = plan if isinstance(plan, list) else json.loads(plan)
        out.append((statement, _event_scans(plan[0]["Plan"])))

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(store.engine, "before_cursor_execute", before)
    assert out, "the query function sent no statement reading events"
    return out


def _event_scans(node: dict[str, Any]) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    if node.get("Relation Name") == "events" or (node.get("Index Name") or "").startswith("ix_events"):
        found.append((node["Node Type"], node.get("Index Name")))
    for child in node.get("Plans", []):
        found += _event_scans(child)
    return found


def _assert_indexed(store: Store, fn: Any, expected: set[str]) -> None:
    for statement, scans in _plans(store, fn):
        if not scans:  # a statement over temporary tables only
            continue
        seq = [s for s in scans if s[0] == "Seq Scan"]
        assert not seq, f"sequential scan of events in:\n{statement}\nplan nodes: {scans}"
        used = {name for _, name in scans if name}
        assert used & expected, f"expected one of {expected}, plan used {used} for:\n{statement}"


def test_user_timeline_reads_the_user_index(pg_store: Store) -> None:
    from sqlalchemy import select

    from knowcast.store.models import Event

    def timeline() -> None:
        with pg_store.engine.connect() as c:
            c.execute(select(Event).where(Event.user_id == "u42").order_by(Event.ts.desc()).limit(50)).all()

    _assert_indexed(pg_store, timeline, {"ix_events_user_ts"})


def test_item_window_reads_the_item_index(pg_store: Store) -> None:
    from sqlalchemy import func, select

    from knowcast.store.models import Event

    def item_views() -> None:
        with pg_store.engine.connect() as c:
            c.execute(
                select(func.count()).where(
                    Event.item_id == "i7", Event.ts >= T0 + DAY_MS, Event.ts < T0 + 2 * DAY_MS
                )
            ).scalar()

    _assert_indexed(pg_store, item_views, {"ix_events_item_ts"})


def test_revenue_reads_money_events_by_type_index(pg_store: Store) -> None:
    df = queries.revenue_rows(pg_store.engine, start_ms=T0, end_ms=T0 + 10 * DAY_MS)
    assert int(df["events"].sum()) == sum(
        1 for g in range(1000, N_EVENTS + 1, 1000) if g * 13000 < 10 * DAY_MS
    )
    _assert_indexed(
        pg_store,
        lambda: queries.revenue_rows(pg_store.engine, start_ms=T0, end_ms=T0 + 10 * DAY_MS),
        {"ix_events_type_ts", "ix_events_type_user_ts_channel"},
    )


def test_funnel_from_a_rare_step_reads_the_funnel_index(pg_store: Store) -> None:
    spec = FunnelSpec(steps=(Step("purchase"), Step("view")), window_ms=7 * DAY_MS)
    result = queries.funnel_users(pg_store.engine, spec)
    assert len(result) == len({g % N_USERS for g in range(1000, N_EVENTS + 1, 1000)})
    _assert_indexed(
        pg_store,
        lambda: queries.funnel_users(pg_store.engine, spec),
        {"ix_events_type_user_ts_channel", "ix_events_type_ts"},
    )
