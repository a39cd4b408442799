"""Hybrid ranker, score blend and the next-purchase model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.recommend import algorithms as A
from knowcast.recommend.checks import check_recommender, synthetic_interactions
from knowcast.recommend.datasets import from_frame
from knowcast.recommend.evaluation import evaluate, make_split
from knowcast.recommend.hybrid import HybridRanker, ScoreBlend, holdout_split, tune_blend


def test_holdout_split_by_time_holds_out_the_latest():
    d = synthetic_interactions()
    keep, held = holdout_split(d.matrix, 0.25, d.timestamps)
    assert (keep + held != d.matrix).nnz == 0 and keep.multiply(held).nnz == 0
    for u in range(10):
        if held[u].nnz:
            t = d.timestamps[u]
            held_ts = t[:, held[u].indices].data
            kept_ts = t[:, keep[u].indices].data
            assert held_ts.min() >= kept_ts.max()
    assert d.matrix.nnz == d.timestamps.nnz  # input untouched


def _clustered_split():
    d = synthetic_interactions(n_users=200, n_items=60, seed=1)
    coo = d.matrix.tocoo()
    df = pd.DataFrame({"user_id": coo.row, "item_id": coo.col, "ts": d.timestamps.tocoo().data})
    data = from_frame(df, ts_col="ts", item_ids=np.arange(60))
    data.item_features = d.item_features
    return make_split(data, "random", seed=0)


def test_hybrid_learns_and_explains_its_features():
    s = _clustered_split()
    m = HybridRanker(
        sources={"ease": A.EASE(20.0), "pop": A.MostPopular()},
        n_candidates=30,
        holdout="random",
        n_estimators=20,
    )
    r = evaluate(lambda: m, s, phase="valid")
    pop = evaluate(A.MostPopular(), s, phase="valid")
    assert r["ndcg@10"] > pop["ndcg@10"]
    imp = m.feature_importance()
    assert set(imp) == set(m.feature_names_) and "ease_rank" in imp
    with pytest.raises(ValueError, match="holdout"):
        HybridRanker(holdout="later").fit(s.train.matrix)


def test_blend_weights_tuned_on_validation_and_conformant():
    s = _clustered_split()
    sources = {"ease": A.EASE(20.0), "knn": A.ItemKNN(k=20), "pop": A.MostPopular()}
    w, results = tune_blend(sources, s, {"ease": [1.0], "knn": [0.0, 0.5], "pop": [0.0, 0.5]})
    assert len(results) == 4 and results[0][1] == w and results[0][0] >= results[-1][0]
    blend = ScoreBlend(sources, w)
    assert len(check_recommender(blend)) == 9
    with pytest.raises(ValueError, match="unknown sources"):
        ScoreBlend(sources, {"nope": 1.0}).fit(s.train.matrix)


def test_blend_of_one_source_ranks_like_it():
    d = synthetic_interactions()
    ease = A.EASE(10.0).fit(d.matrix)
    blend = ScoreBlend({"ease": A.EASE(10.0)}, {"ease": 2.0}).fit(d.matrix)
    users = np.arange(10)
    a, _ = ease.recommend(users, d.matrix[users], n=5)
    b, _ = blend.recommend(users, d.matrix[users], n=5)
    assert np.array_equal(a, b)


def test_next_purchase_beats_popularity_on_the_simulator():
    sim = pytest.importorskip("knowcast.sim")
    from knowcast.recommend.next_purchase import NextPurchaseModel

    p = sim.simulate_platform(
        sim.SimConfig(n_users=600, n_items=200, n_creators=20, days=21, seed=3, use_shared_data=False)
    )
    ev = p.events
    cut = ev["ts"].max() - 5 * 86_400_000
    train, test = ev[ev["ts"] < cut], ev[ev["ts"] >= cut]
    m = NextPurchaseModel(label_days=5, n_estimators=40).fit(train, p.items)
    ids = m.paid_item_ids
    buys = test[
        test["type"].isin(["purchase", "subscribe"])
        & test["item_id"].isin(set(ids))
        & test["user_id"].isin(set(m.users_))
    ]
    users = buys["user_id"].unique()
    if len(users) < 10:
        pytest.skip("too few purchases in this small simulation")
    proba = m.predict_proba(users)
    assert proba.shape == (len(users), len(ids)) and (proba >= 0).all() and (proba <= 1).all()
    pop = train[train["type"].isin(["purchase", "subscribe"])]["item_id"].value_counts()
    pop_top = ids[np.argsort(-np.array([pop.get(i, 0) for i in ids]), kind="stable")[:10]]
    hit_model = hit_pop = 0
    for k, u in enumerate(users):
        truth = set(buys.loc[buys["user_id"] == u, "item_id"])
        hit_model += bool(truth & set(ids[np.argsort(-proba[k])[:10]]))
        hit_pop += bool(truth & set(pop_top))
    assert hit_model > hit_pop
    sugg = m.recommend(users[0], n=3)
    assert len(sugg) == 3 and all(s.reason for s in sugg)
    assert sugg[0].probability >= sugg[-1].probability
    with pytest.raises(ValueError, match="no events"):
        m.predict_proba(["nobody"])
