"""Contract, determinism, integrity and funnel-order tests of simulate_platform."""

import numpy as np
import pandas as pd
import pytest

from knowcast.domain import (
    COMMENT_COLUMNS,
    CREATOR_COLUMNS,
    EVENT_COLUMNS,
    EVENT_TYPES,
    ITEM_COLUMNS,
    ITEM_EVENTS,
    MONEY_EVENTS,
    PAID_KINDS,
    PROMOTER_KINDS,
    USER_COLUMNS,
    Channel,
    ItemKind,
)
from knowcast.sim import SimConfig, simulate_platform


def test_deterministic_for_a_seed(small_cfg, small_platform):
    again = simulate_platform(small_cfg)
    pd.testing.assert_frame_equal(again.events, small_platform.events)
    pd.testing.assert_frame_equal(again.items, small_platform.items)
    pd.testing.assert_frame_equal(again.comments, small_platform.comments)
    other = simulate_platform(SimConfig(seed=4, n_creators=30, n_items=400, n_users=600, days=8))
    assert not other.events["event_id"].isin(small_platform.events["event_id"]).any()
    assert len(other.events) != len(small_platform.events) or not other.events["ts"].equals(
        small_platform.events["ts"]
    )


def test_entity_schema(small_platform):
    p = small_platform
    assert tuple(p.creators.columns) == CREATOR_COLUMNS
    assert tuple(p.items.columns) == ITEM_COLUMNS
    assert tuple(p.users.columns) == USER_COLUMNS
    assert tuple(p.events.columns) == EVENT_COLUMNS
    assert tuple(p.comments.columns) == COMMENT_COLUMNS
    assert len(p.creators) == 30 and len(p.items) == 400 and len(p.users) == 600
    assert p.creators["creator_id"].str.fullmatch(r"c\d{4}").all()
    assert p.items["item_id"].str.fullmatch(r"i\d{5}").all()
    assert p.users["user_id"].str.fullmatch(r"u\d{6}").all()
    for df in (p.creators, p.items, p.users):
        assert str(df["created_at"].dt.tz) == "UTC"
    assert all(isinstance(t, list) and t for t in p.creators["topics"])
    assert set(p.items["kind"]) == {k.value for k in ItemKind}
    paid = p.items["kind"].isin(PAID_KINDS)
    assert (p.items.loc[paid, "price"] > 0).all() and (p.items.loc[paid, "currency"] == "CNY").all()
    assert p.items.loc[~paid, "price"].isna().all() and p.items.loc[~paid, "currency"].isna().all()
    assert all(isinstance(t, list) for t in p.items["tags"])
    attrs = p.users["attributes"].iloc[0]
    assert {"city_tier", "age_band", "device", "gender", "country", "signup_channel"} <= set(attrs)


def test_event_values(small_platform):
    e = small_platform.events
    assert e["ts"].dtype == np.int64 and e["ts"].is_monotonic_increasing
    assert e["event_id"].is_unique
    assert set(e["type"]) <= EVENT_TYPES
    assert set(e["channel"]) <= {c.value for c in Channel}
    views = e["type"] == "view"
    assert e.loc[views, "watch_ratio"].between(0, 1.5).all()
    assert e.loc[~views, "watch_ratio"].isna().all()
    assert (e.loc[views, "watch_seconds"] >= 0).all()
    money = e["type"].isin(MONEY_EVENTS)
    assert (e.loc[money, "amount"] > 0).all() and (e.loc[money, "currency"] == "CNY").all()
    assert e.loc[~money, "amount"].isna().all()
    assert e.loc[e["type"].isin(ITEM_EVENTS), "item_id"].notna().all()
    cfg = small_platform.config
    assert e["ts"].min() >= cfg.start_ms and e["ts"].max() < cfg.end_ms
    live = e["type"].isin(["live_join", "live_leave", "tip"])
    assert e.loc[live, "room_id"].notna().all()
    assert (e.loc[live, "room_id"] == e.loc[live, "item_id"]).all()
    follows = e[e["type"] == "follow"]
    assert all(isinstance(pp, dict) and pp["creator_id"].startswith("c") for pp in follows["props"])
    exp = e["experiment"].notna()
    assert set(e.loc[exp, "variant"]) <= {"control", "treatment"}
    assert e.loc[e["type"] == "exposure", "experiment"].notna().all()


