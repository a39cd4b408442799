"""Daily rollups of the event log for the dashboard, refreshed incrementally.

Why: the dashboard's day charts, top lists and distinct-user counts would otherwise scan hundreds of
thousands of events per page view. Two rollup tables hold per (time-zone offset, local day) aggregates:

- ``rollup_item_day``: per item, counts and amounts by event type (views, watch time, GMV, ...);
- ``rollup_user_day``: one row per user active that day (paying flag, views, payments, last view/pay time),
  so distinct users are row counts.

A day is local to a viewer's UTC offset (``(ts + offset) / 86400000``), so rollups are kept per offset in
use (offset 0 always; others are built the first time a viewer in that zone asks). ``rollup_days`` stores
each rolled-up day's signature (event count and sum of ``ts``); a refresh recomputes only the days whose
signature in the event log differs, which covers new, late (back-dated) and deleted events.

Call :func:`refresh` after an import (the cheap path when nothing changed: one signature scan per offset);
the web layer calls :func:`ensure_fresh`, which checks a cheap data token at most every ``CHECK_S`` seconds
and refreshes when it moved. SQL only; portable between SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from knowcast.store.models import KeyValue

DAY_MS = 86_400_000
#: Event types that make a user "active" on a day (everything but impressions and exposures).
ACTIVE_TYPES = (
    "view", "like", "comment", "share", "follow", "click", "add_to_cart", "purchase", "refund", "subscribe",
    "tip", "live_join", "live_leave",
)  # fmt: skip
ALL_TYPES = (*ACTIVE_TYPES, "impression", "exposure")
#: Seconds between two checks of the data token in one process (pages in between trust the last check).
CHECK_S = 5.0
STATE_KEY = "rollups.state"

_ITEM_COLS = """impressions, views, watch_s, ratio_sum, engagements, follows, clicks, carts, purchases, gmv,
    subscribes, sub_amount, tips, tip_amount, refunds, refund_amount, refund_abs, live_joins"""


def _in(values: tuple[str, ...]) -> str:
    # Fixed event-type names from this module, never user input.
    return ", ".join(f"'{v}'" for v in values)


_ITEM_SQL = f"""
INSERT INTO rollup_item_day (off_min, day, item_id, {_ITEM_COLS})
SELECT :off_min, (ts + :off) / {DAY_MS}, COALESCE(item_id, ''),
       SUM(CASE WHEN type = 'impression' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'view' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'view' THEN COALESCE(watch_seconds, 0) ELSE 0 END),
       SUM(CASE WHEN type = 'view' THEN COALESCE(watch_ratio, 0) ELSE 0 END),
       SUM(CASE WHEN type IN ('like', 'comment', 'share') THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'follow' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'click' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'add_to_cart' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'purchase' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'purchase' THEN COALESCE(amount, 0) ELSE 0 END),
       SUM(CASE WHEN type = 'subscribe' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'subscribe' THEN COALESCE(amount, 0) ELSE 0 END),
       SUM(CASE WHEN type = 'tip' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'tip' THEN COALESCE(amount, 0) ELSE 0 END),
       SUM(CASE WHEN type = 'refund' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'refund' THEN COALESCE(amount, 0) ELSE 0 END),
       SUM(CASE WHEN type = 'refund' THEN ABS(COALESCE(amount, 0)) ELSE 0 END),
       SUM(CASE WHEN type = 'live_join' THEN 1 ELSE 0 END)
FROM events WHERE {{types}} ts >= :lo AND ts < :hi
GROUP BY (ts + :off) / {DAY_MS}, COALESCE(item_id, '')
"""

_USER_SQL = f"""
INSERT INTO rollup_user_day (off_min, day, user_id, paying, views, pays, last_ts)
SELECT :off_min, (ts + :off) / {DAY_MS}, user_id,
       MAX(CASE WHEN type IN ('purchase', 'subscribe', 'tip') THEN 1 ELSE 0 END),
       SUM(CASE WHEN type = 'view' THEN 1 ELSE 0 END),
       SUM(CASE WHEN type IN ('purchase', 'subscribe') THEN 1 ELSE 0 END),
       MAX(CASE WHEN type IN ('view', 'purchase', 'subscribe') THEN ts END)
