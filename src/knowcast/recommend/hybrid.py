"""Hybrid recommender: candidates from several sources, ordered by a learned ranker (LightGBM LambdaRank).

Why: every single algorithm is good at something (EASE at co-occurrence, RP3beta at the long tail,
UserKNN at taste neighbourhoods, popularity at what is hot, content at cold items). A ranker that sees all
their scores next to item and user context learns when to trust which.

Training (inside ``fit``, so no test data is ever touched):

1. hold out the last ``holdout_fraction`` of each user's interactions (by time when timestamps are given,
   ``holdout="time"``; at random with ``holdout="random"``);
2. fit every source on the rest, take the union of each source's top ``n_candidates`` as candidates;
3. build features per (user, candidate): each source's score, score relative to the user's best, rank in
   that source's list; item popularity, recency and mean interaction strength (watch-ratio history); user
   activity; item metadata (price, kind, creator popularity) and the user's affinity to the item's creator;
   the user's segment;
4. label = "is in the held-out part", train LambdaRank with one query per user, boosting from the first
   (primary) source's per-user z-score (LightGBM ``init_score``): the trees learn corrections to it;
5. choose the number of trees by ``cv_folds``-fold cross-validation over users, 0 included: 0 trees is the
   primary source's own order, and unless more trees beat it by ``min_gain`` on users they never saw, the
   hybrid serves exactly that order, so it cannot end below its primary source on the internal hold-out;
6. refit every source on all the data. At serving time steps 2-3 run on the fresh sources and the ranker
   orders the candidates; items outside the candidates rank after them, in the first source's order.

Features are per-user (z-score, score / user's best, rank) by default, not raw scores (``drop_features``
drops ``*_score``): raw scales shift between sources fitted on the hold-out's 80% and on all the data.
The trees are small and heavily regularised (7 leaves, 200 rows per leaf, L2 100): on MovieLens-sized data
(600-950 users) the default LightGBM settings memorised users and every tree lowered held-out NDCG.
"""

from __future__ import annotations

import copy
import fnmatch
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from knowcast.recommend.algorithms import EASE, ItemKNN, MostPopular, RP3beta, UserKNN
from knowcast.recommend.base import Recommender, clone, fit_with, top_n

__all__ = ["HybridRanker", "ScoreBlend", "default_sources", "holdout_split", "tune_blend"]


def default_sources() -> dict[str, Recommender]:
    """The candidate sources used when none are given (all cheap on catalogues up to ~20,000 items)."""
    return {
        "ease": EASE(lambda_=250.0),
        "rp3beta": RP3beta(alpha=1.0, beta=0.5, k=100),
        "item_knn": ItemKNN(k=100, shrink=10.0),
        "user_knn": UserKNN(k=50, shrink=10.0),
        "popular": MostPopular(),
    }


