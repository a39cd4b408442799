"""The ordered funnel's SQL (one statement, shaped per backend) against an in-memory peer on a random log.

The log is on a minute grid, so users often have several events in the same millisecond: the breakdown of
a user is then the smallest value among their step-1 events at t1 (``MIN``), which is checked here with an
independent pandas computation. Step times are checked against ``ordered_funnel_pandas``. Every check
runs on SQLite with the (type, user_id, ts) index, on SQLite without it (the planner-steering path), and
on PostgreSQL when it is reachable.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from knowcast.analytics import queries as q
from knowcast.analytics.funnel import FunnelSpec, Step, ordered_funnel_pandas, summarize_funnel

from .conftest import pg_database

DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01 UTC
TYPES = ("view", "click", "add_to_cart", "purchase", "like")


def random_log(seed: int = 0, n_users: int = 150, n_events: int = 6000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    types = rng.choice(TYPES, size=n_events, p=[0.45, 0.2, 0.1, 0.05, 0.2])
    paid = types == "purchase"
    return pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n_events)],
            "type": types,
            # minutes over 20 days: ~40 events per user, so same-minute events are common
            "ts": T0 + rng.integers(0, 20 * 24 * 60, size=n_events) * 60_000 // 50 * 50,
            "user_id": [f"u{u}" for u in rng.integers(0, n_users, size=n_events)],
            "channel": rng.choice(["direct", "feed", "kol"], size=n_events),
            "device": rng.choice(["ios", "android"], size=n_events),
            "item_id": [f"i{i}" for i in rng.integers(0, 30, size=n_events)],
            "amount": np.where(paid, 9.9, np.nan),
            "currency": np.where(paid, "USD", None),
        }
    )


def tie_log(log: pd.DataFrame) -> pd.DataFrame:
    """``log`` plus, for 20 users, a second view at their first view's time, from "search"."""
    views = log[log["type"] == "view"].sort_values("ts", kind="stable").drop_duplicates("user_id")
    extra = views.head(20).assign(event_id=lambda d: d["event_id"] + "_tie", channel="search")
    # "search" sorts after the other channels and comes first in the frame: "first row wins" picks it, MIN not
    return pd.concat([extra, log], ignore_index=True)


