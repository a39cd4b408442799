"""SQL for analytics: SQLAlchemy Core over the store's tables, portable between SQLite and PostgreSQL.

Every query here aggregates in the database and returns small tables (per user, per cohort, per group);
no function loads the raw event log into Python. Times are epoch milliseconds (BIGINT), so day and week
buckets are integer divisions that index and compare the same way on both backends.

The funnel query is built as a chain of CTEs: per-user first step-1 time by one GROUP BY (scanning only
events of step 1's type through the (type, ts) index or a table scan), then for each later step a join of
the previous step's users with that step's events under the order and window constraints, again one
GROUP BY per step. The later steps are rare event types, so they cost little.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from sqlalchemy import (
    Engine,
    and_,
    case,
    exists,
    func,
    inspect,
    literal,
    null,
    or_,
    select,
)
from sqlalchemy.sql import ColumnElement, Select

from knowcast.analytics.funnel import EVENT_BREAKDOWNS, Exclusion, FunnelSpec, Step, parse_filter
from knowcast.domain import PAID_KINDS
from knowcast.store.models import Comment, Creator, Event, Exposure, Item, Promotes, User

events = Event.__table__
items = Item.__table__
users = User.__table__
promotes = Promotes.__table__
comments = Comment.__table__
creators = Creator.__table__
exposures = Exposure.__table__

DAY_MS = 86_400_000
PERIOD_MS = {"day": DAY_MS, "week": 7 * DAY_MS, "hour": 3_600_000}


def _frame(engine: Engine, stmt: Select, columns: list[str] | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        res = conn.execute(stmt)
        rows = res.fetchall()
        cols = columns or list(res.keys())
    return pd.DataFrame([tuple(r) for r in rows], columns=cols)


# ---------------------------------------------------------------- conditions

_OPS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


#: The funnel index of the schema (migration 0004): step events by (type, user, time), and the channel so
#: that the first step's channel, the usual breakdown, is read from the index too.
FUNNEL_INDEX_COLUMNS = ("type", "user_id", "ts", "channel")


def funnel_index_columns(conn: Any) -> tuple[str, ...]:
    """Columns of the longest events index led by (type, user_id), the one funnels read fastest; ()."""
    found = [
        tuple(ix["column_names"])
        for ix in inspect(conn).get_indexes("events")
        if list(ix["column_names"][:2]) == ["type", "user_id"]
    ]
    return max(found, key=len, default=())


def has_funnel_index(conn: Any) -> bool:
    """Whether the events table has an index led by (type, user_id): the one funnels read fastest."""
    return bool(funnel_index_columns(conn))


def step_condition(ev: Any, step: Step | Exclusion, hide_type: bool = False) -> ColumnElement[bool]:
    """The WHERE clause matching one step's events on the events table (or alias) ``ev``.

    ``hide_type`` compares ``type || ''``: the same rows, but no index on ``type`` can be chosen.
    """
    types = step.types if isinstance(step, Step) else (step.type,)
    tcol = ev.c.type.op("||")(literal("")) if hide_type else ev.c.type
    conds: list[ColumnElement[bool]] = [tcol == types[0] if len(types) == 1 else tcol.in_(types)]
    filters = (
        step.filters() if isinstance(step, Step) else [parse_filter(k, v) for k, v in step.where.items()]
    )
    for col, op, val in filters:
        c = ev.c[col]
        conds.append(c.in_(val) if op == "in" else _OPS[op](c, val))
    kinds = step.kinds if isinstance(step, Step) else None
    if kinds:
        conds.append(ev.c.item_id.in_(select(items.c.id).where(items.c.kind.in_(kinds))))
    return and_(*conds)


def _range(ev: Any, start_ms: int | None, end_ms: int | None) -> list[ColumnElement[bool]]:
    out = []
    if start_ms is not None:
        out.append(ev.c.ts >= start_ms)
    if end_ms is not None:
        out.append(ev.c.ts < end_ms)
    return out


# ---------------------------------------------------------------- funnels


def funnel_users_stmt(
    spec: FunnelSpec,
    dialect: str = "postgresql",
    covering: bool = True,
    index_columns: tuple[str, ...] = FUNNEL_INDEX_COLUMNS,
) -> Select:
    """One row per user who entered the funnel: user_id, group, t1..tn (NULL when not reached), excluded.

    ``dialect`` picks the ordered funnel's plan shape ("sqlite" or "postgresql", see ``_ordered_stmt``);
    ``covering`` tells whether events has the (type, user_id, ts) index (see ``has_funnel_index``) and
    ``index_columns`` which columns that index holds (``funnel_index_columns``).
    """
    if spec.mode == "ordered":
        return _ordered_stmt(spec, dialect, covering, index_columns)
    if spec.mode == "strict":
        base, tcols = _strict_ctes(spec)
    else:
        base, tcols = _any_order_ctes(spec)
    group = _breakdown_expr(spec, base)
    return _funnel_select(spec, base, tcols, group)


def _funnel_select(spec: FunnelSpec, base: Any, tcols: list[Any], group: Any) -> Select:
    """The per-user output row: user_id, group, t1..tn and, with exclusions, the excluded flag."""
    cols: list[Any] = [base.c.user_id, group.label("group") if group is not None else null().label("group")]
    cols += [c.label(f"t{k}") for k, c in enumerate(tcols, start=1)]
    if spec.exclusions:
        flags = [_exclusion_flag(spec, e, base, tcols) for e in spec.exclusions]
        cols.append(case((or_(*flags), 1), else_=0).label("excluded"))
    return select(*cols)


def _first_step_cte(spec: FunnelSpec) -> Any:
    """Each entering user's first step-1 time: one GROUP BY user_id over the step-1 events.

    With the (type, user_id, ts) index both backends read it in (user_id, ts) order without touching the
    table: an index-only range scan with a streaming aggregate, no sort and no hash table.
    """
    e1 = events.alias("e1")
    return (
        select(e1.c.user_id, func.min(e1.c.ts).label("t1"))
        .where(step_condition(e1, spec.steps[0]), *_range(e1, spec.start_ms, spec.end_ms))
        .group_by(e1.c.user_id)
        .cte("s1")
        .prefix_with("MATERIALIZED")
    )


def _first_step_group_cte(spec: FunnelSpec) -> Any:
    """PostgreSQL: each entering user's first step-1 time and the breakdown column of that event.

    ``DISTINCT ON (user_id) ... ORDER BY user_id, ts, <column>``: the first row per user in the funnel
    index's own order, so with the column in the index it is one index-only pass that keeps a row per user
    (no sort, no table read). The smallest value among same-millisecond events is kept (NULL last), the
    rule of ``_breakdown_expr``'s MIN.
    """
    e1 = events.alias("e1")
    col = e1.c[spec.breakdown]
    return (
        select(e1.c.user_id, e1.c.ts.label("t1"), col.label("grp"))
        .where(step_condition(e1, spec.steps[0]), *_range(e1, spec.start_ms, spec.end_ms))
        .distinct(e1.c.user_id)
        .order_by(e1.c.user_id, e1.c.ts, col)
        .cte("s1")
        .prefix_with("MATERIALIZED")
    )


def _step_window(spec: FunnelSpec, k: int, ts: Any, prev: Any) -> list[ColumnElement[bool]]:
    """Step k's event time ``ts`` against the previous step: at or after it, inside both windows."""
    tprev = prev.c[f"t{k - 1}"]
    conds = [ts >= tprev, ts <= prev.c.t1 + spec.window_ms]
    window = spec.steps[k - 1].window_ms
    if window is not None:
        conds.append(ts <= tprev + window)
    return conds


