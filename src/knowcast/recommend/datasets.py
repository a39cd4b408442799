"""Interaction datasets for training and offline evaluation, as one :class:`InteractionData` shape.

Why one shape: the evaluation harness, the benchmarks and the training service take "a dataset" and never
care whether it came from MovieLens files, the simulator or the store. Loaders here read the public
MovieLens copies in ``shared/data`` (never copied into the repository); :func:`from_events` turns any event
table (the simulator's, or an export from the store) into the same shape.

KuaiRec: only its captions and categories are in ``shared/data`` (the interaction matrices are not), so
there is no KuaiRec interaction loader; the simulator stands in for short-video feed data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = [
    "InteractionData",
    "from_events",
    "from_frame",
    "load_movielens_100k",
    "load_movielens_latest_small",
    "load_simulation",
]


@dataclass
class InteractionData:
    """A users x items interaction matrix with everything the algorithms may use around it.

    Attributes:
        matrix: CSR users x items, non-negative weights (1.0 for a plain positive interaction).
        timestamps: CSR with the same sparsity: the latest time (Unix seconds) of each interaction, or None.
        user_ids / item_ids: external ids; row ``u`` is ``user_ids[u]``, column ``i`` is ``item_ids[i]``.
        item_features: items x features (genre flags, tag counts...) or None; ``feature_names`` names them.
        user_segments: one label per user row (demographic or interest segment) or None.
        items: optional item metadata frame aligned with the columns (kind, creator_id, price, promotes...).
        name: a short label for tables.
    """

    matrix: sp.csr_matrix
    user_ids: np.ndarray
    item_ids: np.ndarray
    timestamps: sp.csr_matrix | None = None
    item_features: sp.csr_matrix | None = None
    feature_names: list[str] = field(default_factory=list)
    user_segments: np.ndarray | None = None
    items: pd.DataFrame | None = None
    item_titles: np.ndarray | None = None
    name: str = "data"

    def __post_init__(self) -> None:
        self.matrix = sp.csr_matrix(self.matrix, dtype=np.float32)
        n_users, n_items = self.matrix.shape
        if len(self.user_ids) != n_users:
            raise ValueError(f"user_ids has {len(self.user_ids)} entries, matrix has {n_users} rows")
        if len(self.item_ids) != n_items:
            raise ValueError(f"item_ids has {len(self.item_ids)} entries, matrix has {n_items} columns")
        if self.timestamps is not None:
            self.timestamps = sp.csr_matrix(self.timestamps, dtype=np.float64)
            if self.timestamps.shape != self.matrix.shape or self.timestamps.nnz != self.matrix.nnz:
                raise ValueError("timestamps must have the same shape and non-zeros as matrix")
        if self.item_features is not None and self.item_features.shape[0] != n_items:
            raise ValueError(
                f"item_features has {self.item_features.shape[0]} rows, expected {n_items} items"
            )
        if self.user_segments is not None and len(self.user_segments) != n_users:
            raise ValueError(f"user_segments has {len(self.user_segments)} entries, expected {n_users} users")

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.matrix.nnz)

    def user_index(self) -> dict[Any, int]:
        """External user id -> row."""
        return {u: i for i, u in enumerate(self.user_ids.tolist())}

    def item_index(self) -> dict[Any, int]:
        """External item id -> column."""
        return {v: i for i, v in enumerate(self.item_ids.tolist())}

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per interaction with ``user``, ``item`` (indices), ``weight`` and ``ts``."""
        coo = self.matrix.tocoo()
        df = pd.DataFrame(
            {"user": coo.row.astype(np.int64), "item": coo.col.astype(np.int64), "weight": coo.data}
        )
        if self.timestamps is not None:
            t = self.timestamps.tocoo()
            ts = pd.Series(t.data, index=pd.MultiIndex.from_arrays([t.row, t.col]))
            df["ts"] = ts.reindex(pd.MultiIndex.from_arrays([coo.row, coo.col])).to_numpy()
        else:
            df["ts"] = np.nan
        return df

    def with_matrix(self, matrix: sp.spmatrix, timestamps: sp.spmatrix | None = None) -> InteractionData:
        """The same users, items and side information with another interaction matrix (a split's part)."""
        return InteractionData(
            matrix=sp.csr_matrix(matrix),
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            timestamps=timestamps,
            item_features=self.item_features,
            feature_names=self.feature_names,
            user_segments=self.user_segments,
            items=self.items,
            item_titles=self.item_titles,
            name=self.name,
        )

    def subsample_users(self, n_users: int, seed: int = 0) -> InteractionData:
        """A random subset of users (all items kept): for fast tests."""
        if n_users >= self.n_users:
            return self
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(self.n_users, size=n_users, replace=False))
        return InteractionData(
            matrix=self.matrix[rows],
            user_ids=self.user_ids[rows],
            item_ids=self.item_ids,
            timestamps=None if self.timestamps is None else self.timestamps[rows],
            item_features=self.item_features,
            feature_names=self.feature_names,
            user_segments=None if self.user_segments is None else self.user_segments[rows],
            items=self.items,
            item_titles=self.item_titles,
            name=self.name,
        )


