"""The next paid item to offer a user: paid items ranked by predicted purchase probability.

Why a separate model: buying a course is rare and driven by different signals than watching a video. The
strongest is the promotion link: a user who watched (most of) the short videos and lives that promote a
course is the one who buys it. Features per (user, paid item):

* ``promo_views``, ``promo_ratio``: views of the item's promoters by the user, and their summed watch ratio;
* ``direct_views``, ``direct_clicks``: the user's views / clicks / add-to-carts on the item itself;
* ``creator_affinity``: share of the user's events on this item's creator; ``tag_affinity``: cosine of the
  user's tag profile and the item's tags;
* ``item_buyers`` (log), ``item_conversion``: buyers / users reached by its promoters;
  ``price`` (log), ``kind``;
* ``user_purchases``, ``user_activity`` (log).

Training uses a time split of the events themselves: features from everything before ``cut``, label =
bought in the last ``label_days``. A LightGBM binary classifier turns features into probabilities; at
serving time features are rebuilt from all events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from knowcast.domain import PAID_KINDS, PROMOTER_KINDS
from knowcast.recommend.base import NotFittedError

__all__ = ["NextPurchaseModel", "PurchaseSuggestion"]

FEATURES = [
    "promo_views",
    "promo_ratio",
    "direct_views",
    "direct_clicks",
    "creator_affinity",
    "tag_affinity",
    "item_buyers",
    "item_conversion",
    "price",
    "kind",
    "user_purchases",
    "user_activity",
]
BUY_TYPES = ("purchase", "subscribe")


@dataclass
class PurchaseSuggestion:
    item_id: Any
    probability: float
    reason: str
    reason_code: str


def _as_list(v: Any) -> list:
    if isinstance(v, list | tuple | np.ndarray):
        return list(v)
    if v is None or (isinstance(v, float) and np.isnan(v)) or v == "":
        return []
    return str(v).split("|")


class NextPurchaseModel:
    """Rank paid items (courses, columns, e-books, memberships...) by purchase probability for a user.

    ``fit(events, items)``: ``events`` with ``user_id``, ``item_id``, ``type``, ``ts`` (epoch ms) and
    ``watch_ratio``; ``items`` with ``item_id``, ``kind``, ``creator_id``, ``price``, ``tags``, ``promotes``.
    """

    def __init__(
        self,
        label_days: float = 7.0,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.label_days = label_days
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- data preparation --------------------------------------------------------------------------
    def _prepare_items(self, items: pd.DataFrame) -> None:
        for col in ("item_id", "kind", "creator_id"):
            if col not in items.columns:
                raise ValueError(f"items have no column {col!r}")
        self.item_ids_ = items["item_id"].to_numpy()
        self._item_pos = {v: i for i, v in enumerate(self.item_ids_.tolist())}
        n = len(self.item_ids_)
        kinds = items["kind"].astype(str).to_numpy()
        self.paid_ = np.flatnonzero(np.isin(kinds, list(PAID_KINDS)))
        if len(self.paid_) == 0:
            raise ValueError("items contain no paid kind (course, column, ebook, audio, membership)")
        self._kind_code = pd.Categorical(kinds).codes.astype(np.float32)
        price = pd.to_numeric(items.get("price", pd.Series(np.nan, index=items.index)), errors="coerce")
        self._price = np.log1p(price.fillna(0).to_numpy(np.float64)).astype(np.float32)
        self._creator = pd.Categorical(items["creator_id"].astype(str)).codes.astype(np.int64)
        self._item_creator = sp.csr_matrix((np.ones(n), (np.arange(n), self._creator)))
        rows, cols = [], []
        if "promotes" in items.columns:
            promoter = np.isin(kinds, list(PROMOTER_KINDS))
            for i, (is_p, targets) in enumerate(zip(promoter, items["promotes"], strict=True)):
                if not is_p:
                    continue
                for t in _as_list(targets):
                    j = self._item_pos.get(t)
                    if j is not None:
                        rows.append(i)
                        cols.append(j)
        self._promotes = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        tags = items["tags"] if "tags" in items.columns else pd.Series([[]] * n)
        vocab: dict[str, int] = {}
        tr, tc = [], []
        for i, ts in enumerate(tags):
            for t in set(_as_list(ts)):
                tr.append(i)
                tc.append(vocab.setdefault(str(t), len(vocab)))
        t = sp.csr_matrix((np.ones(len(tr)), (tr, tc)), shape=(n, max(len(vocab), 1)))
        norms = np.sqrt(np.asarray(t.multiply(t).sum(axis=1)).ravel())
        norms[norms == 0] = 1
        self._tags = sp.csr_matrix(sp.diags(1 / norms) @ t)
        self.titles_ = items["title"].astype(str).to_numpy() if "title" in items.columns else None

    def _matrices(self, events: pd.DataFrame, users: pd.Index) -> dict[str, sp.csr_matrix]:
        # a hash index built once: ``isin``/``map`` over a dict rebuilt a list of every item per call (12 ms
        # of a 40 ms next_course request on the demo)
        index = getattr(self, "_item_index", None)
        if index is None:
            index = self._item_index = pd.Index(self.item_ids_.astype(object))
        i = index.get_indexer(events["item_id"].astype(object))
        u = users.get_indexer(events["user_id"])
        keep = (u >= 0) & (i >= 0)
        ev, u, i = events[keep], u[keep], i[keep]
        shape = (len(users), len(self.item_ids_))
        typ = ev["type"].to_numpy()

        def mat(mask: np.ndarray, vals: np.ndarray | None = None) -> sp.csr_matrix:
            v = np.ones(mask.sum()) if vals is None else vals[mask]
            return sp.csr_matrix((v, (u[mask], i[mask])), shape=shape)

        ratio = pd.to_numeric(ev.get("watch_ratio", pd.Series(0.0, index=ev.index)), errors="coerce")
        ratio = ratio.fillna(0).clip(0, 1).to_numpy()
        active = ~np.isin(typ, ["impression", "exposure"])
        return {
            "views": mat(typ == "view"),
            "ratio": mat(typ == "view", ratio),
            "clicks": mat(np.isin(typ, ["click", "add_to_cart"])),
            "buys": mat(np.isin(typ, list(BUY_TYPES))),
            "all": mat(active),
        }

    def _features(self, m: dict[str, sp.csr_matrix], rows: np.ndarray) -> np.ndarray:
        """Dense features for users ``rows`` x every paid item, shape ``(len(rows) * n_paid, n_features)``."""
        paid = self.paid_
        nu, npd = len(rows), len(paid)
        promo = self._promotes[:, paid]
        views, ratio, clicks, allm = (m[k][rows] for k in ("views", "ratio", "clicks", "all"))
        promo_views = (views @ promo).toarray()
        promo_ratio = (ratio @ promo).toarray()
        direct_views = views[:, paid].toarray()
        direct_clicks = clicks[:, paid].toarray()
        activity = np.asarray(allm.sum(axis=1)).ravel()
        by_creator = (allm @ self._item_creator).toarray() / np.maximum(activity, 1)[:, None]
        creator_aff = by_creator[:, self._creator[paid]]
        prof = allm @ self._tags
        pn = np.sqrt(np.asarray(prof.multiply(prof).sum(axis=1)).ravel())
        pn[pn == 0] = 1
        tag_aff = (sp.diags(1 / pn) @ prof @ self._tags[paid].T).toarray()
        cols = [
            promo_views,
            promo_ratio,
            direct_views,
            direct_clicks,
            creator_aff,
            tag_aff,
            np.broadcast_to(self._item_buyers[paid], (nu, npd)),
            np.broadcast_to(self._item_conversion[paid], (nu, npd)),
            np.broadcast_to(self._price[paid], (nu, npd)),
            np.broadcast_to(self._kind_code[paid], (nu, npd)),
            np.broadcast_to(self._user_buys[rows][:, None], (nu, npd)),
            np.broadcast_to(np.log1p(activity)[:, None], (nu, npd)),
        ]
        return np.stack([np.asarray(c, dtype=np.float32).ravel() for c in cols], axis=1)

    def _set_stats(self, m: dict[str, sp.csr_matrix]) -> None:
        buys = m["buys"].copy()
        buys.data[:] = 1
        buyers = np.asarray(buys.sum(axis=0)).ravel()
        reached = (m["views"] @ self._promotes).astype(bool).astype(np.float64)
        reach = np.asarray(reached.sum(axis=0)).ravel()
        self._item_buyers = np.log1p(buyers).astype(np.float32)
        self._item_conversion = (buyers / np.maximum(reach + buyers, 1)).astype(np.float32)
        self._user_buys = np.asarray(buys.sum(axis=1)).ravel().astype(np.float32)
        self._bought = m["buys"]

    # -- public API --------------------------------------------------------------------------------
    def fit(self, events: pd.DataFrame, items: pd.DataFrame) -> NextPurchaseModel:
        """Learn from a time split of ``events`` (features before the cut, purchases after it)."""
        import lightgbm as lgb

        for col in ("user_id", "item_id", "type", "ts"):
            if col not in events.columns:
                raise ValueError(f"events have no column {col!r}")
        self._prepare_items(items)
        ts = pd.to_numeric(events["ts"])
        cut = float(ts.max()) - self.label_days * 86_400_000
        hist, future = events[ts < cut], events[ts >= cut]
        users = pd.Index(pd.unique(hist["user_id"]))
        m = self._matrices(hist, users)
        self._set_stats(m)
        fut = self._matrices(future, users)["buys"][:, self.paid_].toarray() > 0
        already = m["buys"][:, self.paid_].toarray() > 0
        x = self._features(m, np.arange(len(users)))
        y = (fut & ~already).ravel()
        mask = ~already.ravel()
        if y[mask].sum() == 0:
            raise ValueError(f"no purchase of a paid item in the last {self.label_days} days to learn from")
        self.model_ = lgb.train(
            {
                "objective": "binary",
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_data_in_leaf": 50,
                "feature_fraction": 0.9,
                "seed": self.random_state,
                "num_threads": self.n_jobs,
                "deterministic": True,
                "force_row_wise": True,
                "verbose": -1,
            },
            lgb.Dataset(x[mask], y[mask].astype(np.int32), feature_name=FEATURES),
            num_boost_round=self.n_estimators,
        )
        self.train_rows_, self.train_positives_ = int(mask.sum()), int(y[mask].sum())
        # serving context: all events
        self.users_ = pd.Index(pd.unique(events["user_id"]))
        self._m = self._matrices(events, self.users_)
        self._set_stats(self._m)
        return self

    def _check(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this NextPurchaseModel is not fitted yet: call fit(events, items) first")

    def predict_proba(self, user_ids: Any) -> np.ndarray:
        """``(len(user_ids), n_paid)`` purchase probabilities over ``paid_item_ids``; bought items get 0."""
        self._check()
        rows = self.users_.get_indexer(list(np.atleast_1d(user_ids)))
        if (rows < 0).any():
            bad = list(np.atleast_1d(user_ids))[int(np.flatnonzero(rows < 0)[0])]
            raise ValueError(f"user_id {bad!r} has no events; use the cold-start lists for new users")
        x = self._features(self._m, rows)
        p = self.model_.predict(x, num_threads=self.n_jobs).reshape(len(rows), len(self.paid_))
        p[self._bought[rows][:, self.paid_].toarray() > 0] = 0.0
        return p

    @property
    def paid_item_ids(self) -> np.ndarray:
        self._check()
        return self.item_ids_[self.paid_]

    def recommend(self, user_id: Any, n: int = 5) -> list[PurchaseSuggestion]:
        """The ``n`` paid items this user is most likely to buy next, each with a readable reason."""
        p = self.predict_proba([user_id])[0]
        order = np.argsort(-p, kind="stable")[:n]
        row = self.users_.get_loc(user_id)
        views = self._m["views"][row]
        out = []
        for k in order:
            j = self.paid_[k]
            promoters = self._promotes[:, j].nonzero()[0]
            watched = np.intersect1d(views.indices, promoters)
            if len(watched):
                title = (
                    self.titles_[watched[0]] if self.titles_ is not None else str(self.item_ids_[watched[0]])
                )
                reason, code = f"Featured in {title}, which you watched", "promoted_by_watched"
            elif (self._m["all"][row] @ self._item_creator)[0, self._creator[j]] > 0:
                reason, code = "From a creator you watch", "creator_affinity"
            else:
                reason, code = "Popular with learners like you", "popular_segment"
            out.append(PurchaseSuggestion(self.item_ids_[j], float(p[k]), reason, code))
        return out

    def feature_importance(self) -> dict[str, float]:
        self._check()
        gains = self.model_.feature_importance(importance_type="gain")
        return dict(sorted(zip(FEATURES, map(float, gains), strict=True), key=lambda kv: -kv[1]))
