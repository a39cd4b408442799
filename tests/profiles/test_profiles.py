"""Interest profiles (vectorised == sequential), activity (incremental == one pass), segments, rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.profiles.activity import ActivityProfiler
from knowcast.profiles.evaluate import next_tag_hit_rate
from knowcast.profiles.interest import InterestProfiler, ItemFeatures, behaviour_strength
from knowcast.profiles.segments import RuleSegment, Segmenter, segment_features

DAY = 86_400_000
TAGS = [["finance"], ["english"], ["finance", "english"], ["python"], ["python", "ai"], ["cooking"]]


def _events(n=4000, nu=60, seed=0):
    rng = np.random.default_rng(seed)
    pref = rng.integers(0, 3, nu)
    u = rng.integers(0, nu, n)
    item = np.where(rng.random(n) < 0.8, np.array([0, 1, 3])[pref[u]], rng.integers(0, 6, n))
    return pd.DataFrame(
        {
            "user_id": [f"u{x}" for x in u],
            "item_id": item,
            "type": rng.choice(
                ["view", "like", "purchase", "impression", "refund"], n, p=[0.6, 0.2, 0.1, 0.08, 0.02]
            ),
            "ts": rng.integers(0, 40 * DAY, n),  # unsorted on purpose, with ties
            "watch_ratio": rng.random(n),
            "amount": np.where(pref[u] == 0, 50.0, 5.0),
            "channel": rng.choice(["feed", "search", "push"], n),
            "device": rng.choice(["ios", "android"], n),
        }
    ), pref


def test_vectorised_update_equals_sequential_rule():
    ev, _ = _events()
    items = ItemFeatures.from_tags(range(6), TAGS)
    a = InterestProfiler(items, alpha=0.2, half_life_days=7).fit(ev)
    b = InterestProfiler(items, alpha=0.2, half_life_days=7)
    b._init_state()
    b.update_sequential(ev)
    assert a.user_ids_ == b.user_ids_
    np.testing.assert_allclose(a.U_, b.U_, rtol=0, atol=1e-12)
    # incremental: two time-ordered batches == one batch
    ev = ev.sort_values("ts", kind="stable")
    c = InterestProfiler(items, alpha=0.2, half_life_days=7)
    c.update(ev.iloc[:1500]).update(ev.iloc[1500:])
    d = InterestProfiler(items, alpha=0.2, half_life_days=7).fit(ev)
    np.testing.assert_allclose(c.vectors().loc[d.user_ids_].to_numpy(), d.U_, atol=1e-12)


def test_rule_matches_hand_computation_and_learns_preferences():
    items = ItemFeatures.from_tags(["a", "b"], [["x"], ["y"]])
    ev = pd.DataFrame(
        {
            "user_id": [1, 1],
            "item_id": ["a", "a"],
            "type": ["like", "view"],
            "ts": [0, 7 * DAY],
            "watch_ratio": [None, 0.5],
        }
    )
    p = InterestProfiler(items, alpha=0.5, half_life_days=7).fit(ev)
    u1 = 0.5 * 2.0  # 0 + 0.5 * (2 - 0)
    u2 = u1 * 0.5 + 0.5 * (0.5 - u1 * 0.5)  # one half-life of decay, then view b = 1 * 0.5
    assert p.vectors().loc[1, "x"] == pytest.approx(u2)
    assert p.vectors(as_of=14 * DAY).loc[1, "x"] == pytest.approx(u2 / 2)
    ev2, pref = _events()
    prof = InterestProfiler(ItemFeatures.from_tags(range(6), TAGS)).fit(ev2)
    top = prof.predict_top(k=1)["top1"]
    want = {0: "finance", 1: "english", 2: "python"}
    acc = np.mean([top[f"u{i}"] == want[pref[i]] for i in range(60)])
    assert acc > 0.9


def test_behaviour_strength_and_bad_input():
    ev = pd.DataFrame(
        {"type": ["view", "view", "purchase", "impression"], "watch_ratio": [0.3, None, None, 1.0]}
    )
    b = behaviour_strength(ev)
    assert b[0] == pytest.approx(0.3) and b[1] == pytest.approx(0.5) and b[2] == 4.0 and np.isnan(b[3])
    items = ItemFeatures.from_tags(range(6), TAGS)
    with pytest.raises(ValueError, match="'ts'"):
        InterestProfiler(items).fit(pd.DataFrame({"user_id": [1], "item_id": [0], "type": ["like"]}))
    with pytest.raises(ValueError, match="ts row 0"):
        InterestProfiler(items).fit(
            pd.DataFrame({"user_id": [1], "item_id": [0], "type": ["like"], "ts": ["not a time"]})
        )
    with pytest.raises(TypeError, match="row 0"):
        ItemFeatures.from_tags([1], ["finance"])  # type: ignore[list-item]


def test_activity_incremental_equals_one_pass_and_streaks():
    ev, _ = _events(3000)
    ev = ev.sort_values("ts", kind="stable")
    one = ActivityProfiler(tz_offset_hours=8).fit(ev).table()
    inc = ActivityProfiler(tz_offset_hours=8)
    for part in np.array_split(np.arange(len(ev)), 5):
        inc.update(ev.iloc[part])
    pd.testing.assert_frame_equal(one, inc.table().loc[one.index], check_dtype=False)
    # hand-made streak: days 0,1,2 then 5,6 -> longest 3, current 2 (alive on day 6)
    days = pd.DataFrame(
        {"user_id": [1] * 5, "type": ["view"] * 5, "ts": [d * DAY + 1000 for d in (0, 1, 2, 5, 6)]}
    )
    t = ActivityProfiler().update(days.iloc[:2]).update(days.iloc[2:]).table()
    assert (
        t.loc[1, "longest_streak_days"] == 3
        and t.loc[1, "streak_days"] == 2
        and t.loc[1, "n_active_days"] == 5
    )
    money = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "type": ["purchase", "refund", "view"],
            "ts": [0, DAY, DAY],
            "amount": [100, 30, None],
        }
    )
    a = ActivityProfiler().fit(money)
    tab = a.table()
    assert tab.loc[1, "spend"] == 70 and tab.loc[2, "spend"] == 0 and a.arpu() == 35
    assert tab.loc[1, "spend_level"] != "no spend" and tab.loc[2, "spend_level"] == "no spend"


def test_segments_and_rules():
    ev, pref = _events(6000, nu=90)
    items = ItemFeatures.from_tags(range(6), TAGS)
    v = InterestProfiler(items).fit(ev).vectors()
    act = ActivityProfiler().fit(ev).table()
    seg = Segmenter(k_range=(2, 5)).fit(segment_features(v, act, activity_weight=0.1))
    assert 2 <= seg.k_ <= 5 and seg.silhouette_ == max(seg.scores_.values())
    desc = seg.describe(v, act)
    assert sum(d["size"] for d in desc) == 90 and all(d["description"] for d in desc)
    h = Segmenter(method="hdbscan", min_cluster_size=5).fit(segment_features(v))
    assert len(h.assignments()) == 90
    kinds = pd.DataFrame(
        {"item_id": range(6), "kind": ["course", "course", "live", "course", "ebook", "live"]}
    )
    rule = RuleSegment(
        {
            "all": [
                {"event": "purchase", "item_kind": "course", "within_days": 30},
                {"profile": "spend", "op": ">=", "value": 100},
            ]
        }
    )
    members = rule.members(ev, act, kinds)
    now = ev["ts"].max()
    recent = ev[(ev.type == "purchase") & (ev.ts >= now - 30 * DAY) & ev.item_id.isin([0, 1, 3])].user_id
    expect = set(recent) & set(act.index[act.spend >= 100])
    assert members == expect and members
    neg = RuleSegment({"not": {"event": "live_join"}}).members(ev, act)
    assert neg == set(ev.user_id)
    with pytest.raises(ValueError, match="op"):
        RuleSegment({"profile": "spend", "op": "~", "value": 1})
    with pytest.raises(ValueError, match="expected one of"):
        RuleSegment({"all": [{"bogus": 1}]})


def test_next_tag_hit_rate_beats_popularity_on_structured_users():
    ev, _ = _events(6000, nu=80)
    ev = ev[ev.type != "impression"]
    res = next_tag_hit_rate(ev, ItemFeatures.from_tags(range(6), TAGS), dict(enumerate(TAGS)), k=1, n_next=5)
    assert res["profile"] > res["popularity"] + 0.2


def test_next_tag_predictor_personal_and_coverage():
    from knowcast.profiles.evaluate import NextTagPredictor, tune_next_tag

    # items 0-2 carry both a and b (so b adds nothing once a is chosen); item 3 carries c, item 4 d
    items = ItemFeatures.from_tags(range(5), [["a", "b"], ["a", "b"], ["a", "b"], ["c"], ["d"]])
    rows = [("u1", i, t) for t, i in enumerate([0, 1, 2, 0, 1, 3, 4, 3])]
    rows += [("u2", 4, t) for t in range(8)]
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]).assign(type="view", watch_ratio=1.0)
    ev["ts"] = ev["ts"] * DAY
    pred = NextTagPredictor(k=2, beta=0.0, half_life_days=None).fit(ev, items).predict(["u1", "u2", "new"])
    assert pred["u1"][0] == "a" and pred["u1"][1] in {"c", "d"}  # not "b": it covers nothing new
    assert pred["u2"][0] == "d"
    assert pred["new"][0] == "a"  # an unknown user gets the popularity-coverage set
    params, val = tune_next_tag(pd.concat([ev, ev.assign(ts=ev["ts"] + 9 * DAY)]), items,
                                {0: ["a", "b"], 1: ["a", "b"], 2: ["a", "b"], 3: ["c"], 4: ["d"]},
                                k=2, n_next=2, min_history=2)
    assert 0.0 <= val <= 1.0 and set(params) == {"half_life_days", "use_strength", "beta"}