def _ordered_stmt(spec: FunnelSpec, dialect: str, covering: bool, index_columns: tuple[str, ...]) -> Select:
    """The ordered funnel as one SELECT over a chain of materialised CTEs, shaped per backend.

    Both shapes compute the same thing: t1 = the user's first step-1 time (``_first_step_cte``), then
    t_k = the first step-k event in [t_{k-1}, t1 + window] (and the step's own window), per user.

    SQLite (nested loops only, no planner statistics): every later step is a correlated ``MIN(ts)`` per
    user that is still in the funnel, which the (type, user_id, ts) index answers with one seek, so a step
    costs one seek per surviving user whatever the number of step-k events. Each CTE carries all entering
    users (NULL from the step they missed on, where the ``CASE`` skips the seek), so no join is needed at
    the end. MATERIALIZED makes SQLite compute each step once instead of inlining (and so repeating) the
    previous step's subquery. The breakdown is the same kind of seek at (user, t1).

    PostgreSQL: each later step is one join of the surviving users with that step's events and one GROUP
    BY (the planner merges the step's index range with the users); a per-user subquery costs about as much
    there. The steps are outer-joined once at the end. When the breakdown is an event column that the
    funnel index holds (the channel, migration 0004), step 1 reads it with t1 (``_first_step_group_cte``):
    at 10M events the whole statement then took 1.9-2.0 s of server CPU against 3.3 s with the lookup
    below. Otherwise the breakdown is a per-user lookup of the step-1 event(s) at t1, done in t1 order
    through the (type, ts) index: ~1.1 s of CPU at 10M events against ~2.2 s for lookups in user order
    (random heap pages) and ~4.4 s for a hash join over a scan of the whole table, which the planner
    preferred (it cannot estimate the CTEs' sizes).
    """
    grouped = dialect != "sqlite" and spec.breakdown is not None and spec.breakdown in index_columns[2:]
    s1 = _first_step_group_cte(spec) if grouped else _first_step_cte(spec)
    if dialect == "sqlite":
        prev = s1
        for k in range(2, spec.n + 1):
            ek = events.alias(f"e{k}")
            # Without the covering index, hide the type test so that SQLite seeks the user's own
            # (user_id, ts) range instead of walking every step-k event in the window via (type, ts).
            cond = step_condition(ek, spec.steps[k - 1], hide_type=not covering)
            first = (
                select(func.min(ek.c.ts))
                .where(ek.c.user_id == prev.c.user_id, cond, *_step_window(spec, k, ek.c.ts, prev))
                .scalar_subquery()
            )
            tk = first if k == 2 else case((prev.c[f"t{k - 1}"].is_not(None), first), else_=null())
            prev = select(*prev.c, tk.label(f"t{k}")).cte(f"s{k}").prefix_with("MATERIALIZED")
        base = prev
        return _funnel_select(spec, base, [base.c[f"t{k}"] for k in range(1, spec.n + 1)],
                              _breakdown_expr(spec, base))  # fmt: skip
    chain = [s1]
    prev = s1
    for k in range(2, spec.n + 1):
        ek = events.alias(f"e{k}")
        prev = (
            select(prev.c.user_id, prev.c.t1, func.min(ek.c.ts).label(f"t{k}"))
            .select_from(ek.join(prev, prev.c.user_id == ek.c.user_id))
            .where(step_condition(ek, spec.steps[k - 1]), *_step_window(spec, k, ek.c.ts, prev))
            .group_by(prev.c.user_id, prev.c.t1)
            .cte(f"s{k}")
            .prefix_with("MATERIALIZED")
        )
        chain.append(prev)
    j = s1
    for sk in chain[1:]:
        j = j.outerjoin(sk, sk.c.user_id == s1.c.user_id)
    tcols = [s1.c.t1] + [sk.c[f"t{k}"] for k, sk in enumerate(chain[1:], start=2)]
    if grouped:
        base = select(s1.c.user_id, s1.c.grp, *[c.label(f"t{k}") for k, c in enumerate(tcols, start=1)])
        fu = base.select_from(j).cte("fu")
        return _funnel_select(spec, fu, [fu.c[f"t{k}"] for k in range(1, spec.n + 1)], fu.c.grp)
    # Materialised in t1 order: the breakdown lookups then walk the (type, ts) index and the table (stored
    # roughly in arrival order) forwards, instead of jumping to a random heap page for every user.
    base = (
        select(s1.c.user_id, *[c.label(f"t{k}") for k, c in enumerate(tcols, start=1)])
        .select_from(j)
        .order_by(s1.c.t1)
        .cte("fu")
        .prefix_with("MATERIALIZED")
    )
    return _funnel_select(spec, base, [base.c[f"t{k}"] for k in range(1, spec.n + 1)],
                          _breakdown_expr(spec, base, by_time=True))  # fmt: skip


def _strict_ctes(spec: FunnelSpec) -> tuple[Any, list[Any]]:
    """Strict order in one window pass: from each step-1 event, LEAD looks 1..n-1 events ahead.

    A chain starting at a step-1 event reaches step k when the next k-1 events of the user are steps
    2..k in order, inside the windows. Per user, each step's time is the earliest such chain's.
    """
    ev = events.alias("ev")
    n = spec.n
    w = {"partition_by": ev.c.user_id, "order_by": (ev.c.ts, ev.c.id)}
    cols: list[Any] = [
        ev.c.user_id,
        ev.c.ts,
        case((step_condition(ev, spec.steps[0]), 1), else_=0).label("m1"),
    ]
    for k in range(2, n + 1):
        flag = case((step_condition(ev, spec.steps[k - 1]), 1), else_=0)
        cols.append(func.lead(flag, k - 1).over(**w).label(f"m{k}"))
        cols.append(func.lead(ev.c.ts, k - 1).over(**w).label(f"l{k}"))
    seq = select(*cols).cte("seq")
    ok = [seq.c.m1 == 1, *_range(seq, spec.start_ms, spec.end_ms)]
    times = [func.min(case((and_(*ok), seq.c.ts))).label("t1")]
    prev_t = seq.c.ts
    for k in range(2, n + 1):
        step = spec.steps[k - 1]
        lk = seq.c[f"l{k}"]
        ok = ok + [seq.c[f"m{k}"] == 1, lk <= seq.c.ts + spec.window_ms]
        if step.window_ms is not None:
            ok.append(lk <= prev_t + step.window_ms)
        times.append(func.min(case((and_(*ok), lk))).label(f"t{k}"))
        prev_t = lk
    base = select(seq.c.user_id, *times).group_by(seq.c.user_id).having(func.max(seq.c.m1) == 1).cte("fu")
    return base, [base.c[f"t{k}"] for k in range(1, n + 1)]


