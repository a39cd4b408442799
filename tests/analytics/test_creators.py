"""Creator and personal-brand metrics on a hand-built log (SQLite and PostgreSQL), worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import text

from knowcast.analytics import creators as cr
from knowcast.analytics import service

from .handmade import D0, event, label, load, ts

CREATORS = [
    {"creator_id": "c1", "name": "Py", "topics": ["python", "data"]},
    {"creator_id": "c2", "name": "Snake", "topics": ["python"]},
    {"creator_id": "c3", "name": "Stats", "topics": ["data"]},
]
ITEMS = [
    {"item_id": "k1", "kind": "course", "creator_id": "c1", "price": 100.0, "tags": ["python"]},
    {"item_id": "k2", "kind": "column", "creator_id": "c2", "price": 50.0, "tags": ["python"]},
    {"item_id": "v1", "kind": "short_video", "creator_id": "c1", "tags": ["python"], "promotes": ["k1"]},
    {"item_id": "v2", "kind": "short_video", "creator_id": "c1", "tags": ["data"]},
    {"item_id": "L1", "kind": "live", "creator_id": "c1", "tags": ["python"], "promotes": ["k1"]},
    {"item_id": "v3", "kind": "short_video", "creator_id": "c2", "tags": ["python"], "promotes": ["k2"]},
    {"item_id": "v4", "kind": "short_video", "creator_id": "c3", "tags": ["data"]},
]  # fmt: skip
USERS = [{"user_id": f"u{i}", "attributes": {"city_tier": "1" if i <= 3 else "2"}} for i in range(1, 11)]
# (type, day, hour, user, item, extra)
ROWS = [
    ("view", 0, 2, "u1", "v1", {"watch_ratio": 1.0}),
    ("view", 0, 2, "u2", "v1", {"watch_ratio": 0.5}),
    ("view", 0, 3, "u3", "v1", {"watch_ratio": 0.95}),
    ("view", 1, 2, "u1", "v1", {"watch_ratio": 0.2}),
    ("like", 0, 2, "u1", "v1", {}),
    ("like", 0, 2, "u2", "v1", {}),
    ("comment", 0, 3, "u3", "v1", {}),
    ("share", 0, 2, "u1", "v1", {}),
    ("follow", 0, 2, "u2", "v1", {}),
    ("view", 1, 5, "u4", "v2", {"watch_ratio": 0.9}),
    ("like", 1, 5, "u4", "v2", {}),
    ("live_join", 2, 12, "u1", "L1", {"room_id": "L1"}),
    ("live_join", 2, 12, "u5", "L1", {"room_id": "L1"}),
    ("tip", 2, 12, "u5", "L1", {"room_id": "L1", "amount": 10.0}),
    ("comment", 2, 12, "u5", "L1", {"room_id": "L1"}),
    ("purchase", 2, 13, "u1", "k1", {"amount": 100.0}),  # u1 saw v1 and L1: 50 credited to each
    ("purchase", 2, 13, "u5", "k1", {"amount": 100.0, "room_id": "L1"}),  # saw L1 only; sold in the live
    ("view", 0, 20, "u6", "v3", {"watch_ratio": 0.3}),
    ("view", 1, 20, "u7", "v3", {"watch_ratio": 1.0}),
    ("purchase", 1, 21, "u7", "k2", {"amount": 50.0}),
    ("refund", 3, 9, "u7", "k2", {"amount": 10.0}),
    ("view", 3, 20, "u8", "v4", {"watch_ratio": 0.9}),
    ("view", 3, 21, "u1", "v4", {"watch_ratio": 0.5}),
    ("follow", 0, 9, "u9", None, {"source": "c2"}),
    ("follow", 5, 9, "u9", None, {"source": "c2"}),  # follows again: still one follower
    ("follow", 6, 9, "u10", None, {"source": "c3"}),
]
COMMENTS = [
    ("m1", 0, 3, "u3", "v1", None, "讲得太好了", 0.9),
    ("m2", 0, 3, "u2", "v1", None, "多少钱？怎么买", 0.5),
    ("m3", 2, 12, "u5", "L1", "L1", "求链接，讲得真好", None),  # not analysed yet: scored on the fly
    ("m4", 1, 20, "u7", "v3", None, "一般般", 0.3),
]


@pytest.fixture
def brand(store):  # type: ignore[no-untyped-def]
    evs = [event(f"e{n}", t, ts(d, h), u, i, **x) for n, (t, d, h, u, i, x) in enumerate(ROWS)]
    coms = [{"comment_id": c, "ts": ts(d, h), "user_id": u, "item_id": i, "room_id": r, "text": t}
            for c, d, h, u, i, r, t, _ in COMMENTS]  # fmt: skip
    load(store.engine, creators=CREATORS, items=ITEMS, events=evs, comments=coms)
    from knowcast.ingest.service import import_records

    import_records(store.engine, "users", USERS)
    with store.engine.begin() as c:
        for cid, *_, score in COMMENTS:
            if score is not None:
                c.execute(
                    text("UPDATE comments SET sentiment_score = :s WHERE id = :i"), {"s": score, "i": cid}
                )
    return store


def test_creator_summary_by_hand(brand) -> None:  # type: ignore[no-untyped-def]
    s = service.creators(brand.engine).set_index("creator_id")
    c1 = s.loc["c1"]
    # views: v1 4 + v2 1 + L1 2 joins; reach: v1 {u1,u2,u3} + v2 {u4} + L1 {u1,u5}
    assert (c1["views"], c1["reach"]) == (7, 6)
    assert (c1["likes"], c1["comments"], c1["shares"], c1["follows"]) == (3, 2, 1, 1)
    assert c1["engagement_rate"] == pytest.approx(7 / 7)
    assert c1["completion_rate"] == pytest.approx(3 / 5)  # ratios 1.0, .95, .9 of 5 views
    assert c1["direct_revenue"] == pytest.approx(210.0)  # 2 courses + a 10 CNY tip
    assert c1["revenue_per_1000_views"] == pytest.approx(210.0 * 1000 / 7)
    assert c1["attributed_revenue"] == pytest.approx(200.0)  # v1 50 + L1 150
    assert c1["attributed_rpm"] == pytest.approx(200.0 * 1000 / 7)
    # v1: 1 buyer of 3 viewers, L1: 2 of 2 -> (1 + 2) / (3 + 2)
    assert c1["video_to_course_conversion"] == pytest.approx(3 / 5)
    assert c1["followers"] == 1
    c2 = s.loc["c2"]
    assert c2["direct_revenue"] == pytest.approx(40.0)  # 50 sold, 10 refunded
    assert c2["followers"] == 1  # u9 followed twice
    assert c2["video_to_course_conversion"] == pytest.approx(1 / 2)
    assert c2["completion_rate"] == pytest.approx(1 / 2)
    assert s.loc["c3", "followers"] == 1 and s.loc["c3", "views"] == 2
    # net growth over the last 7 days of follows (days 0..6 all inside)
    assert s["net_growth_7d"].to_dict() == {"c1": 1, "c2": 1, "c3": 1}
    only = service.creators(brand.engine, creator_id="c2")
    assert only["creator_id"].tolist() == ["c2"]


def test_pillars_hours_and_share_of_voice(brand) -> None:  # type: ignore[no-untyped-def]
    p = service.content_pillars(brand.engine, creator_id="c1").set_index("tag")
    # python: v1 (4 views, 5 engagements), L1 (2 joins, 1 comment, 10 tip), k1 (200 sold)
    assert p.loc["python", ["items", "views", "engagements", "revenue"]].tolist() == [3, 6, 6, 210.0]
    assert p.loc["data", ["items", "views", "engagements"]].tolist() == [1, 1, 1]
    assert p.index.tolist() == ["python", "data"]  # by views
    h = service.best_hours(brand.engine, creator_id="c1", offset_hours=0)
    post = h[h["what"] == "post"]
    # hour 2: 3 views + 4 engagements = 7; hour 3: 1 + 1; hour 5: 1 + 1
    assert post["hour"].tolist()[0] == 2 and post["score"].tolist() == pytest.approx([7.0, 2.0, 2.0])
    live = h[h["what"] == "go_live"].set_index("hour")
    # the purchase in the live room counts for the live, at hour 13 (5 points), joins at 12 (2 + 1)
    assert live["score"].to_dict() == pytest.approx({13: 5.0, 12: 3.0})
    bj = service.best_hours(brand.engine, creator_id="c1")  # Beijing time: +8 h
    assert bj[bj["what"] == "post"]["hour"].tolist()[0] == 10
    sov = service.share_of_voice(brand.engine).set_index(["topic", "creator_id"])
    # python content: c1 v1 4 + L1 2 = 6 views, c2 v3 2 -> 6/8, 2/8 ; data: c1 v2 1, c3 v4 2
    assert sov.loc[("python", "c1"), "share_of_voice"] == pytest.approx(0.75)
    assert sov.loc[("python", "c2"), "share_of_voice"] == pytest.approx(0.25)
    assert sov.loc[("data", "c3"), "share_of_voice"] == pytest.approx(2 / 3)
    assert sov.loc[("data", "c3"), "rank"] == 1 and sov.loc[("data", "c1"), "rank"] == 2
    assert service.share_of_voice(brand.engine, topic="data")["creator_id"].tolist() == ["c3", "c1"]


def test_brand_sentiment_and_audience(brand) -> None:  # type: ignore[no-untyped-def]
    b = service.brand_sentiment(brand.engine)
    b = b.set_index(["creator_id", "date"])
    assert b.loc[("c1", label(0)), "comments"] == 2
    assert b.loc[("c1", label(0)), "sentiment"] == pytest.approx(0.7)
    assert b.loc[("c1", label(0)), "purchase_intent_comments"] == 1  # 多少钱
    assert b.loc[("c2", label(1)), "sentiment"] == pytest.approx(0.3)
    from knowcast.text.sentiment import default_model

    # an unanalysed comment gets the sentiment model's score, as the live pipeline would store it
    expected = default_model().predict_proba([COMMENTS[2][6]])[0]
    assert b.loc[("c1", label(2)), "sentiment"] == pytest.approx(expected)
    assert b.loc[("c1", label(2)), "purchase_intent_comments"] == 1  # 链接
    only = service.brand_sentiment(brand.engine, creator_id="c2")
    assert only["creator_id"].unique().tolist() == ["c2"]
    a = service.audience(brand.engine, "c1")
    seg = a["segments"].set_index("value")
    assert seg["viewers"].to_dict() == {"1": 3, "2": 2}  # u1-u3 tier 1; u4, u5 tier 2
    it = a["interests"].set_index("tag")
    # c1's viewers (u1..u5) watched: python v1 x4 + L1 x2; data v2 x1 + v4 x1 (u1)
    assert it["views"].to_dict() == {"python": 6.0, "data": 2.0}
    assert it.loc["python", "share"] == pytest.approx(0.75)


def test_intent_pattern_and_pure_helpers() -> None:
    texts = pd.Series(["这个课多少钱", "怎么买呀", "How much is it?", "讲得好", "where can I buy", "加油"])
    assert cr.intent_count(texts) == 4
    assert cr.tags_of('["a", "b"]') == ["a", "b"] and cr.tags_of("x") == ["x"] and cr.tags_of(None) == []
    assert D0 % 7 == 0