def test_referential_integrity(small_platform):
    p = small_platform
    e = p.events
    assert e["user_id"].isin(p.users["user_id"]).all()
    assert e["item_id"].dropna().isin(p.items["item_id"]).all()
    assert set(p.items["creator_id"]) <= set(p.creators["creator_id"])
    kind = p.items.set_index("item_id")["kind"]
    creator = p.items.set_index("item_id")["creator_id"]
    for iid, k, prom in zip(p.items["item_id"], p.items["kind"], p.items["promotes"], strict=True):
        if k in PROMOTER_KINDS:
            assert all(kind[x] in PAID_KINDS and creator[x] == creator[iid] for x in prom)
        else:
            assert prom == []
    assert (p.items.loc[p.items["kind"] == "live", "promotes"].map(len) > 0).all()
    assert set(p.live_sessions["item_id"]) == set(p.items.loc[p.items["kind"] == "live", "item_id"])
    assert p.comments["item_id"].isin(p.items["item_id"]).all()
    assert p.comments["user_id"].isin(p.users["user_id"]).all()
    assert p.comments["comment_id"].is_unique
    # every comment row has its comment event, and the other way round
    ce = e[e["type"] == "comment"]
    assert sorted(pp["comment_id"] for pp in ce["props"]) == sorted(p.comments["comment_id"])
    # events never precede the user's sign-up
    created = p.users.set_index("user_id")["created_at"].astype("int64") // 10**6
    assert (e["ts"].to_numpy() >= created[e["user_id"]].to_numpy()).all()


def test_live_sessions_and_live_events(small_platform):
    p = small_platform
    ls = p.live_sessions
    assert set(ls["state"]) <= {"scheduled", "live", "ended"}
    ended = ls[ls["state"] == "ended"]
    assert (ended["ended_at"] > ended["started_at"]).all()
    assert ls.loc[ls["state"] == "scheduled", "started_at"].isna().all()
    e = p.events
    lv = e[e["type"].isin(["live_join", "live_leave", "tip"])]
    win = ls.set_index("item_id")
    start = win["started_at"].astype("int64") // 10**6
    assert (lv["ts"].to_numpy() >= start[lv["room_id"]].to_numpy()).all()
    joins = e[e["type"] == "live_join"].groupby(["user_id", "room_id"])["ts"].min()
    leaves = e[e["type"] == "live_leave"].groupby(["user_id", "room_id"])["ts"].max()
    both = joins.index.intersection(leaves.index)
    assert len(both) > 0 and (leaves[both] >= joins[both]).all()


def test_funnel_order(small_platform):
    """No purchase without an earlier click on that item, no click on a promoted item without a view."""
    e = small_platform.events
    first = e.groupby(["user_id", "item_id", "type"])["ts"].min().unstack()
    buys = first["purchase"].dropna()
    assert len(buys) > 0
    assert (first.loc[buys.index, "click"] <= buys).all()
    assert (first.loc[buys.index, "add_to_cart"] <= buys).all()
    subs = e[e["type"] == "subscribe"]
    subs = subs[subs["props"].map(lambda pp: not pp["renewal"])]
    sk = list(zip(subs["user_id"], subs["item_id"], strict=True))
    assert (first.loc[sk, "click"].to_numpy() <= subs["ts"].to_numpy()).all()
    refunds = first["refund"].dropna()
    assert (first.loc[refunds.index, "purchase"] < refunds).all()
    views = first["view"]
    clicks = e[(e["type"] == "click") & e["props"].map(lambda pp: isinstance(pp, dict) and "via" in pp)]
    via = [pp["via"] for pp in clicks["props"]]
    seen = views.reindex(list(zip(clicks["user_id"], via, strict=True))).to_numpy()
    clicks_from_video = ~clicks["room_id"].notna().to_numpy()
    assert (seen[clicks_from_video] <= clicks["ts"].to_numpy()[clicks_from_video]).all()
    # each user buys an item at most once
    assert not e[e["type"] == "purchase"].duplicated(["user_id", "item_id"]).any()


