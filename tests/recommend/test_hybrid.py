"""Hybrid ranker, score blend and the next-purchase model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.recommend import algorithms as A
from knowcast.recommend.base import Recommender
from knowcast.recommend.checks import check_recommender, synthetic_interactions
from knowcast.recommend.datasets import from_frame
from knowcast.recommend.evaluation import evaluate, make_split
from knowcast.recommend.hybrid import HybridRanker, ScoreBlend, _ndcg_sum, holdout_split, tune_blend


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


class _Noise(Recommender):
    """Random scores: a source that carries no signal at all."""

    def _fit(self, user_items):
        self.rng_ = np.random.default_rng(7)

    def _score(self, user_ids, rows):
        return np.random.default_rng(int(user_ids.sum())).random((rows.shape[0], self.n_items_), np.float32)


def test_hybrid_without_useful_trees_serves_its_primary_source_order():
    """Boosting starts from the primary source's z-score and cross-validation over users may choose 0
    trees: when the other sources are noise the hybrid ranks exactly like its primary source."""
    s = _clustered_split()
    m = HybridRanker(
        sources={"ease": A.EASE(20.0), "noise": _Noise()}, n_candidates=20, holdout="random", n_estimators=30
    ).fit(s.train.matrix)
    assert m.cv_curve_[0][0] == 0 and len(m.cv_curve_) > 2
    best = max(v for _, v in m.cv_curve_)
    assert (m.n_trees_ == 0) == (best <= m.cv_curve_[0][1] * (1 + m.min_gain))
    ease = A.EASE(20.0).fit(s.train.matrix)
    users = np.arange(50)
    hybrid_ids, _ = m.recommend(users, s.train.matrix[users], n=10)
    ease_ids, _ = ease.recommend(users, s.train.matrix[users], n=10)
    if m.n_trees_ == 0:
        assert np.array_equal(hybrid_ids, ease_ids)
        assert set(m.feature_importance().values()) == {0.0}
    r_h = evaluate(lambda: clone_hybrid(m), s, phase="valid")["ndcg@10"]
    r_e = evaluate(A.EASE(20.0), s, phase="valid")["ndcg@10"]
    assert r_h >= r_e - 0.01


def clone_hybrid(m: HybridRanker) -> HybridRanker:
    return HybridRanker(**m.get_params())


def test_hybrid_learns_trees_when_a_later_source_is_better():
    """Primary = popularity, second source = EASE on clustered tastes: the trees must earn their place."""
    s = _clustered_split()
    holder = []

    def build():
        holder.append(
            HybridRanker(
                sources={"pop": A.MostPopular(), "ease": A.EASE(20.0)},
                n_candidates=30,
                holdout="random",
                n_estimators=60,
                min_child_samples=20,
                n_folds=2,
            )
        )
        return holder[-1]

    r = evaluate(build, s, phase="valid")["ndcg@10"]
    pop = evaluate(A.MostPopular(), s, phase="valid")["ndcg@10"]
    assert holder[-1].n_trees_ > 0 and r > pop * 1.1
    assert holder[-1].feature_importance()["ease_rank"] + holder[-1].feature_importance()["ease_z"] > 0


def test_ndcg_sum_by_hand():
    # query 1: hit at rank 2 of 3, 2 relevant in all; query 2: hit at rank 1, 1 relevant
    pred = np.array([0.9, 0.8, 0.1, 0.5, 0.2])
    y = np.array([0, 1, 0, 1, 0])
    got = _ndcg_sum(pred, y, np.array([3, 2]), np.array([2, 1]), k=10)
    want = (1 / np.log2(3)) / (1 + 1 / np.log2(3)) + 1.0
    assert got == pytest.approx(want)


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
