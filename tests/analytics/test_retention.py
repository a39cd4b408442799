"""Retention and stickiness on a hand-built log, on SQLite and PostgreSQL, against hand counts and pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.analytics import retention as ret
from knowcast.analytics import service

from .handmade import D0, event, label, load, ts

L0, L1, L2, L3 = (label(d) for d in range(4))

# user -> days with a view (day 0 = D0). a: 0,1,3  b: 0,2  c: 1,2  d: 1  e: 3 ; f only likes (not a view).
ACTIVE = {"a": [0, 1, 3], "b": [0, 2], "c": [1, 2], "d": [1], "e": [3]}


def _events() -> list[dict]:
    rows = []
    for u, days in ACTIVE.items():
        for d in days:
            rows.append(event(f"{u}{d}", "view", ts(d, 10), u, "v1"))
            rows.append(event(f"{u}{d}b", "view", ts(d, 11), u, "v1"))  # twice a day: counted once
    rows.append(event("f1", "like", ts(2, 9), "f", "v1"))
    return rows


def pandas_first_time(days: dict[str, list[int]]) -> tuple[dict[int, int], dict[tuple[int, int], int]]:
    """Independent peer: cohort = first day; retained at offset k = active on first day + k."""
    a = pd.DataFrame([(u, d) for u, ds in days.items() for d in ds], columns=["u", "d"])
    first = a.groupby("u")["d"].min()
    a["cohort"] = a["u"].map(first)
    a["offset"] = a["d"] - a["cohort"]
    sizes = first.value_counts().to_dict()
    back = a[a["offset"] > 0].groupby(["cohort", "offset"])["u"].nunique().to_dict()
    return sizes, back


def test_first_time_daily_retention(store) -> None:  # type: ignore[no-untyped-def]
    load(store.engine, events=_events())
    t = service.retention(store.engine, start_types=["view"], return_types=["view"], period="day")
    # by hand: cohort day0 = {a, b}, day1 = {c, d}, day3 = {e}
    assert t.sizes.to_dict() == {L0: 2, L1: 2, L3: 1}
    c = t.counts
    assert c.loc[L0].tolist() == [2, 1, 1, 1]  # a back on day1, b on day2, a on day3
    assert c.loc[L1, 1] == 1 and c.loc[L1, 2] == 0  # c on day2; nobody on day3
    assert np.isnan(c.loc[L1, 3])  # that cohort has not lived 3 days yet
    assert c.loc[L3].isna().tolist() == [False, True, True, True]
    # independent pandas peer
    sizes, back = pandas_first_time(ACTIVE)
    for (cohort, offset), n in back.items():
        assert c.loc[label(cohort), offset] == n
    assert sorted(t.sizes.tolist()) == sorted(sizes.values())
    # curve: offset 1 over cohorts that lived a day (day0, day1: 4 users): a and c came back
    curve = t.curve.set_index("offset")
    assert curve.loc[1, "rate"] == pytest.approx(2 / 4)
    assert curve.loc[3, "rate"] == pytest.approx(1 / 2)
    assert t.rates.loc[L0, 2] == pytest.approx(0.5)
    long = t.to_frame()
    assert len(long) == 4 + 3 + 1 and long["rate"].max() == 1.0
    # any event starts a cohort when no types are given: f (a like on day 2) joins day 2
    t_all = service.retention(store.engine)
    assert t_all.sizes[L2] == 1


def test_recurring_and_weekly(store) -> None:  # type: ignore[no-untyped-def]
    load(store.engine, events=_events())
    r = service.retention(store.engine, start_types=["view"], return_types=["view"], kind="recurring")
    # every active day is a cohort entry: day0 {a,b}, day1 {a,c,d}, day2 {b,c}, day3 {a,e}
    assert r.sizes.tolist() == [2, 3, 2, 2]
    assert r.counts.loc[L0].tolist() == [2, 1, 1, 1]
    assert r.counts.loc[L1, 1] == 1  # c on day2
    assert r.counts.loc[L1, 2] == 1  # a on day3
    assert r.counts.loc[L2, 1] == 0  # b, c not on day3
    # the in-memory twin gives the same inputs
    act = pd.DataFrame([(u, D0 + d) for u, ds in ACTIVE.items() for d in ds], columns=["user_id", "period"])
    sizes, returns = ret.retention_from_activity(act, kind="recurring")
    assert sorted(sizes["users"]) == sorted(r.sizes.tolist())
    w = service.retention(store.engine, start_types=["view"], period="week")
    assert w.sizes.tolist() == [5] and w.counts.shape == (1, 1)  # all in one week
    with pytest.raises(ValueError, match="period"):
        service.retention(store.engine, period="month")


def test_stickiness(store) -> None:  # type: ignore[no-untyped-def]
    load(store.engine, events=_events())
    s = service.stickiness(store.engine, types=["view"]).set_index("day")
    assert s["dau"].tolist() == [2, 3, 2, 2]
    assert s["mau"].tolist() == [2, 4, 4, 5]
    assert s.loc[D0 + 1, "stickiness"] == pytest.approx(3 / 4)
    two = service.stickiness(store.engine, types=["view"], mau_days=2).set_index("day")
    assert two["mau"].tolist() == [2, 4, 4, 4]  # day3: users of days 2-3 = b, c, a, e


def test_cohort_table_validates() -> None:
    with pytest.raises(ValueError, match="column 'users' is missing"):
        ret.cohort_table(pd.DataFrame({"cohort": [1]}), pd.DataFrame(columns=["cohort", "offset", "users"]))
    bad = pd.DataFrame({"cohort": [1], "offset": [-1], "users": [1]})
    with pytest.raises(ValueError, match="row 1: field 'offset'"):
        ret.cohort_table(pd.DataFrame({"cohort": [1], "users": [3]}), bad)