def test_rates_believable():
    p = simulate_platform(SimConfig(seed=1, n_creators=60, n_items=600, n_users=1500, days=10))
    vc = p.events["type"].value_counts()
    ctr = vc["click"] / vc["impression"]
    assert 0.01 < ctr < 0.10
    assert vc["purchase"] / vc["view"] < 0.015
    assert vc["purchase"] > 100
    assert vc["refund"] / vc["purchase"] < 0.10
    for t in (
        "subscribe",
        "tip",
        "live_join",
        "live_leave",
        "like",
        "comment",
        "share",
        "follow",
        "exposure",
    ):
        assert vc.get(t, 0) > 0, t
    tr = p.truth
    inc = tr["channel_incremental_purchases"]
    conv = tr["conversions"]
    assert len(conv) == vc["purchase"] + (p.events["type"] == "subscribe").sum() - (
        p.events["props"].map(lambda pp: isinstance(pp, dict) and pp.get("renewal") is True).sum()
    )
    assert sum(tr["channel_shapley_purchases"].values()) == pytest.approx(len(conv))
    assert sum(inc.values()) <= len(conv)
    # channels really differ: per touch, a KOL link sells more than a push notification
    clicks = p.events[p.events["type"] == "click"]["channel"].value_counts()
    sold = conv["channel"].value_counts()
    assert sold.get("kol", 0) / clicks["kol"] > sold.get("push", 0) / clicks["push"]
    assert tr["experiment"]["true_rate_treatment"] > tr["experiment"]["true_rate_control"]


def test_truth_shapes(small_platform):
    tr = small_platform.truth
    U, N, K = 600, 400, len(tr["topics"])
    assert tr["user_taste"].shape == (U, K) == tr["user_taste_initial"].shape
    assert np.allclose(tr["user_taste"].sum(1), 1)
    assert tr["item_topics"].shape == (N, K)
    prop = tr["item_purchase_propensity"]
    paid = small_platform.items[small_platform.items["kind"].isin(PAID_KINDS)]["item_id"]
    assert set(prop.index) == set(paid) and prop.between(0, 1).all()
    assert set(tr["comment_labels"]["comment_id"]) == set(small_platform.comments["comment_id"])


def test_tastes_drift_toward_consumption(small_platform):
    """Users' tastes move toward the topics of what they watched during the simulation."""
    tr = small_platform.truth
    e = small_platform.events
    v = e[e["type"] == "view"]
    uidx = {u: k for k, u in enumerate(tr["user_ids"])}
    iidx = {i: k for k, i in enumerate(tr["item_ids"])}
    K = len(tr["topics"])
    W = np.zeros((len(uidx), K))
    np.add.at(W, v["user_id"].map(uidx).to_numpy(), tr["item_topics"][v["item_id"].map(iidx).to_numpy()])
    watched = W.sum(1) > 0
    W = W[watched] / W[watched].sum(1, keepdims=True)
    before = np.abs(tr["user_taste_initial"][watched] - W).sum(1)
    after = np.abs(tr["user_taste"][watched] - W).sum(1)
    assert after.mean() < before.mean()


def test_config_validation():
    with pytest.raises(ValueError, match="n_users"):
        SimConfig(n_users=0)
    with pytest.raises(ValueError, match="start"):
        SimConfig(start="not a date")
    with pytest.raises(ValueError, match="paid_share"):
        SimConfig(paid_share=1.5)
    with pytest.raises(TypeError):
        simulate_platform("big")  # type: ignore[arg-type]