def _any_order_ctes(spec: FunnelSpec) -> tuple[Any, list[Any]]:
    ev = events.alias("ev")
    types = sorted({t for s in spec.steps for t in s.types})
    firsts = [
        func.min(case((step_condition(ev, s), ev.c.ts), else_=null())).label(f"t{k}")
        for k, s in enumerate(spec.steps, start=1)
    ]
    base = (
        select(ev.c.user_id, *firsts)
        .where(ev.c.type.in_(types), *_range(ev, spec.start_ms, spec.end_ms))
        .group_by(ev.c.user_id)
        .cte("fu")
    )
    return base, [base.c[f"t{k}"] for k in range(1, spec.n + 1)]


def _breakdown_expr(spec: FunnelSpec, base: Any, by_time: bool = False) -> ColumnElement[Any] | None:
    """The group of each user: a property of their first step-1 event, their creator, segment or variant.

    A first-event property is the MIN over the user's step-1 events at t1 (MIN breaks same-millisecond
    ties). ``by_time`` compares ``user_id || ''`` so that the lookup goes through the (type, ts) index
    instead of a per-user index: see ``_ordered_stmt`` for when that is faster.
    """
    b = spec.breakdown
    if b is None:
        return None
    if b.startswith("segment:"):
        key = b.split(":", 1)[1]
        return (
            select(users.c.attributes[key].as_string()).where(users.c.id == base.c.user_id).scalar_subquery()
        )
    if b.startswith("variant:"):
        key = b.split(":", 1)[1]
        return (
            select(exposures.c.variant)
            .where(exposures.c.user_id == base.c.user_id, exposures.c.experiment_key == key)
            .scalar_subquery()
        )
    eb = events.alias("eb")
    user = eb.c.user_id.op("||")(literal("")) if by_time else eb.c.user_id
    first = and_(user == base.c.user_id, eb.c.ts == base.c.t1, step_condition(eb, spec.steps[0]))
    if b in EVENT_BREAKDOWNS:
        return select(func.min(eb.c[b])).where(first).scalar_subquery()
    # creator of the first step-1 event's item
    return (
        select(func.min(items.c.creator_id))
        .select_from(eb.join(items, items.c.id == eb.c.item_id))
        .where(first)
        .scalar_subquery()
    )


def _exclusion_flag(spec: FunnelSpec, e: Exclusion, base: Any, tcols: list[Any]) -> ColumnElement[bool]:
    ex = events.alias("ex")
    lo = tcols[e.after - 1]
    before = e.before if e.before is not None else spec.n
    hi = func.coalesce(tcols[before - 1], tcols[0] + spec.window_ms)
    return exists(
        select(literal(1)).where(
            ex.c.user_id == base.c.user_id, step_condition(ex, e), ex.c.ts > lo, ex.c.ts < hi
        )
    )


#: SQLite: bytes of the database file a funnel reads through mmap instead of read() calls into the page
#: cache (SQLite caps it at its compile-time maximum, usually 2 GiB); put back when the funnel is done.
FUNNEL_MMAP_BYTES = 2**31
#: PostgreSQL settings for the funnel's transaction only (``SET LOCAL``), measured at 10M events on a
#: 2-core host (docs/benchmarks/analytics.md):
#: - work_mem: the per-step hash tables and sorts of ~250k users fit in memory several times over;
#: - jit off: compiling the statement's ~120 expressions took 2.7 s, more than the steps it would speed up;
#: - random_page_cost 1.1 (ordered funnels): the event indexes are read from memory, not a spinning disk;
#:   at the default 4 the planner reads step 1 by a parallel scan of the whole table (5-6 s) instead of the
#:   (type, user_id, ts) index range in user order (1.0 s);
#: - no parallel workers (ordered funnels): the plan is ordered index ranges, merges and per-user lookups;
#:   only step 1 can be split, and merging the workers' partial groups cost more than it saved.
FUNNEL_PG_SETTINGS = {"work_mem": "'256MB'", "jit": "off"}
ORDERED_PG_SETTINGS = {"random_page_cost": "1.1", "max_parallel_workers_per_gather": "0"}


def funnel_users(
    engine: Engine, spec: FunnelSpec, *, index_columns: tuple[str, ...] | None = None
) -> pd.DataFrame:
    """Per-user step times of a funnel, computed in the database by one statement (``funnel_users_stmt``).

    ``index_columns``: plan as if the funnel index held only these columns (default: what it holds), e.g.
    ``("type", "user_id", "ts")`` for the PostgreSQL shape before migration 0004 (benchmarks compare them).
    """
    cols = ["user_id", "group"] + [f"t{k}" for k in range(1, spec.n + 1)]
    cols += ["excluded"] if spec.exclusions else []
    with engine.begin() as conn:
        dialect = conn.dialect.name
        if index_columns is None:
            index_columns = funnel_index_columns(conn)
        covering = bool(index_columns) if dialect == "sqlite" else True
        stmt = funnel_users_stmt(spec, dialect, covering, index_columns)
        with _funnel_session(conn, spec):
            # The DBAPI's plain tuples: one Row object per entering user would cost more than the rows.
            raw = conn.execute(stmt).cursor.fetchall()
    columns = list(zip(*raw, strict=True)) if raw else [()] * len(cols)
    df = pd.DataFrame({c: list(v) for c, v in zip(cols, columns, strict=True)}, columns=cols)
    for k in range(1, spec.n + 1):
        df[f"t{k}"] = pd.to_numeric(df[f"t{k}"], errors="coerce")
    return df