FROM events WHERE {{types}} ts >= :lo AND ts < :hi
GROUP BY (ts + :off) / {DAY_MS}, user_id
"""


@dataclass
class RefreshReport:
    """What one refresh did: per offset, the days recomputed and dropped."""

    token: str
    recomputed: dict[int, list[int]] = field(default_factory=dict)
    dropped: dict[int, list[int]] = field(default_factory=dict)
    seconds: float = 0.0


def data_token(engine: Engine) -> str:
    """A cheap value that changes when events are written: SQLite's largest rowid (O(1)); PostgreSQL's
    insert/update/delete counters of the events table. Deletions alone do not move SQLite's token; they are
    picked up by the next write or by ``refresh(engine)``."""
    with engine.connect() as c:
        if c.dialect.name == "sqlite":
            return f"r{c.execute(text('SELECT MAX(rowid) FROM events')).scalar() or 0}"
        if c.dialect.name == "postgresql":
            row = c.execute(
                text(
                    "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                    "WHERE relname = 'events' AND schemaname = current_schema()"
                )
            ).first()
            if row is not None:
                return f"p{row[0]}:{row[1]}:{row[2]}"
        n, hi = c.execute(text("SELECT COUNT(*), MAX(ts) FROM events")).one()
        return f"c{n}:{hi}"


def _signatures(conn: Any, off_min: int, days: list[int] | None = None) -> dict[int, tuple[int, int]]:
    """(count, sum of ts) per local day: of every day (one scan of a ts-holding index), or of ``days`` only
    (range reads of the (type, ts) index)."""
    off = off_min * 60_000
    group = f"GROUP BY (ts + :off) / {DAY_MS}"
    head = f"SELECT (ts + :off) / {DAY_MS} AS day, COUNT(*), SUM(ts) FROM events"
    if days is None:
        rows = list(conn.execute(text(f"{head} {group}"), {"off": off}))
    else:
        rows = []
        for lo, hi in _ranges(days):
            rows += conn.execute(
                text(f"{head} WHERE type IN ({_in(ALL_TYPES)}) AND ts >= :lo AND ts < :hi {group}"),
                {"off": off, "lo": lo * DAY_MS - off, "hi": (hi + 1) * DAY_MS - off},
            ).fetchall()
    return {int(d): (int(n), int(s) % (1 << 62)) for d, n, s in rows}


def _new_days(conn: Any, off_min: int, after_rowid: int) -> list[int]:
    """SQLite: the local days of rows inserted after ``after_rowid`` (rowids only grow on insert)."""
    rows = conn.execute(
        text(f"SELECT DISTINCT (ts + :off) / {DAY_MS} FROM events WHERE rowid > :r"),
        {"off": off_min * 60_000, "r": after_rowid},
    )
    return sorted(int(r[0]) for r in rows)


def _ranges(days: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of days as [first, last] pairs (one aggregate query per run)."""
    out: list[tuple[int, int]] = []
    for d in sorted(days):
        if out and d == out[-1][1] + 1:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def _refresh_offset(conn: Any, off_min: int, days: list[int] | None = None) -> tuple[list[int], list[int]]:
    sig = _signatures(conn, off_min, days)
    stored = {
        int(d): (int(n), int(s))
        for d, n, s in conn.execute(
            text("SELECT day, n_events, ts_sum FROM rollup_days WHERE off_min = :o"), {"o": off_min}
        )
        if days is None or int(d) in days
    }
    changed = [d for d, v in sig.items() if stored.get(d) != v]
    dropped = [d for d in stored if d not in sig]
    off = off_min * 60_000
    for lo, hi in _ranges(changed + dropped):
        p = {"o": off_min, "lo": lo, "hi": hi}
        for t in ("rollup_item_day", "rollup_user_day", "rollup_days"):
            conn.execute(text(f"DELETE FROM {t} WHERE off_min = :o AND day >= :lo AND day <= :hi"), p)  # noqa: S608
    n_days = max(len(sig), 1)
    for lo, hi in _ranges(changed):
        p = {"off_min": off_min, "off": off, "lo": lo * DAY_MS - off, "hi": (hi + 1) * DAY_MS - off}
        # A few days: read them through the (type, ts) index. Most of the log (a first build): one
        # sequential scan is several times faster than index-ordered row lookups.
        few = (hi - lo + 1) * 3 < n_days
        item_t = f"type IN ({_in(ALL_TYPES)}) AND" if few else ""
        user_t = f"type IN ({_in(ACTIVE_TYPES)}) AND"
        if not few:
            user_t = f"(type || '') IN ({_in(ACTIVE_TYPES)}) AND"
        conn.execute(text(_ITEM_SQL.format(types=item_t)), p)
        conn.execute(text(_USER_SQL.format(types=user_t)), p)
    if changed:
        conn.execute(
            text("INSERT INTO rollup_days (off_min, day, n_events, ts_sum) VALUES (:o, :d, :n, :s)"),
            [{"o": off_min, "d": d, "n": sig[d][0], "s": sig[d][1]} for d in changed],
        )
    return changed, dropped


