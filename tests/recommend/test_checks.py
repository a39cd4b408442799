"""Every algorithm passes the conformance check (shapes like implicit, filtering, determinism...)."""

from __future__ import annotations

import pytest

from knowcast.recommend import algorithms as A
from knowcast.recommend.checks import check_recommender
from knowcast.recommend.hybrid import HybridRanker

ESTIMATORS = [
    A.MostPopular(),
    A.MostPopular(half_life_days=30.0),
    A.PopularInSegment(),
    A.ItemKNN(k=20),
    A.UserKNN(k=10),
    A.EASE(lambda_=50.0),
    A.PureSVD(factors=8),
    A.RP3beta(k=20),
    A.ImplicitALS(factors=8, iterations=5),
    A.ImplicitBPR(factors=8, iterations=20),
    A.ContentBased(),
    HybridRanker(
        sources={"ease": A.EASE(lambda_=50.0), "pop": A.MostPopular()}, n_candidates=15, n_estimators=20
    ),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: repr(e)[:60])
def test_check_recommender(estimator):
    passed = check_recommender(estimator)
    assert "filters" in passed and "deterministic" in passed and len(passed) == 9


def test_check_catches_a_broken_recommender():
    class Leaky(A.MostPopular):
        """Ignores filter_already_seen: the check must say so."""

        def recommend(
            self, user_ids, user_items, n=10, filter_already_seen=True, filter_items=None, items=None
        ):
            return super().recommend(user_ids, user_items, n, False, filter_items, items)

    with pytest.raises(AssertionError, match="filter_already_seen"):
        check_recommender(Leaky())
