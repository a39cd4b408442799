"""Ranking policy: filters, boosts, paid spacing, MMR diversity, creator caps, reasons, cold start."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from knowcast.recommend.algorithms import ContentBased, ItemKNN, PopularInSegment
from knowcast.recommend.checks import synthetic_interactions
from knowcast.recommend.policy import Catalog, ColdStartRouter, RankingPolicy, UserContext


def make_catalog() -> Catalog:
    kinds = ["short_video", "short_video", "course", "live", "short_video", "ebook", "short_video", "course"]
    creators = ["a", "a", "a", "b", "b", "c", "a", "c"]
    prices = [0, 0, 99, 0, 0, 19, 0, 199]
    feats = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 0.1], [0.5, 0.5]])
    return Catalog(
        kind=np.array(kinds),
        creator=np.array(creators),
        price=np.array(prices, float),
        live_now=np.array([False, False, False, True, False, False, False, False]),
        titles=np.array([f"T{i}" for i in range(8)]),
        features=feats,
    )


def test_filters_purchased_blocked_and_kinds():
    cat = make_catalog()
    ids = np.arange(8)
    scores = np.linspace(1, 0, 8)
    user = UserContext(purchased={2}, watched=[0])
    page = RankingPolicy(blocked_creators={"c"}, blocked_items={1}).rank(ids, scores, cat, user, n=8)
    got = [r.item for r in page]
    assert 2 not in got and 1 not in got and 5 not in got and 7 not in got
    feed = RankingPolicy(kinds={"short_video", "live"}).rank(ids, scores, cat, UserContext(), n=8)
    assert {cat.kind[r.item] for r in feed} <= {"short_video", "live"}


def test_live_now_boost_and_reason():
    cat = make_catalog()
    ids = np.array([0, 3, 4])  # relevance is min-max scaled: 1.0, 0.9, 0.0
    scores = np.array([1.0, 0.9, 0.0])
    page = RankingPolicy(live_boost=0.5).rank(ids, scores, cat, UserContext(), n=2)
    assert page[0].item == 3 and page[0].reason_code == "live_now" and page[0].reason == "Live now"
    page = RankingPolicy(live_boost=0.0).rank(ids, scores, cat, UserContext(), n=2)
    assert page[0].item == 0


def test_paid_items_at_most_every_k_slots():
    cat = make_catalog()
    ids = np.array([2, 7, 5, 0, 1, 4, 6])  # paid ones ranked first
    scores = np.array([1.0, 0.99, 0.98, 0.5, 0.4, 0.3, 0.2])
    page = RankingPolicy(paid_every=3, live_boost=0).rank(ids, scores, cat, UserContext(), n=7)
    paid_slots = [k for k, r in enumerate(page) if cat.is_paid[r.item]]
    assert paid_slots and all(b - a >= 3 for a, b in zip(paid_slots, paid_slots[1:], strict=False))
    assert page[0].item == 2  # the best paid item still leads


def test_creator_cap_and_mmr_diversity():
    cat = make_catalog()
    ids = np.array([0, 1, 6, 2, 4, 3])
    scores = np.array([1.0, 0.99, 0.98, 0.97, 0.5, 0.4])
    capped = RankingPolicy(max_per_creator=2, live_boost=0).rank(ids, scores, cat, UserContext(), n=6)
    creators = [cat.creator[r.item] for r in capped]
    assert max(creators.count(c) for c in set(creators)) <= 2
    plain = RankingPolicy(live_boost=0).rank(ids, scores, cat, UserContext(), n=2)
    diverse = RankingPolicy(diversity=0.7, live_boost=0).rank(ids, scores, cat, UserContext(), n=2)
    assert [r.item for r in plain] == [0, 1]
    # with diversity the second slot goes to an item unlike item 0
    assert diverse[0].item == 0 and cat.similarity(0, np.array([diverse[1].item]))[0] < 0.5


def test_because_you_watched_and_followed_creator_reasons():
    cat = make_catalog()
    page = RankingPolicy(live_boost=0).rank(
        np.array([1]), np.array([1.0]), cat, UserContext(watched=[0]), n=1
    )
    assert page[0].reason_code == "because_watched" and page[0].reason == "Because you watched T0"
    user = UserContext(followed_creators={"c"})
    page = RankingPolicy().rank(np.array([5]), np.array([1.0]), cat, user, n=1)
    assert page[0].reason_code == "followed_creator_new"
    page = RankingPolicy().rank(np.array([5]), np.array([1.0]), cat, UserContext(segment="x"), n=1)
    assert page[0].reason == "Popular with learners like you"


def test_policy_rejects_bad_parameters():
    with pytest.raises(ValueError, match="diversity"):
        RankingPolicy(diversity=2)
    with pytest.raises(ValueError, match="paid_every"):
        RankingPolicy(paid_every=0)
    with pytest.raises(ValueError, match="scores"):
        RankingPolicy().rank(np.arange(3), np.ones(2), make_catalog(), UserContext())


def test_cold_start_router_switches_after_first_events():
    d = synthetic_interactions()
    names = [f"f{k}" for k in range(d.item_features.shape[1])]
    personal = ItemKNN(k=20).fit(d.matrix)
    seg = PopularInSegment().fit(d.matrix, user_segments=d.user_segments)
    content = ContentBased().fit(d.matrix, item_features=d.item_features)
    item_events = np.asarray((d.matrix > 0).sum(axis=0)).ravel()
    new_items = np.argsort(item_events, kind="stable")[:2]
    item_events[new_items] = 0  # two brand-new items
    router = ColdStartRouter(personal, seg, content, feature_names=names)
    empty = sp.csr_matrix((1, d.matrix.shape[1]))
    ids, _, src = router.recommend(10_000, empty, item_events, n=10, segment="1")
    assert src[0] == "popular_segment" and "new_item" in src
    ids_seg, _ = seg.recommend_for_segment("1", n=10)
    assert ids[0] == ids_seg[0]
    ids, _, src = router.recommend(10_000, empty, item_events, n=10, interests=["f2"])
    assert src[0] == "onboarding" and d.item_features[ids[0], 2] > 0
    row = d.matrix[0]
    ids, _, src = router.recommend(0, row, item_events, n=10)
    assert src[0] == "personal" and not np.isin(ids, row.indices).any()
    assert set(new_items.tolist()) & set(ids[[3, 8]].tolist())
