"""Funnels on the real e-commerce funnel data, checked against counts computed independently in pandas."""

from __future__ import annotations

import pandas as pd
import pytest

from knowcast.analytics import queries as q
from knowcast.analytics import service
from knowcast.analytics.funnel import FunnelSpec, Step, ordered_funnel_pandas, summarize_funnel

STEPS = ("view", "click", "add_to_cart", "purchase")


def expected_counts(users: pd.DataFrame, pages: dict[str, set[str]], by: str | None) -> pd.DataFrame:
    """Per group and step: users who reached this page and every page before it (pandas, independent)."""
    u = users.copy()
    reached = pd.Series(True, index=u.index)
    rows = []
    for k, t in enumerate(STEPS, start=1):
        reached &= u["user_id"].isin(pages[t])
        grp = u[reached].groupby(u[by]).size() if by else pd.Series({"(all)": int(reached.sum())})
        for g, n in grp.items():
            rows.append({"group": g, "step": k, "users": int(n)})
    return pd.DataFrame(rows).sort_values(["group", "step"]).reset_index(drop=True)


def _counts(res) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return res.steps[["group", "step", "users"]].sort_values(["group", "step"]).reset_index(drop=True)


@pytest.mark.parametrize("breakdown,column", [(None, None), ("device", "device"), ("segment:sex", "sex")])
def test_real_funnel_matches_pandas_sqlite(funnel_sqlite, breakdown, column) -> None:  # type: ignore[no-untyped-def]
    store, users, pages = funnel_sqlite
    res = service.funnel(store.engine, FunnelSpec(STEPS, breakdown=breakdown))
    exp = expected_counts(users, pages, column)
    pd.testing.assert_frame_equal(_counts(res), exp, check_dtype=False)
    # published shape of this dataset: 90,400 → 45,200 → 6,030 → 452
    if breakdown is None:
        assert res.steps["users"].tolist() == [90400, 45200, 6030, 452]
        assert res.steps["conversion"].iloc[-1] == pytest.approx(452 / 90400)
        assert res.steps["drop_off"].iloc[1] == pytest.approx(0.5)
        assert res.steps["median_seconds"].iloc[3] == pytest.approx(180.0)


def test_real_funnel_postgres(funnel_pg) -> None:  # type: ignore[no-untyped-def]
    store, users, pages = funnel_pg
    for b, col in ((None, None), ("device", "device"), ("segment:sex", "sex")):
        res = service.funnel(store.engine, FunnelSpec(STEPS, breakdown=b))
        pd.testing.assert_frame_equal(_counts(res), expected_counts(users, pages, col), check_dtype=False)
    any_order = service.funnel(store.engine, FunnelSpec(STEPS, mode="any_order"))
    assert any_order.steps["users"].tolist() == [90400, 45200, 6030, 452]
    strict = service.funnel(store.engine, FunnelSpec(STEPS, mode="strict"))
    assert strict.steps["users"].tolist() == [90400, 45200, 6030, 452]


def test_dropped_users_are_exportable_segment(funnel_sqlite) -> None:  # type: ignore[no-untyped-def]
    store, users, pages = funnel_sqlite
    res = service.funnel(store.engine, FunnelSpec(STEPS))
    dropped = res.dropped_at(3)  # reached payment, never confirmed
    assert set(dropped) == pages["add_to_cart"] - pages["purchase"]
    assert len(dropped) == 6030 - 452
    with pytest.raises(ValueError, match="step must be"):
        res.dropped_at(4)


def test_window_and_modes_on_small_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from knowcast.ingest.service import import_records
    from knowcast.store import Store

    day = 86_400_000
    ev = [
        # u1: view, click 1 day later, cart 20 days later (outside 14-day window)
        ("a1", "view", 0, "u1"), ("a2", "click", day, "u1"), ("a3", "add_to_cart", 20 * day, "u1"),
        # u2: click before view (not ordered), then view, then cart (click needed before cart)
        ("b1", "click", 0, "u2"), ("b2", "view", 10, "u2"), ("b3", "add_to_cart", 20, "u2"),
        # u3: view, like in between, click, cart: ordered yes, strict no (like in between)
        ("c1", "view", 0, "u3"), ("c2", "like", 5, "u3"), ("c3", "click", 10, "u3"),
        ("c4", "add_to_cart", 20, "u3"),
        # u4: view, click, refund, cart: excluded when refund is an exclusion between steps 2 and 3
        ("d1", "view", 0, "u4"), ("d2", "click", 5, "u4"), ("d3", "refund", 7, "u4"),
        ("d4", "add_to_cart", 9, "u4"),
    ]  # fmt: skip
    rows = [
        {"event_id": i, "type": t, "ts": 1_700_000_000_000 + ts, "user_id": u, "item_id": "v1",
         "amount": 1.0 if t == "refund" else None}
        for i, t, ts, u in ev
    ]  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'w.db'}").migrate()
    import_records(store.engine, "events", rows, create_missing=True)
    spec = FunnelSpec(("view", "click", "add_to_cart"))
    assert service.funnel(store.engine, spec).steps["users"].tolist() == [
        4,
        3,
        2,
    ]  # u1 cart outside, u2 order
    strict = FunnelSpec(("view", "click", "add_to_cart"), mode="strict")
    assert service.funnel(store.engine, strict).steps["users"].tolist() == [
        4,
        2,
        0,
    ]  # u3 like, u4 refund between
    anyo = FunnelSpec(("view", "click", "add_to_cart"), mode="any_order")
    assert service.funnel(store.engine, anyo).steps["users"].tolist() == [4, 4, 3]
    excl = FunnelSpec(
        ("view", "click", "add_to_cart"), exclusions=({"type": "refund", "after": 2, "before": 3},)
    )
    assert service.funnel(store.engine, excl).steps["users"].tolist() == [3, 2, 1]
    per_step = FunnelSpec((Step("view"), Step("click", window_ms=6), Step("add_to_cart")))
    # only u4 clicks within 6 ms of its view
    assert service.funnel(store.engine, per_step).steps["users"].tolist() == [4, 1, 1]
    # the pandas peer agrees on the ordered funnel
    frame = pd.DataFrame(rows).rename(columns={"event_id": "id"})
    pu = ordered_funnel_pandas(frame, per_step)
    assert summarize_funnel(pu, per_step).steps["users"].tolist() == [4, 1, 1]
    assert q.funnel_users(store.engine, spec)["t1"].notna().all()


def test_bad_specs_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least 2 steps"):
        FunnelSpec(("view",))
    with pytest.raises(ValueError, match="unknown event type"):
        FunnelSpec(("view", "buy"))
    with pytest.raises(ValueError, match="cannot filter on 'colour'"):
        FunnelSpec(({"type": "view", "where": {"colour": "red"}}, "click"))
    with pytest.raises(ValueError, match="unknown breakdown"):
        FunnelSpec(("view", "click"), breakdown="planet")
    with pytest.raises(ValueError, match="mode must be"):
        FunnelSpec(("view", "click"), mode="sideways")
    with pytest.raises(ValueError, match="step 2: field 'type'"):
        FunnelSpec(("view", {"where": {}}))