def holdout_split(
    user_items: sp.csr_matrix,
    fraction: float,
    timestamps: sp.csr_matrix | None = None,
    seed: int = 0,
    min_keep: int = 2,
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split each user's row into (kept, held out): the latest ``fraction`` (by ``timestamps``; at random if
    none) is held out, at least one item for users with more than ``min_keep`` interactions."""
    m = sp.csr_matrix(user_items, copy=True)
    m.sort_indices()
    rng = np.random.default_rng(seed)
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    key = rng.random(m.nnz)
    if timestamps is not None:
        t = sp.csr_matrix(timestamps)
        t.sort_indices()
        key = t.data.astype(np.float64) + key * 1e-6
    order = np.lexsort((key, rows))  # by user, then by key ascending
    pos = np.empty(m.nnz, dtype=np.int64)
    pos[order] = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    n_hold = np.where(counts > min_keep, np.maximum(1, np.floor(fraction * counts)), 0).astype(np.int64)
    hold = pos >= (counts - n_hold)[rows]
    data_keep = np.where(hold, 0, m.data)
    data_hold = np.where(hold, m.data, 0)
    # own copies of the structure: eliminate_zeros() rewrites it in place
    keep = sp.csr_matrix((data_keep, m.indices.copy(), m.indptr.copy()), shape=m.shape)
    held = sp.csr_matrix((data_hold, m.indices.copy(), m.indptr.copy()), shape=m.shape)
    keep.eliminate_zeros()
    held.eliminate_zeros()
    return keep, held


class HybridRanker(Recommender):
    """Candidates from ``sources`` re-ranked by a LightGBM LambdaRank model (see the module docstring).

    ``fit(user_items, timestamps=None, item_features=None, user_segments=None, items=None)``; ``items`` is
    an item metadata frame aligned with the columns (``price``, ``kind``, ``creator_id`` are used if there).
    Put the strongest source first: boosting starts from it and the ranker falls back to its order.

    After ``fit``: ``n_trees_`` (trees kept, 0 = the primary source's order), ``cv_curve_`` ((trees, mean
    NDCG@10 on held-out users) pairs), ``ranker_`` (the LightGBM booster, ``None`` with 0 trees).
    ``cv_folds < 2`` falls back to early stopping on the last 20% of queries (``early_stopping_rounds``).
    """

    def __init__(
        self,
        sources: dict[str, Recommender] | None = None,
        n_candidates: int = 50,
        holdout: str = "time",
        holdout_fraction: float = 0.2,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        num_leaves: int = 7,
        min_child_samples: int = 200,
        n_folds: int = 1,
        boost_from_primary: float = 1.0,
        early_stopping_rounds: int | None = 30,
        time_bins: int = 32,
        drop_features: tuple[str, ...] = ("*_score",),
        random_state: int = 0,
        n_jobs: int = 1,
        reg_lambda: float = 100.0,
        feature_fraction: float = 0.5,
        cv_folds: int = 3,
        min_gain: float = 0.005,
    ) -> None:
        self.sources = sources
        self.n_candidates = n_candidates
        self.holdout = holdout
        self.holdout_fraction = holdout_fraction
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.n_folds = n_folds
        self.boost_from_primary = boost_from_primary
        self.early_stopping_rounds = early_stopping_rounds
        self.time_bins = time_bins
        self.drop_features = drop_features
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.reg_lambda = reg_lambda
        self.feature_fraction = feature_fraction
        self.cv_folds = cv_folds
        self.min_gain = min_gain

    # -- fitting -----------------------------------------------------------------------------------
    def _fit(
        self,
        user_items: sp.csr_matrix,
        timestamps: sp.spmatrix | None = None,
        item_features: Any = None,
        user_segments: Any = None,
        items: pd.DataFrame | None = None,
    ) -> None:
        import lightgbm as lgb

        if self.holdout not in ("time", "random"):
            raise ValueError(f"holdout must be 'time' or 'random', got {self.holdout!r}")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        sources = default_sources() if self.sources is None else self.sources
        if not sources:
            raise ValueError("sources must name at least one recommender")
        self.source_names_ = list(sources)
        ts = sp.csr_matrix(timestamps) if timestamps is not None else None
        side = {"item_features": item_features, "user_segments": user_segments, "items": items}
        self._init_time_bins(ts)
        feats, labels, groups, inits, q_users, q_relevant = [], [], [], [], [], []
        for fold in range(max(1, self.n_folds)):
            use_ts = ts if self.holdout == "time" else None
            keep, held = holdout_split(
                user_items, self.holdout_fraction, use_ts, seed=self.random_state + fold
            )
            keep_ts = None
            if ts is not None:
                mask = keep.copy()
                mask.data[:] = 1.0
                keep_ts = sp.csr_matrix(ts.multiply(mask))
                keep_ts.sort_indices()
            fitted = {n: fit_with(clone(m), keep, timestamps=keep_ts, **side) for n, m in sources.items()}
            self._set_context(keep, keep_ts, items, user_segments)
            users = np.flatnonzero(np.diff(held.indptr) > 0)
            for start in range(0, len(users), 512):
                u = users[start : start + 512]
                x, pair_u, pair_i = self._features(fitted, u, keep[u])
                y = np.asarray(held[u][pair_u, pair_i]).ravel() > 0
                # a query without any positive teaches LambdaRank nothing
                has_pos = np.bincount(pair_u, weights=y, minlength=len(u)) > 0
                rows_kept = has_pos[pair_u]
                feats.append(x[rows_kept])
                labels.append(y[rows_kept].astype(np.int32))
                inits.append(self._init_score(x[rows_kept]))
                groups.append(np.bincount(pair_u[rows_kept], minlength=len(u))[has_pos])
                q_users.append(u[has_pos])
                q_relevant.append(np.diff(held.indptr)[u][has_pos])
        if not feats or sum(len(f) for f in feats) == 0:
            raise ValueError(
                "no held-out interaction reached the candidates: too little data to train a ranker"
            )
        x_all, y_all, g_all = np.vstack(feats), np.concatenate(labels), np.concatenate(groups)
        init_all = np.concatenate(inits)
        params = {
            "objective": "lambdarank",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "feature_fraction": self.feature_fraction,
            "eval_at": [self.EVAL_K],
            "seed": self.random_state,
            "num_threads": self.n_jobs,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        x_all = x_all[:, self._cols]
        self.cv_curve_: list[tuple[int, float]] = []
        if self.cv_folds >= 2 and len(g_all) >= 2 * self.cv_folds:
            n_trees = self._choose_rounds(
                params, x_all, y_all, g_all, init_all, np.concatenate(q_users), np.concatenate(q_relevant)
            )
        else:
            n_trees = self._early_stopped_rounds(params, x_all, y_all, g_all, init_all)
        self.n_trees_ = int(n_trees)
        self.ranker_: Any = None
        if self.n_trees_ > 0:
            train_set = lgb.Dataset(
                x_all, y_all, group=g_all, init_score=init_all, feature_name=self.feature_names_
            )
            self.ranker_ = lgb.train(params, train_set, num_boost_round=self.n_trees_)
        self.train_queries_ = int(len(g_all))
        # serve with sources that saw everything
        self.sources_ = {n: fit_with(clone(m), user_items, timestamps=ts, **side) for n, m in sources.items()}
        self._set_context(user_items, ts, items, user_segments)

    #: the cut-off of the NDCG that chooses the number of trees (the protocol's metric@10)
    EVAL_K = 10

    def _choose_rounds(
        self,
        params: dict[str, Any],
        x: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray,
        init: np.ndarray,
        q_users: np.ndarray,
        q_relevant: np.ndarray,
    ) -> int:
        """Number of trees by ``cv_folds``-fold cross-validation over users, 0 included.

        Why: with a few hundred users per dataset, early stopping on one small validation set picks noise,
        and every tree beyond what the data supports moves the order away from the primary source (on
        MovieLens each tree made held-out users' NDCG worse). Here each fold's ranker is scored on users it
        never saw at every checkpoint, from 0 trees (= the primary source's own order, since boosting starts
        from its z-score) up to ``n_estimators``; the averaged curve picks the count, and unless the best
        count beats 0 trees by ``min_gain`` (relative) the hybrid keeps the primary source's order.
        """
        import lightgbm as lgb

        rng = np.random.default_rng(self.random_state)
        uniq = np.unique(q_users)
        fold_of = dict(zip(uniq.tolist(), rng.permutation(len(uniq)) % self.cv_folds, strict=True))
        q_fold = np.array([fold_of[u] for u in q_users.tolist()])
        row_fold = np.repeat(q_fold, groups)
        step = max(1, self.n_estimators // 30)
        checkpoints = np.unique(np.r_[0, np.arange(step, self.n_estimators + 1, step), self.n_estimators])
        total = np.zeros(len(checkpoints))
        for f in range(self.cv_folds):
            tr, va = row_fold != f, row_fold == f
            if not va.any() or not tr.any():
                continue
            booster = lgb.train(
                params,
                lgb.Dataset(x[tr], y[tr], group=groups[q_fold != f], init_score=init[tr]),
                num_boost_round=self.n_estimators,
            )
            pred, done = init[va].astype(np.float64), 0
            for j, it in enumerate(checkpoints):
                if it > done:
                    pred = pred + booster.predict(x[va], start_iteration=done, num_iteration=it - done)
                    done = it
                total[j] += _ndcg_sum(pred, y[va], groups[q_fold == f], q_relevant[q_fold == f], self.EVAL_K)
        curve = total / len(groups)
        self.cv_curve_ = [(int(it), float(v)) for it, v in zip(checkpoints, curve, strict=True)]
        best = int(np.argmax(curve))
        if curve[best] <= curve[0] * (1.0 + self.min_gain):
            return 0
        return int(checkpoints[best])

    def _early_stopped_rounds(
        self, params: dict[str, Any], x: np.ndarray, y: np.ndarray, groups: np.ndarray, init: np.ndarray
    ) -> int:
        """Trees by early stopping on the last 20% of queries (``cv_folds < 2``; all of them if too few)."""
        import lightgbm as lgb

        if not self.early_stopping_rounds or len(groups) < 20:
            return self.n_estimators
        n_val = max(1, len(groups) // 5)
        cut = int(groups[:-n_val].sum())
        booster = lgb.train(
            params,
            lgb.Dataset(x[:cut], y[:cut], group=groups[:-n_val], init_score=init[:cut]),
            num_boost_round=self.n_estimators,
            valid_sets=[lgb.Dataset(x[cut:], y[cut:], group=groups[-n_val:], init_score=init[cut:])],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        return int(booster.best_iteration or self.n_estimators)

    def _init_time_bins(self, ts: sp.csr_matrix | None) -> None:
        """Global time bins (quantiles of interaction time) for the temporal-affinity features."""
        self._bin_edges: np.ndarray | None = None
        if ts is not None and ts.nnz and self.time_bins > 1:
            edges = np.unique(np.quantile(ts.data, np.linspace(0, 1, self.time_bins + 1)[1:-1]))
            self._bin_edges = edges

    def _init_score(self, x: np.ndarray) -> np.ndarray:
        """Where boosting starts: the primary source's per-user z-score, so the ranker learns corrections to
        the best single model instead of re-learning its ordering from scratch."""
        if not self.boost_from_primary:
            return np.zeros(len(x))
        z = x[:, self.all_feature_names_.index(f"{self.source_names_[0]}_z")]
        return self.boost_from_primary * np.nan_to_num(z, nan=-3.0)

    def _set_context(
        self,
        ui: sp.csr_matrix,
        ts: sp.csr_matrix | None,
        items: pd.DataFrame | None,
        user_segments: Any,
    ) -> None:
        """Item/user statistics the features read (recomputed for the ranker's and the serving data)."""
        binary = ui.copy()
        binary.data[:] = 1.0
        n_items = ui.shape[1]
        cnt = np.asarray(binary.sum(axis=0)).ravel()
        self._item_pop = np.log1p(cnt).astype(np.float32)
        wsum = np.asarray(ui.sum(axis=0)).ravel()
        self._item_strength = (wsum / np.maximum(cnt, 1)).astype(np.float32)
        if ts is not None and ts.nnz:
            t = sp.csr_matrix(ts).tocsc()
            last = np.zeros(n_items)
            nz = np.diff(t.indptr) > 0
            last[nz] = np.maximum.reduceat(t.data, t.indptr[:-1][nz])
            now = float(t.data.max())
            age = np.where(nz, (now - last) / 86400.0, np.nan)
            self._item_age = age.astype(np.float32)
        else:
            self._item_age = np.full(n_items, np.nan, dtype=np.float32)
        self._price = np.full(n_items, np.nan, dtype=np.float32)
        self._kind = np.full(n_items, -1, dtype=np.float32)
        self._creator_pop = np.full(n_items, np.nan, dtype=np.float32)
        self._creator_code: np.ndarray | None = None
        if items is not None:
            if "price" in items.columns:
                self._price = pd.to_numeric(items["price"], errors="coerce").to_numpy(np.float32)
            if "kind" in items.columns:
                self._kind = pd.Categorical(items["kind"].astype(str)).codes.astype(np.float32)
            if "creator_id" in items.columns:
                codes = pd.Categorical(items["creator_id"].astype(str)).codes.astype(np.int64)
                self._creator_code = codes
                n_c = int(codes.max()) + 1 if len(codes) else 0
                c_pop = np.bincount(codes, weights=cnt, minlength=n_c)
                self._creator_pop = np.log1p(c_pop[codes]).astype(np.float32)
                self._item_creator = sp.csr_matrix(
                    (np.ones(n_items, np.float32), (np.arange(n_items), codes)), shape=(n_items, n_c)
                )
        # temporal context: when an item was consumed vs when the user was active
        self._item_time: np.ndarray | None = None
        self._user_time: np.ndarray | None = None
        if ts is not None and ts.nnz and self._bin_edges is not None:
            t = sp.csr_matrix(ts)
            t.sort_indices()
            n_bins = len(self._bin_edges) + 1
            b = np.searchsorted(self._bin_edges, t.data, side="right")
            r = np.repeat(np.arange(t.shape[0]), np.diff(t.indptr))
            uh = np.zeros((t.shape[0], n_bins), np.float32)
            np.add.at(uh, (r, b), 1.0)
            ih = np.zeros((n_items, n_bins), np.float32)
            np.add.at(ih, (t.indices, b), 1.0)
            self._user_time = uh / np.maximum(uh.sum(axis=1, keepdims=True), 1.0)
            self._item_time = ih / np.maximum(ih.sum(axis=1, keepdims=True), 1.0)
            first = np.full(n_items, np.nan)
            tc = t.tocsc()
            nz = np.diff(tc.indptr) > 0
            first[nz] = np.minimum.reduceat(tc.data, tc.indptr[:-1][nz])
            self._item_first = first
            last_u = np.full(t.shape[0], np.nan)
            nzu = np.diff(t.indptr) > 0
            last_u[nzu] = np.maximum.reduceat(t.data, t.indptr[:-1][nzu])
            self._user_last = last_u
        self._segments: np.ndarray | None = None
        if user_segments is not None:
            self._segments = pd.Categorical(np.asarray(user_segments).astype(str)).codes.astype(np.float32)
        names = []
        for n in self.source_names_:
            names += [f"{n}_score", f"{n}_rel", f"{n}_z", f"{n}_rank"]
        names += ["item_pop", "item_strength", "item_age_days", "price", "kind", "creator_pop"]
        names += ["creator_affinity", "user_activity", "user_strength", "segment"]
        names += ["time_affinity", "item_first_minus_user_last_days"]
        self.all_feature_names_ = names
        drop = tuple(self.drop_features)
        self._cols = [k for k, n in enumerate(names) if not any(fnmatch.fnmatch(n, p) for p in drop)]
        self.feature_names_ = [names[k] for k in self._cols]

    def _features(
        self, models: dict[str, Recommender], user_ids: np.ndarray, rows: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Feature matrix over the candidate pairs of these users, with (row position, item) per pair."""
        n_items = rows.shape[1]
        seen_r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
        scores, ranks = {}, {}
        cand = np.zeros((rows.shape[0], n_items), dtype=bool)
        for name in self.source_names_:
            s = models[name].score(user_ids, rows)
            s[seen_r, rows.indices] = -np.inf
            ids, _ = top_n(s, self.n_candidates)
            rank = np.full(s.shape, self.n_candidates + 1, dtype=np.float32)
            valid = ids >= 0
            rr = np.repeat(np.arange(len(ids)), ids.shape[1]).reshape(ids.shape)
            rank[rr[valid], ids[valid]] = np.tile(np.arange(1, ids.shape[1] + 1), (len(ids), 1))[valid]
            cand[rr[valid], ids[valid]] = True
            scores[name], ranks[name] = s, rank
        pair_u, pair_i = np.nonzero(cand)
        cols = []
        for name in self.source_names_:
            s = scores[name]
            finite = np.where(np.isfinite(s), s, np.nan)
            top = np.nanmax(finite, axis=1)
            top = np.where(np.isfinite(top) & (top != 0), np.abs(top), 1.0)
            mu = np.nanmean(finite, axis=1)
            sd = np.nanstd(finite, axis=1) + 1e-9
            v = s[pair_u, pair_i]
            cols += [v, v / top[pair_u], (v - mu[pair_u]) / sd[pair_u], ranks[name][pair_u, pair_i]]
        binary = rows.copy()
        binary.data[:] = 1.0
        activity = np.asarray(binary.sum(axis=1)).ravel()
        strength = np.asarray(rows.sum(axis=1)).ravel() / np.maximum(activity, 1)
        if self._creator_code is not None:
            aff = np.asarray((binary @ self._item_creator).todense()) / np.maximum(activity, 1)[:, None]
            affinity = aff[pair_u, self._creator_code[pair_i]]
        else:
            affinity = np.full(len(pair_u), np.nan)
        if self._segments is not None:
            seg = np.where(
                user_ids < len(self._segments),
                self._segments[np.minimum(user_ids, len(self._segments) - 1)],
                -1,
            )
        else:
            seg = np.full(len(user_ids), -1.0)
        cols += [
            self._item_pop[pair_i],
            self._item_strength[pair_i],
            self._item_age[pair_i],
            self._price[pair_i],
            self._kind[pair_i],
            self._creator_pop[pair_i],
            affinity,
            np.log1p(activity)[pair_u],
            strength[pair_u],
            seg[pair_u],
        ]
        if self._user_time is not None and self._item_time is not None:
            known = user_ids < len(self._user_time)
            uidx = np.minimum(user_ids, len(self._user_time) - 1)
            uh = self._user_time[uidx] * known[:, None]
            cols.append((uh[pair_u] * self._item_time[pair_i]).sum(axis=1))
            last = np.where(known, self._user_last[uidx], np.nan)
            cols.append((self._item_first[pair_i] - last[pair_u]) / 86400.0)
        else:
            cols += [np.full(len(pair_u), np.nan), np.full(len(pair_u), np.nan)]
        x = np.column_stack(cols).astype(np.float32)
        return x, pair_u, pair_i

    # -- scoring -----------------------------------------------------------------------------------
    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        out = np.empty((rows.shape[0], self.n_items_), dtype=np.float32)
        primary = self.sources_[self.source_names_[0]]
        for start in range(0, rows.shape[0], 512):
            u, r = user_ids[start : start + 512], rows[start : start + 512]
            x, pair_u, pair_i = self._features(self.sources_, u, r)
            pred = np.zeros(0)
            if len(x):
                pred = self._init_score(x)
                if self.ranker_ is not None:
                    pred = pred + self.ranker_.predict(x[:, self._cols], num_threads=self.n_jobs)
            # below every candidate: the primary source's order squashed into (low - 2, low - 1)
            base = primary.score(u, r)
            lo = np.full(len(u), 0.0)
            if len(pred):
                np.minimum.at(lo, pair_u, pred)
            b_min = base.min(axis=1, keepdims=True)
            b_rng = np.maximum(base.max(axis=1, keepdims=True) - b_min, 1e-9)
            block = (lo[:, None] - 2.0 + (base - b_min) / b_rng).astype(np.float32)
            block[pair_u, pair_i] = pred
            out[start : start + 512] = block
        return out

    def _item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        return self.sources_[self.source_names_[0]]._item_similarity(item_ids)

    def feature_importance(self) -> dict[str, float]:
        """Gain of each ranker feature (which sources and signals the ranker leans on)."""
        self._check_fitted()
        if self.ranker_ is None:  # no tree earned its place: the primary source's order is served as is
            return {n: 0.0 for n in self.feature_names_}
        gains = self.ranker_.feature_importance(importance_type="gain")
        return dict(sorted(zip(self.feature_names_, map(float, gains), strict=True), key=lambda kv: -kv[1]))

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params["sources"] = copy.deepcopy(params["sources"])
        return params


def _ndcg_sum(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    """Sum over queries of NDCG@k of ``pred`` (rows grouped by query, ``groups`` sizes in order); the ideal
    DCG counts all ``n_relevant`` held-out items of a query, also those outside its candidates."""
    q = np.repeat(np.arange(len(groups)), groups)
    order = np.lexsort((-pred, q))
    starts = np.repeat(np.cumsum(groups) - groups, groups)
    pos = np.arange(len(q)) - starts
    gain = np.where(pos < k, 1.0 / np.log2(pos + 2.0), 0.0) * y[order]
    dcg = np.bincount(q, weights=gain, minlength=len(groups))
    ideal = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    idcg = ideal[np.clip(n_relevant, 1, k) - 1]
    return float((dcg / idcg).sum())


def _standardise(scores: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
    """Per-user z-scores over the items the user has not seen (seen items get the row minimum)."""
    s = scores.astype(np.float32, copy=True)
    r = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    s[r, rows.indices] = np.nan
    s[~np.isfinite(s)] = np.nan
    mu = np.nanmean(s, axis=1, keepdims=True)
    sd = np.nanstd(s, axis=1, keepdims=True) + 1e-9
    z = (s - mu) / sd
    lo = np.nanmin(z, axis=1, keepdims=True)
    return np.where(np.isnan(z), np.nan_to_num(lo, nan=0.0) - 1.0, z).astype(np.float32)


class ScoreBlend(Recommender):
    """A weighted sum of per-user standardised scores from several sources.

    The robust little brother of :class:`HybridRanker`: no second-stage model to overfit, just one weight
    per source, tuned on the validation part with :func:`tune_blend`. On small data (MovieLens 100K has
    943 users) it is the safer way to add neighbourhood and graph signals to EASE.
    """

    def __init__(
        self, sources: dict[str, Recommender] | None = None, weights: dict[str, float] | None = None
    ) -> None:
        self.sources = sources
        self.weights = weights

    def _fit(
        self,
        user_items: sp.csr_matrix,
        timestamps: sp.spmatrix | None = None,
        item_features: Any = None,
        user_segments: Any = None,
        items: pd.DataFrame | None = None,
    ) -> None:
        sources = default_sources() if self.sources is None else self.sources
        weights = {n: 1.0 for n in sources} if self.weights is None else dict(self.weights)
        unknown = set(weights) - set(sources)
        if unknown:
            raise ValueError(f"weights name unknown sources {sorted(unknown)}; sources: {sorted(sources)}")
        side = {
            "timestamps": timestamps,
            "item_features": item_features,
            "user_segments": user_segments,
            "items": items,
        }
        self.weights_ = {n: float(w) for n, w in weights.items() if w != 0}
        if not self.weights_:
            raise ValueError("every weight is 0: nothing to blend")
        self.sources_ = {n: fit_with(clone(sources[n]), user_items, **side) for n in self.weights_}

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        out = np.zeros((rows.shape[0], self.n_items_), dtype=np.float32)
        for n, w in self.weights_.items():
            out += w * _standardise(self.sources_[n].score(user_ids, rows), rows)
        return out

    def _item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        return next(iter(self.sources_.values()))._item_similarity(item_ids)

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params["sources"] = copy.deepcopy(params["sources"])
        return params


def tune_blend(
    sources: dict[str, Recommender],
    split_: Any,
    grid: dict[str, list[float]],
    k: int = 10,
    metric: str = "ndcg",
) -> tuple[dict[str, float], list[tuple[float, dict[str, float]]]]:
    """Choose :class:`ScoreBlend` weights on the validation part of ``split_`` (an evaluation ``Split``).

    Each source is fitted once on ``split_.train`` and scored once; every weight combination in ``grid``
    (source name -> candidate weights) is then only a weighted sum. The test part is never read.
    """
    import itertools

    from knowcast.recommend.evaluation import evaluate_ranking, fit_on

    truth = split_.valid
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    rows = split_.train.matrix[users]
    z = {}
    for name, model in sources.items():
        fitted = fit_on(clone(model), split_.train)
        z[name] = _standardise(fitted.score(users, rows), rows)
    seen_r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
    results = []
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)):
        w = dict(zip(names, values, strict=True))
        if not any(w.values()):
            continue
        s = sum(v * z[n] for n, v in w.items() if v)
        s[seen_r, rows.indices] = -np.inf
        ids, _ = top_n(s, k)
        rec = np.full((split_.train.n_users, k), -1, dtype=np.int64)
        rec[users] = ids
        results.append((evaluate_ranking(rec, truth, k)[metric], w))
    results.sort(key=lambda r: -r[0])
    return results[0][1], results