def from_frame(
    df: pd.DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
    weight_col: str | None = None,
    ts_col: str | None = None,
    item_ids: Sequence[Any] | None = None,
    name: str = "data",
) -> InteractionData:
    """Build :class:`InteractionData` from a long interaction table.

    Duplicated (user, item) pairs are merged: weights add up and the latest timestamp is kept. ``item_ids``
    fixes the column order (and keeps items without interactions, e.g. the whole catalogue).
    """
    for col in [user_col, item_col, *(c for c in (weight_col, ts_col) if c)]:
        if col not in df.columns:
            raise ValueError(f"interaction table has no column {col!r}; columns: {list(df.columns)}")
    if df[user_col].isna().any():
        raise ValueError(f"column {user_col!r} is empty at row {int(np.flatnonzero(df[user_col].isna())[0])}")
    if df[item_col].isna().any():
        raise ValueError(f"column {item_col!r} is empty at row {int(np.flatnonzero(df[item_col].isna())[0])}")
    users = pd.Index(pd.unique(df[user_col])).sort_values()
    items = pd.Index(pd.unique(df[item_col])).sort_values() if item_ids is None else pd.Index(item_ids)
    u = users.get_indexer(df[user_col])
    i = items.get_indexer(df[item_col])
    if (i < 0).any():
        row = int(np.flatnonzero(i < 0)[0])
        raise ValueError(f"row {row}: {item_col}={df[item_col].iloc[row]!r} is not in item_ids")
    if weight_col:
        w = pd.to_numeric(df[weight_col], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"row {row}: {weight_col}={df[weight_col].iloc[row]} is not a weight >= 0")
    else:
        w = np.ones(len(df))
    key = pd.DataFrame({"u": u, "i": i, "w": w})
    agg: dict[str, Any] = {"w": "sum"}
    if ts_col:
        key["t"] = pd.to_numeric(df[ts_col], errors="coerce").to_numpy(np.float64)
        if key["t"].isna().any():
            row = int(np.flatnonzero(key["t"].isna())[0])
            raise ValueError(f"row {row}: {ts_col}={df[ts_col].iloc[row]} is not a number")
        agg["t"] = "max"
    g = key.groupby(["u", "i"], sort=True).agg(agg).reset_index()
    shape = (len(users), len(items))
    # g is sorted by (user, item) and unique, so its order is exactly CSR order: build both on one structure
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(g["u"].to_numpy(), minlength=shape[0]), out=indptr[1:])
    indices = g["i"].to_numpy(np.int32)
    m = sp.csr_matrix((g["w"].to_numpy(np.float32), indices, indptr), shape=shape)
    ts = (
        sp.csr_matrix((g["t"].to_numpy(np.float64), indices.copy(), indptr.copy()), shape=shape)
        if ts_col
        else None
    )
    return InteractionData(
        matrix=m, user_ids=users.to_numpy(), item_ids=items.to_numpy(), timestamps=ts, name=name
    )


def load_movielens_100k(min_rating: float = 3.0, path: Any = None) -> InteractionData:
    """MovieLens 100K ``u.data``: ratings ``>= min_rating`` as positive interactions (weight 1).

    Item features: the 19 genre flags of ``u.item``. User segments: ``"<gender>-<age band>"`` from
    ``u.user`` (the popular-in-segment baseline uses them).
    """
    from knowcast.paths import shared_data

    base = shared_data("movielens", "ml-100k") if path is None else path
    ratings = pd.read_csv(f"{base}/u.data", sep="\t", names=["user_id", "item_id", "rating", "ts"])
    ratings = ratings[ratings["rating"] >= min_rating]
    item_cols = ["item_id", "title", "release", "video", "url"] + [f"g{k}" for k in range(19)]
    meta = pd.read_csv(f"{base}/u.item", sep="|", names=item_cols, encoding="latin-1")
    genres = [g.split("|")[0] for g in open(f"{base}/u.genre", encoding="latin-1").read().split("\n") if g]
    data = from_frame(ratings, ts_col="ts", item_ids=np.sort(meta["item_id"].to_numpy()), name="ml-100k")
    meta = meta.set_index("item_id").loc[data.item_ids]
    data.item_features = sp.csr_matrix(meta[[f"g{k}" for k in range(19)]].to_numpy(np.float32))
    data.feature_names = genres
    data.item_titles = meta["title"].to_numpy()
    users = pd.read_csv(f"{base}/u.user", sep="|", names=["user_id", "age", "gender", "occupation", "zip"])
    users = users.set_index("user_id").loc[data.user_ids]
    band = pd.cut(users["age"], [0, 24, 34, 44, 200], labels=["<25", "25-34", "35-44", "45+"]).astype(str)
    data.user_segments = (users["gender"] + "-" + band).to_numpy()
    return data