SPECS = {
    "four_steps_channel": FunnelSpec(("view", "click", "add_to_cart", "purchase"), breakdown="channel"),
    "range_windows_filters": FunnelSpec(
        (
            Step("view"),
            Step(("click", "like"), where={"device": "ios"}),
            Step("add_to_cart", window_ms=3 * DAY),
        ),
        window_ms=7 * DAY,
        start_ms=T0 + 2 * DAY,
        end_ms=T0 + 12 * DAY,
        breakdown="device",
    ),
    "short_window_no_breakdown": FunnelSpec(("view", "click", "purchase"), window_ms=DAY // 2),
    # the channel is in the funnel index: PostgreSQL reads it with t1 (DISTINCT ON), here inside a range
    "range_channel": FunnelSpec(
        ("view", "click", "add_to_cart"), start_ms=T0 + 2 * DAY, end_ms=T0 + 12 * DAY, breakdown="channel"
    ),
}


def expected(log: pd.DataFrame, spec: FunnelSpec) -> pd.DataFrame:
    """Per-user times from the pandas peer; the group as MIN of the breakdown column at (user, t1)."""
    frame = log.rename(columns={"event_id": "id"})
    peer = ordered_funnel_pandas(frame, spec).drop(columns="group")
    if spec.breakdown is None:
        return peer.assign(group=None)
    step1 = frame[frame["type"].isin(spec.steps[0].types)]
    firsts = step1.merge(peer[["user_id", "t1"]], left_on=["user_id", "ts"], right_on=["user_id", "t1"])
    group = firsts.groupby("user_id")[spec.breakdown].min().rename("group").reset_index()
    return peer.merge(group, on="user_id", how="left")


def _sorted(df: pd.DataFrame, n: int) -> pd.DataFrame:
    cols = ["user_id", "group"] + [f"t{k}" for k in range(1, n + 1)]
    out = df[cols].sort_values("user_id").reset_index(drop=True)
    for k in range(1, n + 1):
        out[f"t{k}"] = pd.to_numeric(out[f"t{k}"]).astype(float)
    out["group"] = out["group"].astype(object).where(out["group"].notna(), None)
    return out


def _load(url: str, log: pd.DataFrame):  # type: ignore[no-untyped-def]
    from knowcast.ingest.service import import_records
    from knowcast.store import Store

    store = Store(url).migrate()
    import_records(store.engine, "events", log, create_missing=True)
    return store


@pytest.fixture(scope="module", params=["sqlite", "sqlite_no_funnel_index", "postgresql"])
def store_and_log(request, tmp_path_factory) -> Iterator[tuple[object, pd.DataFrame]]:  # type: ignore[no-untyped-def]
    log = tie_log(random_log())
    if request.param == "postgresql":
        gen = pg_database()
        store = _load(next(gen), log)
        yield store, log
        store.dispose()
        gen.close()
        return
    store = _load(f"sqlite:///{tmp_path_factory.mktemp('fsql') / 'f.db'}", log)
    if request.param == "sqlite_no_funnel_index":
        with store.engine.begin() as c:
            c.exec_driver_sql("DROP INDEX ix_events_type_user_ts_channel")
        with store.engine.connect() as c:
            assert not q.has_funnel_index(c)
    yield store, log
    store.dispose()


def test_log_has_ties_that_change_the_group() -> None:
    log = tie_log(random_log())
    spec = SPECS["four_steps_channel"]
    first_row = ordered_funnel_pandas(log.rename(columns={"event_id": "id"}), spec)  # first row wins ties
    min_rule = expected(log, spec)
    diff = first_row.merge(min_rule, on="user_id")
    assert (diff["group_x"] != diff["group_y"]).sum() == 20


@pytest.mark.parametrize("name", list(SPECS))
def test_ordered_funnel_sql_matches_pandas(store_and_log, name: str) -> None:  # type: ignore[no-untyped-def]
    store, log = store_and_log
    spec = SPECS[name]
    got = q.funnel_users(store.engine, spec)
    exp = expected(log, spec)
    assert len(got) == len(exp) > 50
    pd.testing.assert_frame_equal(_sorted(got, spec.n), _sorted(exp, spec.n), check_dtype=False)
    # and the report built on it: the users reaching each step (every step is reached by someone)
    users = summarize_funnel(got, spec).steps.groupby("step")["users"].sum()
    assert users.tolist() == [int(exp[f"t{k}"].notna().sum()) for k in range(1, spec.n + 1)]
    assert users.iloc[-1] > 0


def test_ordered_statement_shape_per_backend() -> None:
    """SQLite: per-user index seeks (no join of the events); PostgreSQL: a join and GROUP BY per step, the
    channel read with t1 from the funnel index (DISTINCT ON), or without it in the index, or for another
    breakdown, looked up in t1 order by (type, ts)."""
    from sqlalchemy.dialects import postgresql, sqlite

    spec = SPECS["four_steps_channel"]
    lite = str(q.funnel_users_stmt(spec, "sqlite").compile(dialect=sqlite.dialect()))
    pg = str(q.funnel_users_stmt(spec, "postgresql").compile(dialect=postgresql.dialect()))
    assert lite.count("AS MATERIALIZED") == 4 and " JOIN " not in lite
    assert pg.count("JOIN s1 ON") == 1 and pg.count("GROUP BY") == 3
    assert "SELECT DISTINCT ON (e1.user_id)" in pg and "ORDER BY e1.user_id, e1.ts, e1.channel" in pg
    assert "eb." not in pg and "ORDER BY s1.t1" not in pg
    for pg_old in (
        q.funnel_users_stmt(spec, "postgresql", index_columns=("type", "user_id", "ts")),
        q.funnel_users_stmt(SPECS["range_windows_filters"], "postgresql"),  # device: not in the index
    ):
        old = str(pg_old.compile(dialect=postgresql.dialect()))
        assert "DISTINCT ON" not in old and "ORDER BY s1.t1" in old and old.count("eb.user_id || ") == 1
    hidden = str(q.funnel_users_stmt(spec, "sqlite", covering=False).compile(dialect=sqlite.dialect()))
    assert hidden.count("e2.type || ") == 1
