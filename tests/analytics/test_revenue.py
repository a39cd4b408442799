"""Revenue, subscriptions, RFM and cohort revenue on a hand-built log (SQLite and PostgreSQL).

Every expected figure is worked out by hand in the comments, and the breakdowns are recomputed
independently with pandas from the same event list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.analytics import revenue as rev
from knowcast.analytics import service

from .handmade import D0, event, load, ts

CREATORS = [{"creator_id": "c1", "name": "one"}, {"creator_id": "c2", "name": "two"}]
ITEMS = [
    {"item_id": "k1", "kind": "course", "creator_id": "c1", "price": 100.0, "currency": "CNY"},
    {"item_id": "col1", "kind": "column", "creator_id": "c2", "price": 50.0, "currency": "CNY"},
    {"item_id": "eb1", "kind": "ebook", "creator_id": "c2", "price": 20.0, "currency": "CNY"},
    {"item_id": "au1", "kind": "audio", "creator_id": "c1", "price": 30.0, "currency": "CNY"},
    {"item_id": "mem1", "kind": "membership", "creator_id": "c1", "price": 30.0, "currency": "CNY"},
    {"item_id": "v1", "kind": "short_video", "creator_id": "c1", "promotes": ["k1"]},
    {"item_id": "L1", "kind": "live", "creator_id": "c1", "promotes": ["k1"]},
]
# (id, type, day, user, item, amount, channel, room)
ROWS = [
    ("e1", "view", 0, "u1", "v1", None, "feed", None),
    ("e2", "purchase", 0, "u1", "k1", 100.0, "feed", None),
    ("e3", "refund", 2, "u1", "k1", 40.0, "feed", None),  # partial refund
    ("e4", "live_join", 1, "u2", "L1", None, "live", "L1"),
    ("e5", "purchase", 1, "u2", "k1", 100.0, "live", "L1"),  # a course bought in a live: still "course"
    ("e6", "tip", 1, "u2", "L1", 20.0, "live", "L1"),
    ("e7", "purchase", 1, "u3", "col1", 50.0, "search", None),
    ("e8", "purchase", 1, "u3", "eb1", 20.0, "search", None),
    ("e9", "purchase", 2, "u4", "au1", 30.0, "feed", None),
    ("e10", "subscribe", 0, "u4", "mem1", 30.0, "direct", None),
    ("e11", "view", 2, "u5", "v1", None, "feed", None),
    ("e12", "purchase", 1, "u6", "gadget1", 15.0, "live", "L1"),  # not a knowledge product: live GMV
    ("e13", "view", 1, "u7", "v1", None, "push", None),
]


def _events() -> list[dict]:
    out = []
    for eid, t, d, u, i, amt, ch, room in ROWS:
        extra = {"channel": ch, "room_id": room}
        if amt is not None:
            extra["amount"] = amt
        out.append(event(eid, t, ts(d, 12), u, i, **extra))
    return out


def _pandas_net(by: str) -> pd.Series:
    """Independent peer: signed amounts (refunds negative) of money events, grouped."""
    df = pd.DataFrame(ROWS, columns=["id", "type", "day", "user", "item", "amount", "channel", "room"])
    df = df[df["type"].isin(["purchase", "refund", "subscribe", "tip"])]
    df["net"] = np.where(df["type"] == "refund", -df["amount"], df["amount"])
    creator = {i["item_id"]: i.get("creator_id") for i in ITEMS}
    df["creator"] = df["item"].map(creator).fillna("(none)")
    df["day"] = df["day"] + D0
    return df.groupby(by)["net"].sum()


@pytest.fixture
def money(store):  # type: ignore[no-untyped-def]
    load(store.engine, creators=CREATORS, items=ITEMS, events=_events())
    return store


def test_revenue_by_stream_and_summary(money) -> None:  # type: ignore[no-untyped-def]
    out = service.revenue(money.engine, cpm=2000.0, creator_share=0.25, by="stream")
    t = out["table"].set_index("stream")
    # course: 100 + 100 bought, 40 refunded
    assert t.loc["course", ["gross", "refunds", "net", "orders"]].tolist() == [200.0, 40.0, 160.0, 2]
    assert t.loc["column", "net"] == 50.0 and t.loc["ebook", "net"] == 20.0 and t.loc["audio", "net"] == 30.0
    assert t.loc["subscription", "net"] == 30.0 and t.loc["subscription", "orders"] == 0
    assert t.loc["tips", "net"] == 20.0
    assert t.loc["live_commerce", ["net", "orders"]].tolist() == [15.0, 1]
    # ads: 3 views of v1 x 2000 CPM / 1000 = 6.0, creators get 25 % = 1.5
    assert t.loc["ads_creator_share", "net"] == pytest.approx(1.5)
    s = out["summary"]
    assert s["ad_revenue_total"] == pytest.approx(6.0) and s["ad_revenue_platform"] == pytest.approx(4.5)
    # net = 100+100+20+50+20+30+30+15-40 = 325 over 7 active users (u1..u7), 5 payers (u1,u2,u3,u4,u6)
    assert s["net_revenue"] == pytest.approx(325.0)
    assert (s["active_users"], s["paying_users"], s["orders"]) == (7, 5, 6)
    assert s["arpu"] == pytest.approx(325 / 7)
    assert s["arppu"] == pytest.approx(65.0)
    assert s["paying_ratio"] == pytest.approx(5 / 7)
    assert s["average_order_value"] == pytest.approx((100 + 100 + 50 + 20 + 30 + 15) / 6)  # 52.5
    # the streams add up to the net revenue (ads aside)
    assert t["net"].drop("ads_creator_share").sum() == pytest.approx(325.0)


@pytest.mark.parametrize("by,col", [("creator", "creator"), ("channel", "channel"), ("day", "day")])
def test_revenue_breakdowns_match_pandas(money, by, col) -> None:  # type: ignore[no-untyped-def]
    out = service.revenue(money.engine, cpm=2000.0, creator_share=0.5, by=by)
    key = {"creator": "creator_id", "channel": "channel", "day": "day"}[by]
    got = out["table"].set_index(key)["net"]
    exp = _pandas_net(col)
    got.index = got.index.astype(exp.index.dtype)
    pd.testing.assert_series_equal(got.sort_index(), exp.sort_index(), check_names=False, check_dtype=False)
    if by == "creator":  # ad share is its own column: v1 is c1's, 3 views x 2 CNY x 50 %
        assert out["table"].set_index("creator_id").loc["c1", "ads_creator_share"] == pytest.approx(3.0)
    if by == "day":
        assert out["table"]["date"].tolist()[0] == pd.Timestamp(D0 + 1, unit="D").strftime("%Y-%m-%d")


def test_revenue_by_item_and_bad_args(money) -> None:  # type: ignore[no-untyped-def]
    t = service.revenue(money.engine, by="item")["table"].set_index("item_id")
    assert t.loc["k1", "net"] == 160.0 and t.loc["gadget1", "net"] == 15.0 and t.loc["L1", "net"] == 20.0
    with pytest.raises(ValueError, match="by must be"):
        service.revenue(money.engine, by="planet")
    with pytest.raises(ValueError, match="creator_share"):
        service.revenue(money.engine, creator_share=2.0)


# ---------------------------------------------------------------- subscriptions

# 30-day months from D0 (a multiple of 30). s1 pays every month; s2 stops after month 1; s3 upgrades in
# month 2; s4 leaves after month 0 and comes back in month 3; s5 starts high in month 2 and downgrades.
LEDGER = {
    "s1": {0: 30, 1: 30, 2: 30, 3: 30},
    "s2": {0: 30, 1: 30},
    "s3": {1: 30, 2: 60, 3: 60},
    "s4": {0: 30, 3: 30},
    "s5": {2: 60, 3: 30},
}


def _sub_events() -> list[dict]:
    return [
        event(f"{u}-{m}", "subscribe", ts(30 * m + 1, 8), u, "mem1", amount=float(a), channel="direct")
        for u, months in LEDGER.items()
        for m, a in months.items()
    ]


def km_lifetime(durations: list[int], observed: list[bool], horizon: int) -> float:
    """Independent Kaplan-Meier restricted mean with a constant pooled hazard after the last month."""
    d, e = np.array(durations), np.array(observed)
    s, curve, events, exposure = 1.0, [1.0], 0, 0
    for t in range(1, d.max() + 1):
        at_risk = (d >= t).sum()
        died = ((d == t) & e).sum()
        s *= 1 - died / at_risk
        events, exposure = events + died, exposure + at_risk
        curve.append(s)
    h = events / exposure  # curve[t] = S(t) = P(paying in month t + 1)
    while len(curve) < horizon:
        curve.append(curve[-1] * (1 - h))
    return float(sum(curve[:horizon]))


def test_subscriptions_mrr_movements_and_ltv(store) -> None:  # type: ignore[no-untyped-def]
    load(store.engine, items=[ITEMS[4]], creators=CREATORS, events=_sub_events())
    out = service.subscriptions(store.engine)
    m = out["months"].set_index("month")
    m.index = m.index - D0 // 30
    assert m["mrr"].tolist() == [90.0, 90.0, 150.0, 150.0]
    assert m["subscribers"].tolist() == [3, 3, 3, 4]
    assert m["new"].tolist() == [3, 1, 1, 0] and m["new_mrr"].tolist() == [90.0, 30.0, 60.0, 0.0]
    assert m["expansion_mrr"].tolist() == [0.0, 0.0, 30.0, 0.0]  # s3 30 -> 60
    assert m["contraction_mrr"].tolist() == [0.0, 0.0, 0.0, 30.0]  # s5 60 -> 30
    assert m["reactivation_mrr"].tolist() == [0.0, 0.0, 0.0, 30.0]  # s4 back
    assert m["churned"].tolist() == [0, 1, 1, 0] and m["churned_mrr"].tolist() == [0.0, 30.0, 30.0, 0.0]
    assert np.isnan(m.loc[0, "logo_churn_rate"])
    assert m.loc[1, "logo_churn_rate"] == pytest.approx(1 / 3)  # s4 of s1, s2, s4
    assert m.loc[2, "mrr_churn_rate"] == pytest.approx(30 / 90)
    # MRR bridge: mrr_t = mrr_{t-1} + new + reactivation + expansion - contraction - churned
    bridge = m["mrr"].shift(1).fillna(0) + m["new_mrr"] + m["reactivation_mrr"] + m["expansion_mrr"]
    bridge -= m["contraction_mrr"] + m["churned_mrr"]
    assert bridge.tolist() == m["mrr"].tolist()
    # spells (months in a row): s1 4 (still on), s2 2 (ended), s3 3 (on), s4 1 (ended) + 1 (on), s5 2 (on)
    km = out["survival"].set_index("t")
    assert km.loc[1, "survival"] == pytest.approx(5 / 6)  # 1 of 6 spells ended after 1 month
    assert km.loc[2, "survival"] == pytest.approx(5 / 6 * 3 / 4)  # 1 of the 4 spells left ended after 2
    dur, obs = [4, 2, 3, 1, 1, 2], [False, True, False, True, False, False]
    life = km_lifetime(dur, obs, 36)
    assert out["expected_lifetime_months"] == pytest.approx(life)
    assert out["arpu_month"] == pytest.approx(480 / 13)  # 13 paid months, 480 CNY
    assert out["ltv"] == pytest.approx(480 / 13 * life)
    assert 1 + 5 / 6 < life < 36  # a finite tail: the pooled hazard is 2 churns / 13 subscriber-months


def test_kaplan_meier_validates() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        rev.kaplan_meier(np.array([-1]), np.array([True]))
    assert rev.subscription_report(pd.DataFrame(columns=["user_id", "month", "amount"]))["ltv"] == 0.0


# ---------------------------------------------------------------- RFM and cohort revenue


def _rfm_events() -> list[dict]:
    rows = []
    # (user, day, amount): a buys often and a lot, recently; b once long ago; c twice, mid
    for n, (u, d, a) in enumerate(
        [("a", 0, 10.0), ("a", 5, 20.0), ("a", 9, 30.0), ("b", 0, 5.0), ("c", 3, 10.0), ("c", 7, 15.0)]
    ):
        rows.append(event(f"r{n}", "purchase", ts(d, 9), u, "k1", amount=a))
    rows.append(event("r9", "purchase", ts(9, 10), "a", "k1", amount=1.0))  # a second order the same day
    return rows


def test_rfm_and_cohort_revenue(store) -> None:  # type: ignore[no-untyped-def]
    load(store.engine, items=[ITEMS[0]], creators=CREATORS, events=_rfm_events())
    r = service.rfm(store.engine).set_index("customer_id")
    # now = the day after the last order (D0 + 10)
    assert r["recency"].to_dict() == {"a": 1, "b": 10, "c": 3}
    assert r["frequency"].to_dict() == {"a": 4, "b": 1, "c": 2}
    assert r["monetary"].to_dict() == pytest.approx({"a": 61.0, "b": 5.0, "c": 25.0})
    assert r.loc["a", "rfm"] == "555" and r.loc["b", "rfm"] == "222"
    assert r.loc["a", "segment"] == "champions" and r.loc["b", "segment"] == "hibernating"
    cr = service.cohort_revenue(store.engine, period_days=5)
    # periods of 5 days from the epoch: D0 is a multiple of 5, so day 0-4 is period p0, 5-9 is p0 + 1.
    cr["cohort"] -= D0 // 5
    got = {(int(c), int(o)): v for c, o, v in cr[["cohort", "offset", "revenue"]].itertuples(index=False)}
    assert got == pytest.approx({(0, 0): 10.0 + 5.0 + 10.0, (0, 1): 20.0 + 30.0 + 1.0 + 15.0})
    assert cr["customers"].tolist() == [3, 3]
    assert cr["cumulative_per_customer"].tolist() == pytest.approx([25 / 3, 91 / 3])


def test_rfm_pure_validation() -> None:
    tx = pd.DataFrame({"customer_id": ["x", "y"], "day": [1, 2], "amount": [1.0, None]})
    with pytest.raises(ValueError, match="row 2: field 'amount' is empty"):
        rev.rfm(tx)
    with pytest.raises(ValueError, match="column 'day' is missing"):
        rev.cohort_revenue(tx.drop(columns="day"))
