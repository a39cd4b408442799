"""The ranking policy around a model: business rules, diversity, creator fairness, cold start, reasons.

A model says how much a user may like each item; the policy decides what a page actually shows:

* **filters**: items already bought, blocked items and creators, kinds not wanted on this surface (the
  feed shows videos and lives, "next course" shows paid items);
* **live boost**: live rooms that are live now get ``+live_boost`` on a 0-1 relevance scale;
* **paid spacing**: in a feed, at most one paid item in any ``paid_every`` consecutive slots;
* **diversity** (MMR, Carbonell & Goldstein 1998): each slot takes the item maximising
  ``(1 - diversity) * relevance - diversity * max_sim(item, already chosen)``;
* **creator fairness**: at most ``max_per_creator`` items of one creator per page;
* **explanations**: every item carries a reason a person can read.

:class:`ColdStartRouter` picks the list source by how much we know: onboarding interests or the user's
segment for new users, the personal model after their first events, and it reserves slots for new items
(content-based) until they have feedback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from knowcast.domain import PAID_KINDS
from knowcast.recommend.algorithms import ContentBased, PopularInSegment, l2_normalize_rows
from knowcast.recommend.base import Recommender, top_n

__all__ = [
    "Catalog",
    "ColdStartRouter",
    "Recommendation",
    "RankingPolicy",
    "UserContext",
]

REASONS = {
    "live_now": "Live now",
    "followed_creator_new": "New from {creator}, a creator you follow",
    "because_watched": "Because you watched {title}",
    "popular_segment": "Popular with learners like you",
    "interest": "Matches your interest in {interest}",
    "new_item": "New on the platform",
    "popular": "Popular right now",
}


@dataclass
class Catalog:
    """Item metadata aligned with the model's item columns (index ``i`` is column ``i``)."""

    kind: np.ndarray
    creator: np.ndarray
    price: np.ndarray
    live_now: np.ndarray
    titles: np.ndarray | None = None
    created_at: np.ndarray | None = None
    features: sp.csr_matrix | np.ndarray | None = None
    creator_names: dict[Any, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.kind)
        for name in ("creator", "price", "live_now"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Catalog.{name} has {len(getattr(self, name))} entries, kind has {n}")
        self.price = np.asarray(self.price, dtype=np.float64)
        self.live_now = np.asarray(self.live_now, dtype=bool)
        self.kind = np.asarray(self.kind).astype(str)
        self.creator = np.asarray(self.creator)
        self._unit_features = None if self.features is None else l2_normalize_rows(self.features)
        # computed once: a string isin over 100,000 kinds costs milliseconds, and every page asks for it
        self._is_paid = np.isin(self.kind, list(PAID_KINDS)) & (np.nan_to_num(self.price) > 0)

    @property
    def n_items(self) -> int:
        return len(self.kind)

    @property
    def is_paid(self) -> np.ndarray:
        """Paid kinds with a positive price (a free course is not an upsell)."""
        return self._is_paid

    @classmethod
    def from_frame(
        cls,
        items: pd.DataFrame,
        live_now: Iterable[Any] = (),
        features: sp.csr_matrix | np.ndarray | None = None,
    ) -> Catalog:
        """From an items frame (``kind``, ``creator_id``, ``price``, optional ``title``, ``created_at``)
        in column order; ``live_now`` lists the item ids of rooms that are live at this moment."""
        for col in ("item_id", "kind", "creator_id"):
            if col not in items.columns:
                raise ValueError(f"items frame has no column {col!r}")
        live = items["item_id"].isin(set(live_now)).to_numpy()
        price = pd.to_numeric(items.get("price", pd.Series(0.0, index=items.index)), errors="coerce").fillna(
            0.0
        )
        created = None
        if "created_at" in items.columns:
            created = pd.to_datetime(items["created_at"], utc=True, errors="coerce").astype("int64") / 1e9
            created = created.to_numpy()
        return cls(
            kind=items["kind"].astype(str).to_numpy(),
            creator=items["creator_id"].to_numpy(),
            price=price.to_numpy(),
            live_now=live,
            titles=items["title"].astype(str).to_numpy() if "title" in items.columns else None,
            created_at=created,
            features=features,
        )

    def similarity(self, item: int, others: np.ndarray) -> np.ndarray:
        """Cosine similarity of item features between ``item`` and each of ``others`` (0 without features)."""
        if self._unit_features is None or len(others) == 0:
            return np.zeros(len(others))
        f = self._unit_features
        s = f[others] @ f[item].T
        return np.asarray(s.todense() if sp.issparse(s) else s, dtype=np.float64).ravel()

    def title(self, item: int) -> str:
        return str(self.titles[item]) if self.titles is not None else f"item {item}"


@dataclass
class UserContext:
    """What the policy knows about the user at request time (item ids are model columns)."""

    purchased: set[int] = field(default_factory=set)
    watched: Sequence[int] = ()  # most recent last
    followed_creators: set[Any] = field(default_factory=set)
    segment: str | None = None
    interests: Sequence[str] = ()
    now: float | None = None  # Unix seconds, for "new" items


@dataclass
class Recommendation:
    """One slot of a page: the item, its final score, a readable reason and the reason's code."""

    item: int
    score: float
    reason: str
    reason_code: str
    source: str = "model"


class RankingPolicy:
    """Turns model scores into a page (see the module docstring for each rule).

    ``diversity`` in [0, 1] is the MMR trade-off: 0 = pure relevance; ``similarity`` is a function
    ``(item, other_items) -> similarities`` (default: cosine of the catalogue's item features).
    """

    def __init__(
        self,
        kinds: Iterable[str] | None = None,
        exclude_purchased: bool = True,
        live_boost: float = 0.2,
        paid_every: int | None = None,
        blocked_items: Iterable[int] = (),
        blocked_creators: Iterable[Any] = (),
        diversity: float = 0.0,
        max_per_creator: int | None = None,
        new_item_days: float = 14.0,
        explain_threshold: float = 0.05,
    ) -> None:
        if not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {diversity}")
        if paid_every is not None and paid_every < 1:
            raise ValueError(f"paid_every must be >= 1, got {paid_every}")
        if max_per_creator is not None and max_per_creator < 1:
            raise ValueError(f"max_per_creator must be >= 1, got {max_per_creator}")
        self.kinds = None if kinds is None else frozenset(str(k) for k in kinds)
        self.exclude_purchased = exclude_purchased
        self.live_boost = live_boost
        self.paid_every = paid_every
        self.blocked_items = frozenset(int(i) for i in blocked_items)
        self.blocked_creators = frozenset(blocked_creators)
        self.diversity = diversity
        self.max_per_creator = max_per_creator
        self.new_item_days = new_item_days
        self.explain_threshold = explain_threshold

    def allowed(self, catalog: Catalog, user: UserContext) -> np.ndarray:
        """Boolean mask of items this surface may show this user."""
        ok = np.ones(catalog.n_items, dtype=bool)
        if self.kinds is not None:
            ok &= np.isin(catalog.kind, list(self.kinds))
        if self.blocked_items:
            ok[[i for i in self.blocked_items if 0 <= i < catalog.n_items]] = False
        if self.blocked_creators:
            ok &= ~np.isin(catalog.creator, list(self.blocked_creators))
        if self.exclude_purchased and user.purchased:
            ok[[i for i in user.purchased if 0 <= i < catalog.n_items]] = False
        return ok

    def rank(
        self,
        item_ids: np.ndarray,
        scores: np.ndarray,
        catalog: Catalog,
        user: UserContext,
        n: int = 10,
        source: str = "model",
        similarity: Callable[[int, np.ndarray], np.ndarray] | None = None,
    ) -> list[Recommendation]:
        """A page of at most ``n`` items from candidates ``item_ids`` with model ``scores`` (any order)."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        if item_ids.shape != scores.shape or item_ids.ndim != 1:
            raise ValueError(f"item_ids {item_ids.shape} and scores {scores.shape} must be equal 1-D shapes")
        ok = (item_ids >= 0) & (item_ids < catalog.n_items) & np.isfinite(scores)
        item_ids, scores = item_ids[ok], scores[ok]
        keep = self._allowed_among(item_ids, catalog, user)
        item_ids, scores = item_ids[keep], scores[keep]
        if len(item_ids) == 0:
            return []
        lo, hi = scores.min(), scores.max()
        rel = (scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores)
        rel = rel + self.live_boost * catalog.live_now[item_ids]
        sim_fn = similarity or catalog.similarity
        # a similarity that can answer a whole block at once (the service's per-request Gram matrix) is asked
        # once for candidates x candidates and once for page x history, instead of once per slot and item
        block = getattr(sim_fn, "block", None)
        cand_sim = block(item_ids, item_ids) if block is not None and self.diversity > 0 else None
        paid = catalog.is_paid[item_ids]
        # creators as small integer codes: the per-slot cap test is then one array lookup, not a string isin
        _, creator_code = np.unique(catalog.creator[item_ids], return_inverse=True)
        creator_count = np.zeros(int(creator_code.max()) + 1, dtype=np.int64)
        chosen_pos: list[int] = []
        last_paid = -(10**9)
        max_sim = np.zeros(len(item_ids))
        available = np.ones(len(item_ids), dtype=bool)
        while len(chosen_pos) < n and available.any():
            slot = len(chosen_pos)
            value = (1 - self.diversity) * rel - self.diversity * max_sim if self.diversity > 0 else rel
            if self.max_per_creator is not None:
                available &= creator_count[creator_code] < self.max_per_creator
            cand = available
            if self.paid_every is not None and slot - last_paid < self.paid_every:
                cand = available & ~paid
            if not cand.any():
                # nothing left, or only paid items the spacing rule forbids here: stop rather than break it
                break
            pos = int(np.argmax(np.where(cand, value, -np.inf)))
            chosen_pos.append(pos)
            available[pos] = False
            creator_count[creator_code[pos]] += 1
            if paid[pos]:
                last_paid = slot
            if self.diversity > 0 and available.any():
                rest = np.flatnonzero(available)
                if cand_sim is not None:
                    s = cand_sim[pos, rest]
                else:
                    s = sim_fn(int(item_ids[pos]), item_ids[rest])
                max_sim[rest] = np.maximum(max_sim[rest], s)
        # reasons only for the items on the page, with the user's history read once
        watched = np.asarray(list(user.watched)[-50:], dtype=np.int64)
        page = item_ids[chosen_pos]
        page_sims = block(page, watched) if block is not None and len(watched) else None
        return [
            Recommendation(
                item=int(item_ids[p]),
                score=float(rel[p]),
                source=source,
                **self._explain(
                    int(item_ids[p]),
                    catalog,
                    user,
                    source,
                    sim_fn,
                    watched,
                    None if page_sims is None else page_sims[k],
                ),
            )
            for k, p in enumerate(chosen_pos)
        ]

    def _allowed_among(self, item_ids: np.ndarray, catalog: Catalog, user: UserContext) -> np.ndarray:
        """:meth:`allowed` for the candidates only (a page looks at ~100 items, not the whole catalogue)."""
        ok = np.ones(len(item_ids), dtype=bool)
        if self.kinds is not None:
            ok &= np.isin(catalog.kind[item_ids], list(self.kinds))
        if self.blocked_items:
            ok &= ~np.isin(item_ids, list(self.blocked_items))
        if self.blocked_creators:
            ok &= ~np.isin(catalog.creator[item_ids], list(self.blocked_creators))
        if self.exclude_purchased and user.purchased:
            ok &= ~np.isin(item_ids, list(user.purchased))
        return ok

    def explain(
        self,
        item: int,
        catalog: Catalog,
        user: UserContext,
        source: str = "model",
        similarity: Callable[[int, np.ndarray], np.ndarray] | None = None,
    ) -> dict[str, str]:
        """The most specific true reason for showing ``item`` (``reason`` text and ``reason_code``)."""
        watched = np.asarray(list(user.watched)[-50:], dtype=np.int64)
        return self._explain(item, catalog, user, source, similarity or catalog.similarity, watched)

    def _explain(
        self,
        item: int,
        catalog: Catalog,
        user: UserContext,
        source: str,
        similarity: Callable[[int, np.ndarray], np.ndarray],
        watched: np.ndarray,
        watched_sims: np.ndarray | None = None,
    ) -> dict[str, str]:
        """:meth:`explain` with the history as an array and, when known, its similarities to ``item``."""
        if catalog.live_now[item]:
            return {"reason": REASONS["live_now"], "reason_code": "live_now"}
        creator = catalog.creator[item]
        if creator in user.followed_creators:
            is_new = True
            if catalog.created_at is not None and user.now is not None:
                is_new = (user.now - catalog.created_at[item]) <= self.new_item_days * 86400
            if is_new:
                name = catalog.creator_names.get(creator, str(creator))
                return {
                    "reason": REASONS["followed_creator_new"].format(creator=name),
                    "reason_code": "followed_creator_new",
                }
        other = watched != item  # "because you watched X" never explains X itself
        watched = watched[other]
        if len(watched):
            sims = similarity(item, watched) if watched_sims is None else watched_sims[other]
            if len(sims) and np.max(sims) > self.explain_threshold:
                best = int(watched[int(np.argmax(sims))])
                return {
                    "reason": REASONS["because_watched"].format(title=catalog.title(best)),
                    "reason_code": "because_watched",
                }
        if source == "onboarding" and user.interests:
            return {
                "reason": REASONS["interest"].format(interest=", ".join(user.interests[:2])),
                "reason_code": "interest",
            }
        if source == "new_item":
            return {"reason": REASONS["new_item"], "reason_code": "new_item"}
        if source == "popular_segment" or user.segment is not None:
            return {"reason": REASONS["popular_segment"], "reason_code": "popular_segment"}
        return {"reason": REASONS["popular"], "reason_code": "popular"}


class ColdStartRouter:
    """Chooses where a user's candidates come from, by what is known about the user and the items.

    * fewer than ``min_events`` interactions: onboarding interests (content model over the feature names
      the user picked) if any, else popular-in-segment; ``source`` says which;
    * otherwise the personal model;
    * in every case ``cold_item_slots`` positions (at ``cold_item_positions``) go to items with fewer than
      ``cold_item_max_events`` interactions, ranked by the content model, so new items get exposure until
      they have feedback.
    """

    def __init__(
        self,
        personal: Recommender,
        segment_popular: PopularInSegment,
        content: ContentBased | None = None,
        feature_names: Sequence[str] = (),
        min_events: int = 1,
        cold_item_max_events: int = 5,
        cold_item_positions: Sequence[int] = (3, 8),
    ) -> None:
        self.personal = personal
        self.segment_popular = segment_popular
        self.content = content
        self.feature_names = list(feature_names)
        self.min_events = min_events
        self.cold_item_max_events = cold_item_max_events
        self.cold_item_positions = tuple(cold_item_positions)

    def recommend(
        self,
        user_id: int,
        row: sp.spmatrix,
        item_events: np.ndarray,
        n: int = 10,
        segment: str | None = None,
        interests: Sequence[str] = (),
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Top ``n`` ids, scores and the source of each slot (``personal``, ``onboarding``,
        ``popular_segment`` or ``new_item``). ``item_events`` counts each item's interactions so far."""
        row = sp.csr_matrix(row)
        seen = row.indices
        if row.nnz >= self.min_events:
            ids, scores = self.personal.recommend(user_id, row, n=n)
            src = "personal"
        elif interests and self.content is not None and self.feature_names:
            cols = [self.feature_names.index(t) for t in interests if t in self.feature_names]
            if not cols:
                raise ValueError(f"none of the interests {list(interests)} is a known feature name")
            f = self.content.item_features_
            s = np.asarray((f[:, cols].sum(axis=1)), dtype=np.float32).ravel()
            s[seen] = -np.inf
            ids, scores = (a[0] for a in top_n(s[None, :], n))
            src = "onboarding"
        else:
            if segment is None and user_id < getattr(self.segment_popular, "n_users_", 0):
                ids, scores = self.segment_popular.recommend(user_id, row, n=n)
            else:
                ids, scores = self.segment_popular.recommend_for_segment(segment, n=n, seen=seen)
            src = "popular_segment"
        ids, scores = np.array(ids), np.array(scores, dtype=np.float32)
        sources = [src] * len(ids)
        if self.content is not None and self.cold_item_positions:
            cold = np.flatnonzero(np.asarray(item_events) < self.cold_item_max_events)
            cold = np.setdiff1d(cold, np.concatenate([seen, ids]))
            if len(cold):
                cs = self.content.score([user_id], row)[0][cold] if row.nnz else np.zeros(len(cold))
                order = np.argsort(-cs, kind="stable")
                picks = cold[order[: len(self.cold_item_positions)]]
                for pos, item in zip(self.cold_item_positions, picks, strict=False):
                    if pos < len(ids):
                        ids[pos] = item
                        sources[pos] = "new_item"
        return ids, scores, sources
