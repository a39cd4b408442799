"""knowcast.recommend: recommender algorithms, ranking policy, offline evaluation (pure logic).

Entry points:

* algorithms: :mod:`knowcast.recommend.algorithms` (``ALGORITHMS`` maps names to classes), the hybrid
  :class:`~knowcast.recommend.hybrid.HybridRanker` and :class:`~knowcast.recommend.hybrid.ScoreBlend`;
* page building: :class:`~knowcast.recommend.policy.RankingPolicy`, ``ColdStartRouter``;
* the next paid item: :class:`~knowcast.recommend.next_purchase.NextPurchaseModel`;
* evaluation: ``evaluate(model_factory, dataset, split="random", k=10) -> dict``, ``grid_search``;
* conformance: ``check_recommender(estimator)``.
"""

from knowcast.recommend.algorithms import (
    ALGORITHMS,
    EASE,
    ContentBased,
    ImplicitALS,
    ImplicitBPR,
    ItemKNN,
    MostPopular,
    PopularInSegment,
    PureSVD,
    RP3beta,
    UserKNN,
)
from knowcast.recommend.base import NotFittedError, Recommender, clone, fit_with
from knowcast.recommend.checks import check_recommender
from knowcast.recommend.datasets import InteractionData, from_events, from_frame
from knowcast.recommend.evaluation import evaluate, grid_search, make_split
from knowcast.recommend.hybrid import HybridRanker, ScoreBlend, tune_blend
from knowcast.recommend.next_purchase import NextPurchaseModel
from knowcast.recommend.policy import Catalog, ColdStartRouter, RankingPolicy, Recommendation, UserContext

__all__ = [
    "ALGORITHMS",
    "EASE",
    "Catalog",
    "ColdStartRouter",
    "ContentBased",
    "HybridRanker",
    "ImplicitALS",
    "ImplicitBPR",
    "InteractionData",
    "ItemKNN",
    "MostPopular",
    "NextPurchaseModel",
    "NotFittedError",
    "PopularInSegment",
    "PureSVD",
    "RP3beta",
    "RankingPolicy",
    "Recommendation",
    "Recommender",
    "ScoreBlend",
    "UserContext",
    "UserKNN",
    "check_recommender",
    "clone",
    "evaluate",
    "fit_with",
    "from_events",
    "from_frame",
    "grid_search",
    "make_split",
    "tune_blend",
]