def load_movielens_latest_small(min_rating: float = 3.0, path: Any = None) -> InteractionData:
    """MovieLens latest-small ``ratings.csv`` (ratings ``>= min_rating``) with genres as item features."""
    from knowcast.paths import shared_data

    base = shared_data("movielens", "ml-latest-small") if path is None else path
    ratings = pd.read_csv(f"{base}/ratings.csv")
    ratings = ratings[ratings["rating"] >= min_rating]
    data = from_frame(
        ratings, user_col="userId", item_col="movieId", ts_col="timestamp", name="ml-latest-small"
    )
    movies = pd.read_csv(f"{base}/movies.csv").set_index("movieId").reindex(data.item_ids)
    genre_lists = movies["genres"].fillna("").str.split("|")
    names = sorted({g for gs in genre_lists for g in gs if g and g != "(no genres listed)"})
    col = {g: k for k, g in enumerate(names)}
    rows, cols = [], []
    for r, gs in enumerate(genre_lists):
        for g in gs:
            if g in col:
                rows.append(r)
                cols.append(col[g])
    data.item_features = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(data.n_items, len(names))
    )
    data.feature_names = names
    data.item_titles = movies["title"].fillna("").to_numpy()
    return data


#: Default weight of each event type when events become an implicit-feedback matrix.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "like": 2.0,
    "comment": 2.0,
    "share": 3.0,
    "click": 1.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "subscribe": 5.0,
    "live_join": 1.0,
}


def from_events(
    events: pd.DataFrame,
    items: pd.DataFrame | None = None,
    weights: dict[str, float] | None = None,
    min_watch_ratio: float = 0.3,
    name: str = "events",
) -> InteractionData:
    """Events (knowcast's event columns) -> implicit feedback.

    A ``view`` counts only if ``watch_ratio >= min_watch_ratio`` (a swipe-away is not interest); other event
    types add their weight from ``weights``; types not listed (impressions, refunds...) are ignored. With an
    ``items`` frame (``item_id``, ``kind``, ``tags``, ``creator_id``, ``price``) the whole catalogue becomes
    the columns, tags become item features and the frame is kept as ``data.items``.
    """
    w = DEFAULT_EVENT_WEIGHTS if weights is None else weights
    for col in ("user_id", "item_id", "type", "ts"):
        if col not in events.columns:
            raise ValueError(f"events have no column {col!r}")
    ev = events[events["type"].isin(list(w))].copy()
    ev = ev[ev["item_id"].notna()]
    if "watch_ratio" in ev.columns:
        is_view = ev["type"] == "view"
        ratio = pd.to_numeric(ev["watch_ratio"], errors="coerce").fillna(0.0)
        ev = ev[~is_view | (ratio >= min_watch_ratio)]
    ev["weight"] = ev["type"].map(w).astype(float)
    ts = ev["ts"]
    if np.issubdtype(ts.dtype, np.datetime64):
        ev["ts_s"] = ts.astype("int64") / 1e9
    else:
        ev["ts_s"] = pd.to_numeric(ts) / 1000.0  # epoch milliseconds
    item_ids = None if items is None else items["item_id"].to_numpy()
    data = from_frame(ev, weight_col="weight", ts_col="ts_s", item_ids=item_ids, name=name)
    if items is not None:
        meta = items.set_index("item_id").loc[data.item_ids].reset_index()
        data.items = meta
        if "tags" in meta.columns:
            # tags may be lists (simulator, store) or "a|b" strings (CSV)
            tag_lists = [
                list(t) if isinstance(t, list | tuple | np.ndarray) else str(t or "").split("|")
                for t in meta["tags"]
            ]
            extra = []
            for col in ("kind", "creator_id"):
                if col in meta.columns:
                    extra.append([f"{col}={v}" for v in meta[col].astype(str)])
            names = sorted({t for ts_ in tag_lists for t in ts_ if t} | {e for ex in extra for e in ex})
            col_of = {t: k for k, t in enumerate(names)}
            rows, cols = [], []
            for r, ts_ in enumerate(tag_lists):
                toks = [t for t in ts_ if t] + [ex[r] for ex in extra]
                for t in set(toks):
                    rows.append(r)
                    cols.append(col_of[t])
            data.item_features = sp.csr_matrix(
                (np.ones(len(rows), np.float32), (rows, cols)), shape=(data.n_items, len(names))
            )
            data.feature_names = names
        if "title" in meta.columns:
            data.item_titles = meta["title"].astype(str).to_numpy()
    return data


def load_simulation(
    config: Any = None, min_watch_ratio: float = 0.3, **config_kwargs: Any
) -> InteractionData:
    """Run ``knowcast.sim.simulate_platform`` and turn its events into :class:`InteractionData`."""
    from knowcast.sim import SimConfig, simulate_platform  # type: ignore[attr-defined]

    cfg = config if config is not None else SimConfig(**config_kwargs)
    result = simulate_platform(cfg)
    data = from_events(result.events, items=result.items, min_watch_ratio=min_watch_ratio, name="simulation")
    users = getattr(result, "users", None)
    if users is not None and "attributes" in getattr(users, "columns", []):
        # segment = gender and age band, the demographic cut popular-in-segment uses
        attrs = users.set_index("user_id")["attributes"].reindex(data.user_ids)
        data.user_segments = np.array(
            [
                f"{a.get('gender', '?')}-{a.get('age_band', '?')}" if isinstance(a, dict) else "unknown"
                for a in attrs
            ]
        )
    return data