def _state(conn: Any) -> dict[str, Any]:
    v = conn.execute(select(KeyValue.value).where(KeyValue.key == STATE_KEY)).scalar()
    return v if isinstance(v, dict) else {}


def _put_state(conn: Any, state: dict[str, Any]) -> None:
    conn.execute(delete(KeyValue).where(KeyValue.key == STATE_KEY))
    conn.execute(insert(KeyValue).values(key=STATE_KEY, value=state))


def refresh(
    engine: Engine, offsets: tuple[int, ...] | list[int] | None = None, full: bool = True
) -> RefreshReport:
    """Bring the rollups of ``offsets`` (minutes east of UTC; default: 0 and every offset already rolled
    up) in line with the event log, recomputing only days whose events changed. Safe to call any time;
    the post-import hook should call ``refresh(engine)``.

    ``full`` compares every day's signature (one scan of an index: catches deletions too). With
    ``full=False`` on SQLite, only the days of rows inserted since the last refresh are checked (what page
    views do while a live room keeps writing events); other backends always compare every day."""
    t0 = time.perf_counter()
    token = data_token(engine)
    with engine.begin() as conn:
        known = {int(r[0]) for r in conn.execute(text("SELECT DISTINCT off_min FROM rollup_days"))}
        want = sorted({0, *known, *(int(o) for o in (offsets or ()))})
        rep = RefreshReport(token=token)
        old = str(_state(conn).get("token", ""))
        for o in want:
            days = None
            if not full and o in known and old.startswith("r") and token.startswith("r"):
                if int(token[1:]) >= int(old[1:]):
                    days = _new_days(conn, o, int(old[1:]))
            changed, dropped = _refresh_offset(conn, o, days)
            if changed:
                rep.recomputed[o] = changed
            if dropped:
                rep.dropped[o] = dropped
        _put_state(conn, {"token": token, "offsets": want})
    rep.seconds = time.perf_counter() - t0
    return rep


class _Checker:
    """Per-process memory of the last check, so most page views cost no query at all."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, tuple[float, str, frozenset[int]]] = {}


_checker = _Checker()


def ensure_fresh(engine: Engine, off_min: int = 0) -> str | None:
    """The data token once the rollups of ``off_min`` are current (refreshing them if the event log moved),
    or None when the rollup tables are missing (a store not migrated to 0003): callers then use raw SQL."""
    key = str(engine.url)
    now = time.monotonic()
    last = _checker.seen.get(key)
    if last is not None and now - last[0] < CHECK_S and off_min in last[2]:
        return last[1]
    with _checker.lock:
        try:
            token = data_token(engine)
            with engine.connect() as c:
                st = _state(c)
            offsets = frozenset(int(o) for o in st.get("offsets", []))
            if st.get("token") != token or off_min not in offsets:
                try:
                    rep = refresh(engine, [off_min], full=False)
                except IntegrityError:  # another worker refreshed the same days at the same time
                    rep = RefreshReport(token=data_token(engine))
                token = rep.token
                offsets = offsets | {0, off_min}
        except (OperationalError, ProgrammingError):
            return None
        _checker.seen[key] = (time.monotonic(), token, offsets)
        return token


def forget() -> None:
    """Drop the per-process memory (tests; after restoring a database file under a running app)."""
    _checker.seen.clear()
