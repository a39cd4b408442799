"""Commercial value, churn / buy scores and growth advice: features on a hand-built log (SQLite and
PostgreSQL), the pure model helpers, and on a simulator run the models against trivial baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.analytics import creators as cr
from knowcast.analytics import models as mdl
from knowcast.analytics import queries as q
from knowcast.analytics import service

from .handmade import DAY, event, load, ts

ITEMS = [
    {"item_id": "k1", "kind": "course", "creator_id": "c1", "price": 100.0, "tags": ["python"]},
    {"item_id": "k2", "kind": "column", "creator_id": "c1", "price": 50.0, "tags": ["data"]},
    {"item_id": "v1", "kind": "short_video", "creator_id": "c1", "tags": ["python"], "promotes": ["k1"]},
    {"item_id": "v2", "kind": "short_video", "creator_id": "c1", "tags": ["data"], "promotes": ["k1", "k2"]},
    {"item_id": "L1", "kind": "live", "creator_id": "c1", "tags": ["data"], "promotes": ["k2"]},
    {"item_id": "v9", "kind": "short_video", "creator_id": "c2", "tags": ["cooking"]},
]
MIN = 1 / 60
ROWS = [
    # v1: first view at day 0 10:00; the first hour ends at 11:00
    ("view", ts(0, 10), "u1", "v1", {"watch_ratio": 0.8}),
    ("view", ts(0, 10, 30), "u2", "v1", {"watch_ratio": 0.4}),
    ("like", ts(0, 10, 5), "u1", "v1", {}),
    ("comment", ts(0, 10, 10), "u1", "v1", {}),
    ("share", ts(0, 10, 40), "u2", "v1", {}),
    ("view", ts(0, 12), "u3", "v1", {"watch_ratio": 1.0}),  # after the first hour
    ("follow", ts(0, 12), "u3", "v1", {}),
    ("purchase", ts(0, 11), "u1", "k1", {"amount": 100.0}),  # viewed v1 first: counts
    ("purchase", ts(0, 11), "u2", "k2", {"amount": 50.0}),  # k2 is not what v1 promotes
    ("purchase", ts(5, 0), "u3", "k1", {"amount": 100.0}),  # after the 3-day horizon
    # v2: first view day 1 00:00, both promoted items bought by its viewer
    ("view", ts(1, 0), "u4", "v2", {"watch_ratio": 0.5}),
    ("purchase", ts(1, 1), "u4", "k2", {"amount": 50.0}),
    ("purchase", ts(1, 2), "u4", "k1", {"amount": 100.0}),
    ("purchase", ts(1, 3), "u5", "k1", {"amount": 100.0}),  # u5 never saw v2
    # L1: live from day 2 12:00
    ("live_join", ts(2, 12), "u5", "L1", {"room_id": "L1"}),
    ("live_join", ts(2, 12, 10), "u6", "L1", {"room_id": "L1"}),
    ("comment", ts(2, 12, 5), "u5", "L1", {"room_id": "L1"}),
    ("purchase", ts(2, 13, 30), "u6", "k2", {"amount": 50.0, "room_id": "L1"}),
    ("view", ts(0, 9), "u1", "v9", {"watch_ratio": 0.3}),  # promotes nothing
    ("click", ts(2, 14), "u7", "k2", {}),  # interest in k2 that did not convert
    ("add_to_cart", ts(2, 14, 1), "u7", "k2", {}),
    ("click", ts(2, 15), "u8", "k1", {}),
]
COMMENTS = [
    ("m1", ts(2, 12, 5), "u5", "L1", "多少钱"),
    ("m2", ts(2, 12, 20), "u6", "L1", "HOW MUCH?"),
    ("m3", ts(2, 14), "u6", "L1", "怎么买"),  # after L1's first hour
    ("m4", ts(0, 10, 10), "u1", "v1", "讲得好"),
]


@pytest.fixture
def early(store):  # type: ignore[no-untyped-def]
    evs = [event(f"e{n}", t, at, u, i, **x) for n, (t, at, u, i, x) in enumerate(ROWS)]
    coms = [{"comment_id": c, "ts": at, "user_id": u, "item_id": i, "text": t} for c, at, u, i, t in COMMENTS]
    load(
        store.engine,
        creators=[{"creator_id": "c1", "topics": ["python", "data"]}, {"creator_id": "c2"}],
        items=ITEMS,
        events=evs,
        comments=coms,
    )
    return store


def test_early_signals_by_hand(early) -> None:  # type: ignore[no-untyped-def]
    sig = q.promoter_early_signals(early.engine, intent_phrases=cr.INTENT_PHRASES).set_index("item_id")
    assert set(sig.index) == {"v1", "v2", "L1", "v9"}
    v1 = sig.loc["v1"]
    assert v1["t0"] == ts(0, 10)
    assert (v1["first_hour_views"], v1["first_hour_viewers"]) == (2, 2)
    assert v1["first_hour_watch_ratio"] == pytest.approx(0.6)
    assert (v1["first_hour_likes"], v1["first_hour_comments"], v1["first_hour_shares"]) == (1, 1, 1)
    assert (v1["first_hour_follows"], v1["first_hour_intent_comments"]) == (0, 0)
    assert (v1["n_promoted"], v1["promoted_price"], v1["purchases"], v1["revenue"]) == (1, 100.0, 1, 100.0)
    v2 = sig.loc["v2"]
    assert (v2["n_promoted"], v2["promoted_price"]) == (2, 75.0)
    assert (v2["purchases"], v2["revenue"]) == (2, 150.0)
    live = sig.loc["L1"]
    assert (live["is_live"], live["first_hour_views"], live["first_hour_comments"]) == (1, 2, 1)
    assert np.isnan(live["first_hour_watch_ratio"])  # lives have joins, not watch ratios
    assert (
        live["first_hour_intent_comments"] == 2
    )  # 多少钱 and HOW MUCH (case-insensitive); not 怎么买 at 14h
    assert (live["purchases"], live["revenue"]) == (1, 50.0)
    assert (sig.loc["v9", "n_promoted"], sig.loc["v9", "purchases"]) == (0, 0)
    # a shorter horizon drops v2's sales? no: they come 1-2 h after its first view; a 1.5 h one drops L1's
    short = q.promoter_early_signals(early.engine, horizon_ms=int(1.4 * 3_600_000)).set_index("item_id")
    assert short.loc["L1", "purchases"] == 0 and short.loc["v2", "purchases"] == 1
    # without phrases nothing counts as intent
    assert q.promoter_early_signals(early.engine)["first_hour_intent_comments"].sum() == 0


def test_early_history_before_t0(early) -> None:  # type: ignore[no-untyped-def]
    sig = q.promoter_early_signals(early.engine).set_index("item_id")
    hist = ["creator_past_views", "creator_past_purchases", "creator_past_follows"]
    promoted = ["promoted_past_clicks", "promoted_past_purchases"]
    # v1 starts the log of c1: nothing before it
    assert sig.loc["v1", hist + promoted].tolist() == [0, 0, 0, 0, 0]
    # v2 (day 1 00:00): c1's three v1 views, the k1 and k2 purchases of day 0 and u3's follow; its promoted
    # k1 and k2 sold once each before it
    assert sig.loc["v2", hist].tolist() == [3, 2, 1]
    assert sig.loc["v2", promoted].tolist() == [0, 2]
    assert sig.loc["v2", "creator_past_conversion"] == pytest.approx(2 / 3)
    # L1 (day 2 12:00): v2's view too, and day 1's three purchases; k2 sold to u2 and u4 before it
    assert sig.loc["L1", hist].tolist() == [4, 5, 1]
    assert sig.loc["L1", promoted].tolist() == [0, 2]
    # the clicks of u7 and u8 on day 2 come after every t0 and no viewer made them
    assert sig["first_hour_clicks"].sum() == 0 and sig["first_hour_carts"].sum() == 0


def test_early_click_through(store) -> None:  # type: ignore[no-untyped-def]
    rows = [
        ("view", ts(0, 10), "u1", "v1", {"watch_ratio": 0.8}),
        ("click", ts(0, 10, 5), "u1", "k1", {}),  # a viewer clicks the promoted item: counts
        ("add_to_cart", ts(0, 10, 6), "u1", "k1", {}),  # and adds it to the cart: counts
        ("click", ts(0, 10, 10), "u2", "k1", {}),  # u2 has not viewed v1 yet
        ("view", ts(0, 10, 30), "u2", "v1", {"watch_ratio": 0.4}),
        ("view", ts(0, 10, 31), "u2", "v1", {"watch_ratio": 0.4}),  # twice: the click below counts once
        ("click", ts(0, 10, 40), "u2", "k1", {}),  # counts
        ("click", ts(0, 10, 45), "u2", "k2", {}),  # k2 is not what v1 promotes
        ("click", ts(0, 11, 30), "u1", "k1", {}),  # after the first hour
        ("purchase", ts(0, 11, 40), "u1", "k1", {"amount": 100.0}),
        ("view", ts(1, 0), "u4", "v2", {"watch_ratio": 0.5}),
    ]
    load(
        store.engine,
        creators=[{"creator_id": "c1"}, {"creator_id": "c2"}],
        items=ITEMS,
        events=[event(f"e{n}", t, at, u, i, **x) for n, (t, at, u, i, x) in enumerate(rows)],
    )
    sig = q.promoter_early_signals(store.engine).set_index("item_id")
    v1 = sig.loc["v1"]
    assert (v1["first_hour_views"], v1["first_hour_clicks"], v1["first_hour_carts"]) == (3, 2, 1)
    assert v1["first_hour_click_rate"] == pytest.approx(2 / 3)
    assert (v1["purchases"], v1["creator_past_views"]) == (1, 0)
    v2 = sig.loc["v2"]
    assert (v2["first_hour_clicks"], v2["first_hour_carts"], v2["first_hour_click_rate"]) == (0, 0, 0.0)
    # v2's history: v1's three views and the k1 purchase; k1 and k2 clicked five times before it
    assert v2[["creator_past_views", "creator_past_purchases", "promoted_past_clicks"]].tolist() == [3, 1, 5]


def test_promote_next_and_next_topics(early) -> None:  # type: ignore[no-untyped-def]
    d = q.paid_item_demand(early.engine, creator_id="c1").set_index("item_id")
    # k2: clicked and carted by u7 (no purchase); bought by u2, u4, u6
    assert d.loc["k2", ["clickers", "carters", "buyers", "open_users"]].tolist() == [1, 1, 3, 1]
    assert d.loc["k1", ["clickers", "buyers", "open_users"]].tolist() == [1, 4, 1]
    assert d.loc["k1", "revenue"] == pytest.approx(400.0)
    best = service.promote_next(early.engine, creator_id="c1", window_days=30)
    # k1: (4+1)/(1+0+2) x 100 x 2 = 333.3 ; k2: (3+1)/(1+1+2) x 50 x 2 = 100
    assert best["item_id"].tolist() == ["k1", "k2"]
    assert best["expected_revenue"].tolist() == pytest.approx([5 / 3 * 200, 100.0])
    with pytest.raises(ValueError, match="no paid item"):
        service.promote_next(early.engine, creator_id="nobody")
    t = service.next_topics(early.engine, window_days=3).set_index("tag")
    # the log ends on day 5: now = days 2-5 (L1's 2 joins + a click on k2: data 3; a click on k1: python 1),
    # before = days -1..2 (v1's 3 views: python; v2's view: data; v9: cooking)
    assert t.index.tolist() == ["data", "python"]  # declared topics only: "cooking" is a free hashtag
    assert t[["demand_now", "demand_before", "supply"]].to_dict("index") == {
        "data": {"demand_now": 3.0, "demand_before": 1.0, "supply": 3},
        "python": {"demand_now": 1.0, "demand_before": 3.0, "supply": 2},
    }
    assert t.loc["data", "questions"] == 3  # 多少钱 / HOW MUCH? / 怎么买 on L1: the question detector
    # score = growth x (demand + 10 x questions) / (supply + 1)
    assert t.loc["data", "score"] == pytest.approx(4 / 2 * (3 + 30) / 4)
    mine = service.next_topics(early.engine, creator_id="c1", window_days=3)
    assert {"creator_items", "audience_share"} <= set(mine.columns)


def test_rising_topics_pure() -> None:
    now = pd.Series({"a": 100.0, "b": 100.0, "c": 10.0})
    before = pd.Series({"a": 100.0, "b": 10.0})
    supply = pd.Series({"a": 1, "b": 9, "c": 0})
    out = cr.rising_topics(now, before, supply).set_index("tag")
    # a: growth 1, 100/2 = 50 ; b: growth 101/11, 100/10 = 10 -> 91.8 ; c: growth 11, 10/1 -> 110
    assert out.index.tolist() == ["c", "b", "a"]
    assert out.loc["b", "score"] == pytest.approx(101 / 11 * 10)


# ---------------------------------------------------------------- pure model helpers


def test_time_split_has_no_label_leak() -> None:
    f = pd.DataFrame({"t": np.arange(0, 100) * DAY})
    train, test, cutoff = mdl.time_split(f, time_col="t", horizon=3 * DAY, end=100 * DAY, test_fraction=0.25)
    assert (train["t"] + 3 * DAY <= cutoff).all() and (test["t"] >= cutoff).all()
    assert (test["t"] + 3 * DAY <= 100 * DAY).all()  # only complete labels
    # complete rows: t = 0..97 days; cutoff at 75 % of that span = day 72.75
    assert cutoff == int(0.75 * 97 * DAY) and len(test) == 97 - 72 and len(train) == 70
    with pytest.raises(ValueError, match="test_fraction"):
        mdl.time_split(f, time_col="t", horizon=DAY, end=100 * DAY, test_fraction=1.0)
    with pytest.raises(ValueError, match="complete label window"):
        mdl.time_split(f, time_col="t", horizon=99 * DAY, end=100 * DAY)


def test_evaluation_metrics_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    ev = mdl.evaluate_scores(y, p)
    assert ev.auc == pytest.approx(0.75)  # 3 of 4 (pos, neg) pairs ordered right
    assert ev.brier == pytest.approx(np.mean((p - y) ** 2))
    cal = mdl.calibration_table(y, p, bins=2, strategy="uniform")
    assert cal["n"].tolist() == [3, 1] and cal["observed"].tolist() == pytest.approx([1 / 3, 1.0])
    assert ev.to_dict()["n"] == 4
    heur = mdl.evaluate_scores(y, np.array([1, 5, 3, 9]), probabilities=False)
    assert heur.auc == pytest.approx(0.75) and np.isnan(heur.brier)
    with pytest.raises(ValueError, match="increasing names unknown"):
        mdl.ScoreModel(("a",), increasing=("b",)).fit(pd.DataFrame({"a": [0, 1] * 20}), np.array([0, 1] * 20))
    with pytest.raises(ValueError, match="single class"):
        mdl.ScoreModel(("a",)).fit(pd.DataFrame({"a": [0, 1]}), np.array([1, 1]))


def test_monotonic_model_learns_a_signal() -> None:
    rng = np.random.default_rng(0)
    x = rng.poisson(3, size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-(x - 4)))).astype(int)
    f = pd.DataFrame({"views": x, "noise": rng.normal(size=2000)})
    m = mdl.ScoreModel(("views", "noise"), increasing=("views",), max_iter=50).fit(f[:1500], y[:1500])
    p = m.predict_proba(pd.DataFrame({"views": np.arange(12), "noise": 0.0}))
    assert (np.diff(p) >= -1e-12).all()  # never decreases with views
    assert m.evaluate(f[1500:], y[1500:]).auc > 0.75


# ---------------------------------------------------------------- a simulator run


@pytest.mark.slow
def test_models_beat_trivial_baselines_on_a_simulator_run(sim_store) -> None:  # type: ignore[no-untyped-def]
    cv = service.commercial_value(sim_store.engine, horizon_days=3, test_fraction=0.5)
    rep = cv["report"]
    assert rep.model.n >= 30 and rep.n_train >= 150 and 0 < rep.model.base_rate < 1
    assert rep.model.auc > rep.baselines["base_rate"].auc + 0.1  # beats the trivial baseline (0.5)
    assert rep.model.brier < rep.baselines["base_rate"].brier  # and its calibration
    items = cv["items"]
    assert items["score"].between(0, 1).all() and items["score"].is_monotonic_decreasing
    churn = service.user_scores(sim_store.engine, target="churn", horizon_days=3, history_days=7, top=50)
    r = churn["report"]
    assert r.model.auc > 0.6 and r.model.auc > r.baselines["base_rate"].auc
    assert len(churn["segment"]) == 50 and churn["segment"]["score"].is_monotonic_decreasing
    buy = service.user_scores(sim_store.engine, target="buy", horizon_days=3, history_days=7)
    assert buy["report"].model.auc > 0.6