@contextmanager
def _funnel_session(conn: Any, spec: FunnelSpec) -> Iterator[None]:
    """Per-connection settings for one funnel statement, put back afterwards.

    SQLite: the funnel reads index ranges and rows all over a large file; memory-mapping it saves a
    read() and a page copy per page. PostgreSQL: ``SET LOCAL`` (this transaction only) the settings above.
    """
    if conn.dialect.name == "sqlite":
        before = conn.exec_driver_sql("PRAGMA mmap_size").scalar()
        conn.exec_driver_sql(f"PRAGMA mmap_size={FUNNEL_MMAP_BYTES}")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"PRAGMA mmap_size={int(before or 0)}")
        return
    if conn.dialect.name == "postgresql":
        settings = {**FUNNEL_PG_SETTINGS, **(ORDERED_PG_SETTINGS if spec.mode == "ordered" else {})}
        for name, value in settings.items():  # fixed names and values from this module
            conn.exec_driver_sql(f"SET LOCAL {name} = {value}")
    yield


# ---------------------------------------------------------------- retention and stickiness


def retention_counts(
    engine: Engine,
    *,
    start_types: tuple[str, ...] | None = None,
    return_types: tuple[str, ...] | None = None,
    period: str = "day",
    kind: str = "first_time",
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cohort sizes (cohort, users) and returns (cohort, offset, users) aggregated in the database.

    first_time: a user's cohort is the period of their first start event. recurring: every period in
    which the user did a start event starts a cohort entry (Mixpanel's recurring retention).
    """
    if period not in ("day", "week"):
        raise ValueError(f"period must be 'day' or 'week', got {period!r}")
    if kind not in ("first_time", "recurring"):
        raise ValueError(f"kind must be 'first_time' or 'recurring', got {kind!r}")
    p = PERIOD_MS[period]
    es, er = events.alias("es"), events.alias("er")
    sc = [es.c.type.in_(start_types)] if start_types else []
    rc = [er.c.type.in_(return_types)] if return_types else []
    if kind == "first_time":
        cohort = (
            select(es.c.user_id, func.min(es.c.ts // p).label("cp"))
            .where(*sc, *_range(es, start_ms, end_ms))
            .group_by(es.c.user_id)
            .cte("cohort")
        )
    else:
        cohort = (
            select(es.c.user_id, (es.c.ts // p).label("cp"))
            .where(*sc, *_range(es, start_ms, end_ms))
            .distinct()
            .cte("cohort")
        )
    act = select(er.c.user_id, (er.c.ts // p).label("ap")).where(*rc).distinct().cte("act")
    sizes = select(cohort.c.cp.label("cohort"), func.count().label("users")).group_by(cohort.c.cp)
    off = (act.c.ap - cohort.c.cp).label("offset")
    ret = (
        select(cohort.c.cp.label("cohort"), off, func.count().label("users"))
        .select_from(cohort.join(act, and_(act.c.user_id == cohort.c.user_id, act.c.ap > cohort.c.cp)))
        .group_by(cohort.c.cp, act.c.ap - cohort.c.cp)
    )
    return _frame(engine, sizes), _frame(engine, ret)


def active_users(
    engine: Engine,
    *,
    types: tuple[str, ...] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    mau_days: int = 30,
) -> pd.DataFrame:
    """Per day: DAU and the distinct users over the trailing ``mau_days`` days (MAU), in the database."""
    ev = events.alias("ev")
    cond = [ev.c.type.in_(types)] if types else []
    ud = (
        select(ev.c.user_id, (ev.c.ts // DAY_MS).label("d"))
        .where(*cond, *_range(ev, start_ms, end_ms))
        .distinct()
    )
    ud = ud.cte("ud")
    days = select(ud.c.d).distinct().cte("days")
    dau = select(ud.c.d.label("day"), func.count().label("dau")).group_by(ud.c.d).cte("dau")
    ud2 = ud.alias("ud2")
    mau = (
        select(days.c.d.label("day"), func.count(func.distinct(ud2.c.user_id)).label("mau"))
        .select_from(days.join(ud2, and_(ud2.c.d <= days.c.d, ud2.c.d > days.c.d - mau_days)))
        .group_by(days.c.d)
        .cte("mau")
    )
    stmt = (
        select(dau.c.day, dau.c.dau, mau.c.mau)
        .select_from(dau.join(mau, mau.c.day == dau.c.day))
        .order_by(dau.c.day)
    )
    return _frame(engine, stmt)


# ---------------------------------------------------------------- money


def revenue_rows(engine: Engine, *, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """Money events aggregated by day, type, item kind, creator, item, channel and live room presence."""
    ev = events.alias("ev")
    money = ("purchase", "refund", "subscribe", "tip")
    day = (ev.c.ts // DAY_MS).label("day")
    in_live = case((ev.c.room_id.is_not(None), 1), else_=0).label("in_live")
    stmt = (
        select(
            day,
            ev.c.type,
            items.c.kind,
            items.c.creator_id,
            ev.c.item_id,
            ev.c.channel,
            in_live,
            func.count().label("events"),
            func.count(func.distinct(ev.c.user_id)).label("payers"),
            func.coalesce(func.sum(ev.c.amount), 0.0).label("amount"),
        )
        .select_from(ev.outerjoin(items, items.c.id == ev.c.item_id))
        .where(ev.c.type.in_(money), *_range(ev, start_ms, end_ms))
        .group_by(day, ev.c.type, items.c.kind, items.c.creator_id, ev.c.item_id, ev.c.channel, in_live)
    )
    return _frame(engine, stmt)


def payer_totals(
    engine: Engine, *, start_ms: int | None = None, end_ms: int | None = None
) -> dict[str, float]:
    """Active users, paying users and net revenue over the range (for ARPU / ARPPU / paying ratio)."""
    ev = events.alias("ev")
    rng = _range(ev, start_ms, end_ms)
    signed = case((ev.c.type == "refund", -func.abs(ev.c.amount)), else_=ev.c.amount)
    stmt = select(
        func.count(func.distinct(ev.c.user_id)).label("active"),
        func.count(
            func.distinct(case((ev.c.type.in_(("purchase", "subscribe", "tip")), ev.c.user_id)))
        ).label("payers"),
        func.coalesce(
            func.sum(case((ev.c.type.in_(("purchase", "subscribe", "tip", "refund")), signed))), 0.0
        ).label("net"),
        func.count(case((ev.c.type == "purchase", 1))).label("orders"),
        func.coalesce(func.sum(case((ev.c.type == "purchase", ev.c.amount))), 0.0).label("gross_purchases"),
    ).where(*rng)
    with engine.connect() as conn:
        r = conn.execute(stmt).one()
    return {k: float(v or 0) for k, v in r._mapping.items()}


def user_month_amounts(
    engine: Engine, types: tuple[str, ...] = ("subscribe",), month_days: int = 30
) -> pd.DataFrame:
    """Per user and 30-day period: summed amount of ``types`` events (the subscription ledger)."""
    ev = events.alias("ev")
    m = (ev.c.ts // (month_days * DAY_MS)).label("month")
    stmt = (
        select(ev.c.user_id, m, func.sum(ev.c.amount).label("amount"))
        .where(ev.c.type.in_(types))
        .group_by(ev.c.user_id, m)
    )
    return _frame(engine, stmt)


def transactions(engine: Engine, types: tuple[str, ...] = ("purchase",)) -> pd.DataFrame:
    """Per user and day: orders and amount (the input of RFM and cohort revenue; aggregated by day)."""
    ev = events.alias("ev")
    d = (ev.c.ts // DAY_MS).label("day")
    stmt = (
        select(ev.c.user_id, d, func.count().label("orders"), func.sum(ev.c.amount).label("amount"))
        .where(ev.c.type.in_(types))
        .group_by(ev.c.user_id, d)
    )
    return _frame(engine, stmt)


# ---------------------------------------------------------------- attribution inputs


def channel_touches(
    engine: Engine,
    touch_types: tuple[str, ...] = ("view", "click", "live_join"),
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> pd.DataFrame:
    """Channel touches collapsed per user, day and channel (first ts): the raw material of journeys.

    Collapsing to one touch per (user, day, channel) keeps the result small while keeping the order of
    channels a user met, which is what path models need.
    """
    ev = events.alias("ev")
    d = ev.c.ts // DAY_MS
    stmt = (
        select(ev.c.user_id, func.min(ev.c.ts).label("ts"), ev.c.channel)
        .where(ev.c.type.in_(touch_types), ev.c.channel.is_not(None), *_range(ev, start_ms, end_ms))
        .group_by(ev.c.user_id, d, ev.c.channel)
    )
    return _frame(engine, stmt)


def conversions(engine: Engine, *, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    ev = events.alias("ev")
    stmt = select(ev.c.user_id, ev.c.ts, func.coalesce(ev.c.amount, 0.0).label("value")).where(
        ev.c.type == "purchase", *_range(ev, start_ms, end_ms)
    )
    return _frame(engine, stmt)


def content_touches(
    engine: Engine,
    lookback_ms: int,
    view_types: tuple[str, ...] = ("view", "live_join"),
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Purchases, and for each the promoters of the bought item that the buyer saw within the lookback.

    Returns (purchases: purchase_id, user_id, item_id, amount, ts; touches: purchase_id, promoter_id, ts,
    purchase_ts) with one touch per (purchase, promoter): the latest view before the purchase.
    """
    p = events.alias("p")
    v = events.alias("v")
    pr = promotes.alias("pr")
    rng = _range(p, start_ms, end_ms)
    purchases = select(
        p.c.id.label("purchase_id"),
        p.c.user_id,
        p.c.item_id,
        func.coalesce(p.c.amount, 0.0).label("amount"),
        p.c.ts,
    ).where(p.c.type == "purchase", *rng)
    touches = (
        select(
            p.c.id.label("purchase_id"),
            pr.c.promoter_id,
            func.max(v.c.ts).label("ts"),
            p.c.ts.label("purchase_ts"),
        )
        .select_from(
            p.join(pr, pr.c.item_id == p.c.item_id).join(
                v,
                and_(
                    v.c.user_id == p.c.user_id,
                    v.c.item_id == pr.c.promoter_id,
                    v.c.type.in_(view_types),
                    v.c.ts <= p.c.ts,
                    v.c.ts >= p.c.ts - lookback_ms,
                ),
            )
        )
        .where(p.c.type == "purchase", *rng)
        .group_by(p.c.id, pr.c.promoter_id, p.c.ts)
    )
    return _frame(engine, purchases), _frame(engine, touches)


def promoter_views(engine: Engine, *, start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """Views and unique viewers of each promoter (an item that promotes something)."""
    v = events.alias("v")
    prom = select(promotes.c.promoter_id).distinct().subquery()
    stmt = (
        select(
            v.c.item_id.label("promoter_id"),
            func.count().label("views"),
            func.count(func.distinct(v.c.user_id)).label("viewers"),
        )
        .where(
            v.c.type.in_(("view", "live_join")),
            v.c.item_id.in_(select(prom.c.promoter_id)),
            *_range(v, start_ms, end_ms),
        )
        .group_by(v.c.item_id)
    )
    return _frame(engine, stmt)


# ---------------------------------------------------------------- creators


ENGAGE_TYPES = ("view", "like", "comment", "share", "follow", "click", "purchase", "tip", "live_join")


def creator_item_stats(
    engine: Engine, *, start_ms: int | None = None, end_ms: int | None = None
) -> pd.DataFrame:
    """Per item: kind, creator, tags and counts of each engagement type, viewers and mean watch ratio.

    ``revenue`` is purchases and tips on the item net of its refunds.
    """
    ev = events.alias("ev")
    counts = [func.count(case((ev.c.type == t, 1))).label(t) for t in ENGAGE_TYPES]
    stats = (
        select(
            ev.c.item_id,
            *counts,
            func.count(func.distinct(case((ev.c.type.in_(("view", "live_join")), ev.c.user_id)))).label(
                "viewers"
            ),
            func.avg(case((ev.c.type == "view", ev.c.watch_ratio))).label("watch_ratio"),
            func.count(case((and_(ev.c.type == "view", ev.c.watch_ratio >= 0.9), 1))).label("completed"),
            func.coalesce(
                func.sum(
                    case(
                        (ev.c.type.in_(("purchase", "tip")), ev.c.amount),
                        (ev.c.type == "refund", -func.abs(ev.c.amount)),
                    )
                ),
                0.0,
            ).label("revenue"),
        )
        .where(
            ev.c.item_id.is_not(None), ev.c.type.in_((*ENGAGE_TYPES, "refund")), *_range(ev, start_ms, end_ms)
        )
        .group_by(ev.c.item_id)
        .subquery()
    )
    stmt = select(
        items.c.id.label("item_id"),
        items.c.kind,
        items.c.creator_id,
        items.c.tags,
        items.c.created_at,
        *[stats.c[c] for c in stats.c.keys() if c != "item_id"],
    ).select_from(items.join(stats, stats.c.item_id == items.c.id))
    df = _frame(engine, stmt)
    return df


def creator_hour_stats(engine: Engine, creator_id: str | None = None) -> pd.DataFrame:
    """Per creator, item kind and hour of day (UTC): views and engagement events.

    An event in a live room (a purchase or a tip there) counts for the live, not for the item bought, so a
    live's hours carry the sales it made.
    """
    ev = events.alias("ev")
    hour = ((ev.c.ts // 3_600_000) % 24).label("hour")
    cond = [items.c.creator_id == creator_id] if creator_id else []
    stmt = (
        select(
            items.c.creator_id,
            items.c.kind,
            hour,
            func.count(case((ev.c.type.in_(("view", "live_join")), 1))).label("views"),
            func.count(case((ev.c.type.in_(("like", "comment", "share", "follow")), 1))).label("engagements"),
            func.count(case((ev.c.type == "purchase", 1))).label("purchases"),
        )
        .select_from(ev.join(items, items.c.id == func.coalesce(ev.c.room_id, ev.c.item_id)))
        .where(ev.c.type.in_(ENGAGE_TYPES), *cond)
        .group_by(items.c.creator_id, items.c.kind, hour)
    )
    return _frame(engine, stmt)


def creator_followers(engine: Engine) -> pd.DataFrame:
    """New followers per creator and day: each (creator, user) counted once, on the day of the first follow.

    A follow names an item of the creator, or the creator in ``source``. Following again later (from another
    video) does not count twice.
    """
    ev = events.alias("ev")
    creator = func.coalesce(items.c.creator_id, ev.c.source)
    first = (
        select(creator.label("creator_id"), ev.c.user_id, func.min(ev.c.ts // DAY_MS).label("day"))
        .select_from(ev.outerjoin(items, items.c.id == ev.c.item_id))
        .where(ev.c.type == "follow", creator.is_not(None))
        .group_by(creator, ev.c.user_id)
        .subquery()
    )
    stmt = select(first.c.creator_id, first.c.day, func.count().label("follows")).group_by(
        first.c.creator_id, first.c.day
    )
    return _frame(engine, stmt)


def comment_rows(engine: Engine, creator_id: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """Comments on a creator's items (or all): ts, item, creator, text, stored sentiment score."""
    cond = [items.c.creator_id == creator_id] if creator_id else []
    stmt = (
        select(
            comments.c.ts,
            comments.c.item_id,
            comments.c.user_id,
            items.c.creator_id,
            comments.c.text,
            comments.c.sentiment_score,
        )
        .select_from(comments.join(items, items.c.id == comments.c.item_id))
        .where(*cond)
        .order_by(comments.c.ts)
    )
    if limit:
        stmt = stmt.limit(limit)
    return _frame(engine, stmt)


def viewer_attributes(engine: Engine, creator_id: str, key: str) -> pd.DataFrame:
    """The creator's viewers counted by one user attribute (their audience segments)."""
    ev = events.alias("ev")
    viewers = (
        select(ev.c.user_id)
        .select_from(ev.join(items, items.c.id == ev.c.item_id))
        .where(items.c.creator_id == creator_id, ev.c.type.in_(("view", "live_join")))
        .distinct()
        .subquery()
    )
    val = users.c.attributes[key].as_string()
    stmt = (
        select(val.label("value"), func.count().label("viewers"))
        .select_from(viewers.join(users, users.c.id == viewers.c.user_id))
        .group_by(val)
    )
    return _frame(engine, stmt)


def audience_item_views(engine: Engine, creator_id: str) -> pd.DataFrame:
    """Per item: views (and distinct viewers) by the people who viewed any of the creator's items.

    The input of the audience's interests: the tags of everything the creator's viewers watch.
    """
    ev = events.alias("ev")
    aud = (
        select(ev.c.user_id)
        .select_from(ev.join(items, items.c.id == ev.c.item_id))
        .where(items.c.creator_id == creator_id, ev.c.type.in_(("view", "live_join")))
        .distinct()
        .subquery()
    )
    ev2 = events.alias("ev2")
    stmt = (
        select(
            ev2.c.item_id,
            func.count().label("views"),
            func.count(func.distinct(ev2.c.user_id)).label("viewers"),
        )
        .select_from(ev2.join(aud, aud.c.user_id == ev2.c.user_id))
        .where(ev2.c.type.in_(("view", "live_join")))
        .group_by(ev2.c.item_id)
    )
    return _frame(engine, stmt)


def catalog(engine: Engine) -> pd.DataFrame:
    stmt = select(
        items.c.id.label("item_id"),
        items.c.kind,
        items.c.creator_id,
        items.c.tags,
        items.c.price,
        items.c.created_at,
    )
    return _frame(engine, stmt)


def creator_topics(engine: Engine) -> pd.DataFrame:
    return _frame(engine, select(creators.c.id.label("creator_id"), creators.c.topics))


def promotes_links(engine: Engine) -> pd.DataFrame:
    return _frame(engine, select(promotes.c.promoter_id, promotes.c.item_id))


# ---------------------------------------------------------------- users (churn / propensity features)


def user_activity(engine: Engine, cutoff_ms: int, history_days: int = 30) -> pd.DataFrame:
    """Per user, from the ``history_days`` before ``cutoff_ms``: counts by type, active days, recency."""
    ev = events.alias("ev")
    lo = cutoff_ms - history_days * DAY_MS
    kinds = ("view", "like", "comment", "share", "click", "add_to_cart", "purchase", "live_join", "tip")
    stmt = (
        select(
            ev.c.user_id,
            *[func.count(case((ev.c.type == t, 1))).label(f"n_{t}") for t in kinds],
            func.count(func.distinct(ev.c.ts // DAY_MS)).label("active_days"),
            func.max(ev.c.ts).label("last_ts"),
            func.min(ev.c.ts).label("first_ts"),
            func.coalesce(
                func.sum(case((ev.c.type.in_(("purchase", "tip", "subscribe")), ev.c.amount))), 0.0
            ).label("spend"),
            func.avg(case((ev.c.type == "view", ev.c.watch_ratio))).label("watch_ratio"),
        )
        .where(ev.c.ts >= lo, ev.c.ts < cutoff_ms)
        .group_by(ev.c.user_id)
    )
    return _frame(engine, stmt)


def users_with(engine: Engine, types: tuple[str, ...], start_ms: int, end_ms: int) -> set[str]:
    """Users who did any of ``types`` in [start_ms, end_ms) (a label for churn / propensity models)."""
    stmt = select(events.c.user_id).where(
        events.c.type.in_(types), events.c.ts >= start_ms, events.c.ts < end_ms
    )
    with engine.connect() as conn:
        return {r[0] for r in conn.execute(stmt.distinct())}


def time_bounds(engine: Engine) -> tuple[int | None, int | None]:
    with engine.connect() as conn:
        lo, hi = conn.execute(select(func.min(events.c.ts), func.max(events.c.ts))).one()
    return (int(lo) if lo is not None else None, int(hi) if hi is not None else None)


def tag_demand(engine: Engine, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Per item: views in [start_ms, end_ms) (tags are joined in Python from the catalog)."""
    ev = events.alias("ev")
    stmt = (
        select(
            ev.c.item_id,
            func.count().label("views"),
            func.count(func.distinct(ev.c.user_id)).label("viewers"),
        )
        .where(ev.c.type.in_(("view", "live_join", "click")), ev.c.ts >= start_ms, ev.c.ts < end_ms)
        .group_by(ev.c.item_id)
    )
    return _frame(engine, stmt)


def search_terms(engine: Engine, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Search-channel events' ``source`` (the query text, when the client sends it) counted."""
    ev = events.alias("ev")
    stmt = (
        select(ev.c.source.label("term"), func.count().label("n"))
        .where(ev.c.channel == "search", ev.c.source.is_not(None), ev.c.ts >= start_ms, ev.c.ts < end_ms)
        .group_by(ev.c.source)
    )
    return _frame(engine, stmt)


# ---------------------------------------------------------------- commercial value (early signals)


def promoter_early_signals(
    engine: Engine,
    *,
    window_ms: int = 3_600_000,
    horizon_ms: int = 3 * DAY_MS,
    lookback_ms: int = 3 * DAY_MS,
    intent_phrases: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Per short video and live: what happened in its first ``window_ms`` and what it sold afterwards.

    t0 is the item's first view (or live join) in the log. Early signals, from [t0, t0 + window): views,
    viewers, mean watch ratio, likes, comments, shares, follows, and comments whose lower-cased text
    contains one of ``intent_phrases`` (portable ``LIKE``), and the click-through: clicks and add-to-carts
    of a promoted item by a viewer of the window (``first_hour_clicks``, ``first_hour_carts``, and clicks
    per view). Catalog: is_live, number and mean price of the paid items it promotes. History before t0
    (no label leaks in): the creator's views, purchases and follows over all their items and their
    conversion (purchases per view), and the promoted items' clicks and purchases by any path. Outcome:
    purchases of a promoted item by someone who viewed the item before, within ``lookback_ms`` of that view
    and before t0 + ``horizon_ms`` (each purchase counted once), and their revenue.
    """
    ev = events.alias("ev")
    promoter_kinds = ("short_video", "live")
    views = ("view", "live_join")
    t0 = (
        select(ev.c.item_id, func.min(ev.c.ts).label("t0"))
        .select_from(ev.join(items, items.c.id == ev.c.item_id))
        .where(ev.c.type.in_(views), items.c.kind.in_(promoter_kinds))
        .group_by(ev.c.item_id)
        .cte("t0")
    )
    e = events.alias("e")
    inwin = and_(e.c.item_id == t0.c.item_id, e.c.ts >= t0.c.t0, e.c.ts < t0.c.t0 + window_ms)

    def n(types: tuple[str, ...], name: str) -> Any:
        return func.count(case((e.c.type.in_(types), 1))).label(name)

    early = (
        select(
            t0.c.item_id,
            n(views, "first_hour_views"),
            func.count(func.distinct(case((e.c.type.in_(views), e.c.user_id)))).label("first_hour_viewers"),
            func.avg(case((e.c.type == "view", e.c.watch_ratio))).label("first_hour_watch_ratio"),
            n(("like",), "first_hour_likes"),
            n(("comment",), "first_hour_comments"),
            n(("share",), "first_hour_shares"),
            n(("follow",), "first_hour_follows"),
        )
        .select_from(t0.join(e, inwin))
        .group_by(t0.c.item_id)
        .cte("early")
    )
    cm = comments.alias("cm")
    if intent_phrases:
        low = func.lower(cm.c.text)
        hit = or_(*[low.like(f"%{p.lower()}%") for p in intent_phrases])
    else:
        hit = literal(False)
    intent = (
        select(cm.c.item_id, func.count().label("first_hour_intent_comments"))
        .select_from(
            cm.join(t0, and_(cm.c.item_id == t0.c.item_id, cm.c.ts >= t0.c.t0, cm.c.ts < t0.c.t0 + window_ms))
        )
        .where(hit)
        .group_by(cm.c.item_id)
        .cte("intent")
    )
    paid = items.alias("paid")
    price = (
        select(
            promotes.c.promoter_id,
            func.count().label("n_promoted"),
            func.avg(paid.c.price).label("promoted_price"),
        )
        .select_from(promotes.join(paid, paid.c.id == promotes.c.item_id))
        .group_by(promotes.c.promoter_id)
        .cte("price")
    )
    # Click-through in the window: clicks and add-to-carts of a promoted item by someone who viewed the
    # promoter before them in the window (each event once, however many of its views preceded it).
    vw, ck, pw = events.alias("vw"), events.alias("ck"), promotes.alias("pw")
    touched = (
        select(vw.c.item_id.label("promoter_id"), ck.c.id.label("event_id"), ck.c.type)
        .select_from(
            vw.join(t0, and_(t0.c.item_id == vw.c.item_id, vw.c.ts < t0.c.t0 + window_ms))
            .join(pw, pw.c.promoter_id == vw.c.item_id)
            .join(
                ck,
                and_(
                    ck.c.user_id == vw.c.user_id,
                    ck.c.item_id == pw.c.item_id,
                    ck.c.type.in_(("click", "add_to_cart")),
                    ck.c.ts >= vw.c.ts,
                    ck.c.ts < t0.c.t0 + window_ms,
                ),
            )
        )
        .where(vw.c.type.in_(views), vw.c.ts >= t0.c.t0)
        .distinct()
        .subquery("touched")
    )
    clicks = (
        select(
            touched.c.promoter_id,
            func.count(case((touched.c.type == "click", 1))).label("first_hour_clicks"),
            func.count(case((touched.c.type == "add_to_cart", 1))).label("first_hour_carts"),
        )
        .group_by(touched.c.promoter_id)
        .cte("clicks")
    )
    # History strictly before t0 (known when the item starts, so no label leaks in): the creator's audience
    # and sales so far, over all their items, and how the promoted items have sold so far, by any path.
    # ``type || ''``: the same rows, but the planner reads each item's own (item_id, ts) range instead of
    # every view or purchase of the log once per item (SQLite chose the (type, ts) index: 10x slower).
    own, mine, h = items.alias("own"), items.alias("mine"), events.alias("h")
    creator_hist = (
        select(
            t0.c.item_id,
            func.count(case((h.c.type.in_(views), 1))).label("creator_past_views"),
            func.count(case((h.c.type == "purchase", 1))).label("creator_past_purchases"),
            func.count(case((h.c.type == "follow", 1))).label("creator_past_follows"),
        )
        .select_from(
            t0.join(own, own.c.id == t0.c.item_id)
            .join(mine, mine.c.creator_id == own.c.creator_id)
            .join(h, and_(h.c.item_id == mine.c.id, h.c.ts < t0.c.t0))
        )
        .where(h.c.type.op("||")(literal("")).in_((*views, "purchase", "follow")))
        .group_by(t0.c.item_id)
        .cte("creator_hist")
    )
    ph, pp = promotes.alias("ph"), events.alias("pp")
    promoted_hist = (
        select(
            ph.c.promoter_id,
            func.count(case((pp.c.type == "click", 1))).label("promoted_past_clicks"),
            func.count(case((pp.c.type == "purchase", 1))).label("promoted_past_purchases"),
        )
        .select_from(
            t0.join(ph, ph.c.promoter_id == t0.c.item_id).join(
                pp, and_(pp.c.item_id == ph.c.item_id, pp.c.ts < t0.c.t0)
            )
        )
        .where(pp.c.type.op("||")(literal("")).in_(("click", "purchase")))
        .group_by(ph.c.promoter_id)
        .cte("promoted_hist")
    )
    counts = [*list(clicks.c)[1:], *list(creator_hist.c)[1:], *list(promoted_hist.c)[1:]]
    v, p = events.alias("v"), events.alias("p")
    sold = (
        select(v.c.item_id.label("promoter_id"), p.c.id.label("purchase_id"), p.c.amount)
        .select_from(
            v.join(t0, t0.c.item_id == v.c.item_id)
            .join(promotes, promotes.c.promoter_id == v.c.item_id)
            .join(
                p,
                and_(
                    p.c.user_id == v.c.user_id,
                    p.c.item_id == promotes.c.item_id,
                    p.c.type == "purchase",
                    p.c.ts >= v.c.ts,
                    p.c.ts <= v.c.ts + lookback_ms,
                    p.c.ts < t0.c.t0 + horizon_ms,
                ),
            )
        )
        .where(v.c.type.in_(views))
        .distinct()
        .subquery("sold")
    )
    outcome = (
        select(
            sold.c.promoter_id,
            func.count().label("purchases"),
            func.coalesce(func.sum(sold.c.amount), 0.0).label("revenue"),
        )
        .group_by(sold.c.promoter_id)
        .cte("outcome")
    )
    stmt = (
        select(
            t0.c.item_id,
            items.c.kind,
            items.c.creator_id,
            t0.c.t0,
            *[early.c[c] for c in early.c.keys() if c != "item_id"],
            func.coalesce(intent.c.first_hour_intent_comments, 0).label("first_hour_intent_comments"),
            func.coalesce(price.c.n_promoted, 0).label("n_promoted"),
            price.c.promoted_price,
            *[func.coalesce(c, 0).label(c.name) for c in counts],
            func.coalesce(outcome.c.purchases, 0).label("purchases"),
            func.coalesce(outcome.c.revenue, 0.0).label("revenue"),
        )
        .select_from(
            t0.join(items, items.c.id == t0.c.item_id)
            .join(early, early.c.item_id == t0.c.item_id)
            .outerjoin(intent, intent.c.item_id == t0.c.item_id)
            .outerjoin(price, price.c.promoter_id == t0.c.item_id)
            .outerjoin(clicks, clicks.c.promoter_id == t0.c.item_id)
            .outerjoin(creator_hist, creator_hist.c.item_id == t0.c.item_id)
            .outerjoin(promoted_hist, promoted_hist.c.promoter_id == t0.c.item_id)
            .outerjoin(outcome, outcome.c.promoter_id == t0.c.item_id)
        )
        .order_by(t0.c.t0, t0.c.item_id)
    )
    df = _frame(engine, stmt)
    df["is_live"] = (df["kind"] == "live").astype(int)
    df["first_hour_click_rate"] = df["first_hour_clicks"] / df["first_hour_views"].clip(lower=1)
    df["creator_past_conversion"] = df["creator_past_purchases"] / df["creator_past_views"].clip(lower=1)
    for c in ("first_hour_watch_ratio", "promoted_price", "revenue"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    return df


# ---------------------------------------------------------------- growth advice


def paid_item_demand(
    engine: Engine, *, creator_id: str | None = None, start_ms: int | None = None, end_ms: int | None = None
) -> pd.DataFrame:
    """Per paid item: price, clickers, carters, buyers and revenue in the range, and open demand.

    ``open_users``: people who clicked or added it to the cart in the range and never bought it (not even
    later): who a live could still convert.
    """
    ev = events.alias("ev")
    rng = _range(ev, start_ms, end_ms)
    cond = [items.c.kind.in_(sorted(PAID_KINDS))]
    if creator_id is not None:
        cond.append(items.c.creator_id == creator_id)

    def users_of(types: tuple[str, ...], name: str) -> Any:
        return func.count(func.distinct(case((ev.c.type.in_(types), ev.c.user_id)))).label(name)

    stats = (
        select(
            ev.c.item_id,
            users_of(("click",), "clickers"),
            users_of(("add_to_cart",), "carters"),
            users_of(("purchase",), "buyers"),
            func.coalesce(func.sum(case((ev.c.type == "purchase", ev.c.amount))), 0.0).label("revenue"),
        )
        .where(ev.c.type.in_(("click", "add_to_cart", "purchase")), *rng)
        .group_by(ev.c.item_id)
        .subquery("st")
    )
    bought = events.alias("bought")
    open_ = (
        select(ev.c.item_id, func.count(func.distinct(ev.c.user_id)).label("open_users"))
        .where(
            ev.c.type.in_(("click", "add_to_cart")),
            *rng,
            ~exists(
                select(literal(1)).where(
                    bought.c.user_id == ev.c.user_id,
                    bought.c.item_id == ev.c.item_id,
                    bought.c.type == "purchase",
                )
            ),
        )
        .group_by(ev.c.item_id)
        .subquery("op")
    )
    stmt = (
        select(
            items.c.id.label("item_id"),
            items.c.kind,
            items.c.creator_id,
            items.c.title,
            items.c.tags,
            items.c.price,
            func.coalesce(stats.c.clickers, 0).label("clickers"),
            func.coalesce(stats.c.carters, 0).label("carters"),
            func.coalesce(stats.c.buyers, 0).label("buyers"),
            func.coalesce(stats.c.revenue, 0.0).label("revenue"),
            func.coalesce(open_.c.open_users, 0).label("open_users"),
        )
        .select_from(
            items.outerjoin(stats, stats.c.item_id == items.c.id).outerjoin(
                open_, open_.c.item_id == items.c.id
            )
        )
        .where(*cond)
        .order_by(items.c.id)
    )
    return _frame(engine, stmt)


def question_comments(engine: Engine, start_ms: int, end_ms: int) -> pd.DataFrame:
    """Comments in the range (item, text, stored is_question) for counting questions per topic."""
    stmt = select(comments.c.item_id, comments.c.text, comments.c.is_question).where(
        comments.c.ts >= start_ms, comments.c.ts < end_ms, comments.c.item_id.is_not(None)
    )
    return _frame(engine, stmt)
