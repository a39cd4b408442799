"""Recommendations as a service: train versioned models from the store, serve them, swap and roll back.

This is the one file of :mod:`knowcast.recommend` that touches the database. It ties the pure algorithms
(:mod:`~knowcast.recommend.algorithms`), the ranking policy and the next-purchase model to the store:

* :func:`train` reads interactions with SQL (views weighted by watch ratio, likes, clicks, purchases...),
  fits an algorithm, measures it on a quick hold-out, writes a versioned artifact and activates it;
* artifacts are NumPy ``.npz`` files plus JSON metadata (and LightGBM's own text format for the
  next-purchase booster): nothing is unpickled, so an artifact directory cannot run code when loaded;
* an artifact is written into a temporary directory and moved into place with one ``os.replace``; only
  then is the ``active`` flag flipped, in one transaction. A crash or a full disk while writing leaves the
  served version untouched;
* every process keeps the active model in memory, keyed by (name, version). At most every
  :data:`CHECK_SECONDS` it asks the database which version is active (one cheap query) and, when that
  changed, loads the new one and swaps a single reference: requests in flight keep the object they hold,
  so a new version is picked up without a restart and without failing a request;
* :func:`recommend` scores the user's *current* row, built from their events in the store (including the
  ones newer than the model), so an item just watched leaves the feed at once and a course just bought is
  never offered; cold users get segment / onboarding / popular lists; every item carries a reason.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sqlalchemy import Engine, func, select, update

from knowcast.domain import PAID_KINDS
from knowcast.recommend.algorithms import ALGORITHMS, MostPopular, PopularInSegment, l2_normalize_rows
from knowcast.recommend.base import Recommender, _one_blas_thread, fit_with, top_n
from knowcast.recommend.cache import fingerprint, page_cache
from knowcast.recommend.policy import Catalog, RankingPolicy, Recommendation, UserContext
from knowcast.store.models import (
    Creator,
    Event,
    Item,
    KeyValue,
    LiveSession,
    ModelVersion,
    Promotes,
    User,
    UserProfile,
)

log = logging.getLogger("knowcast.recommend")

__all__ = [
    "BLOCKED_KEY",
    "CHECK_SECONDS",
    "EVENT_WEIGHTS",
    "SURFACES",
    "ModelUnavailable",
    "NotFound",
    "RecommendError",
    "ServedModel",
    "activate",
    "get_blocked",
    "invalidate",
    "list_models",
    "load_artifact",
    "recommend",
    "rollback",
    "served_model",
    "set_blocked",
    "similar",
    "store_dataset",
    "train",
]

#: How often (seconds) a process asks the database which model version is active.
CHECK_SECONDS = 2.0
#: Interaction weights; a view weighs its watch ratio (capped at 1.5), and swipe-aways below
#: ``MIN_WATCH_RATIO`` do not count as interest (they still hide the item from the feed).
EVENT_WEIGHTS: dict[str, float] = {
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
MIN_WATCH_RATIO = 0.1
BUY_TYPES = ("purchase", "subscribe")
#: Event types that mean "this user has seen this item" (hidden from the feed afterwards).
SEEN_TYPES = (
    "view",
    "like",
    "comment",
    "share",
    "click",
    "add_to_cart",
    "purchase",
    "subscribe",
    "live_join",
)
#: kv key of the blocked list: ``{"items": [...], "creators": [...]}``.
BLOCKED_KEY = "recommend.blocked"
SURFACES = ("feed", "live", "next_course")
#: The most recent events of a user read per request (a long history is summarised by its newest part).
MAX_USER_EVENTS = 1000
#: Candidates handed to the ranking policy (top by model score, after the hard filters).
N_CANDIDATES = 100
#: In a feed, at most one paid card in any this many consecutive slots.
FEED_PAID_EVERY = 3
#: Feed positions given to new items (fewer than ``COLD_ITEM_EVENTS`` interactions when trained).
COLD_ITEM_POSITIONS = (3, 8)
COLD_ITEM_EVENTS = 5
#: At most this many new items (the most recently created) compete for those positions.
COLD_ITEM_POOL = 2000
#: Factor models (ALS, BPR) over at least this many items answer the feed through an inverted-file index:
#: item factors clustered by k-means at training, only the ``IVF_PROBE`` share of clusters whose centroids
#: score best for the user is scored exactly (FAISS's IVF idea; a full scan of 100,000 x 64 floats is
#: memory-bound and dominates a request).
IVF_MIN_ITEMS = 20_000
IVF_PROBE = 0.1
FORMAT_VERSION = 1
#: Users x paid items above which the next-purchase model is not trained (its features are dense).
NPM_MAX_CELLS = 5_000_000


class RecommendError(ValueError):
    """Bad input to the service (names the field)."""

    def __init__(self, message: str, field: str = "query") -> None:
        super().__init__(message)
        self.field = field


class NotFound(LookupError):
    """Unknown model version or item."""


class ModelUnavailable(RuntimeError):
    """No model has been trained (or activated) under this name yet."""


# ------------------------------------------------------------------------------------------- reading
def _items_frame(engine: Engine) -> pd.DataFrame:
    with engine.connect() as c:
        rows = c.execute(
            select(
                Item.id, Item.kind, Item.creator_id, Item.price, Item.title, Item.tags, Item.created_at
            ).order_by(Item.id)
        ).all()
        promo = c.execute(select(Promotes.promoter_id, Promotes.item_id)).all()
        names = dict(c.execute(select(Creator.id, Creator.name)).all())
    items = pd.DataFrame(
        rows, columns=["item_id", "kind", "creator_id", "price", "title", "tags", "created_at"]
    )
    targets: dict[str, list[str]] = {}
    for p, i in promo:
        targets.setdefault(p, []).append(i)
    items["promotes"] = [targets.get(i, []) for i in items["item_id"]]
    items["tags"] = [list(t) if isinstance(t, list) else [] for t in items["tags"]]
    items["creator_id"] = items["creator_id"].fillna("").astype(str)
    items["title"] = items["title"].fillna("").astype(str)
    items["creator_name"] = [names.get(c) or c for c in items["creator_id"]]
    return items


def _interaction_events(engine: Engine, chunk_rows: int = 200_000) -> pd.DataFrame:
    """Every interaction event (types of :data:`EVENT_WEIGHTS`) with user, item, type, ts and watch ratio.

    Read through the DB-API cursor in chunks: for a million rows, SQLAlchemy's per-row result processing
    costs several times what SQLite or PostgreSQL take to produce them.
    """
    cols = ["user_id", "item_id", "type", "ts", "watch_ratio"]
    q = select(Event.user_id, Event.item_id, Event.type, Event.ts, Event.watch_ratio).where(
        Event.type.in_(sorted(EVENT_WEIGHTS)), Event.item_id.is_not(None)
    )
    sql = str(q.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))  # constants only
    frames = []
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute(sql)
        while rows := cur.fetchmany(chunk_rows):
            frames.append(pd.DataFrame.from_records(rows, columns=cols))
        cur.close()
    finally:
        raw.close()
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)


def _event_weights(types: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Per-event weight: ``EVENT_WEIGHTS`` by type, views weigh their watch ratio (0 below the minimum)."""
    w = pd.Series(types).map(EVENT_WEIGHTS).fillna(0.0).to_numpy(np.float64, copy=True)
    is_view = types == "view"
    r = np.nan_to_num(np.array(ratio, dtype=np.float64), nan=1.0)
    r = np.clip(r, 0.0, 1.5)
    w[is_view] = np.where(r[is_view] >= MIN_WATCH_RATIO, r[is_view], 0.0)
    return w


def _tag_features(items: pd.DataFrame) -> tuple[sp.csr_matrix, list[str]]:
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for r, tags in enumerate(items["tags"]):
        for t in {str(t) for t in tags if t}:
            rows.append(r)
            cols.append(vocab.setdefault(t, len(vocab)))
    f = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)),
        shape=(len(items), max(len(vocab), 1)),
        dtype=np.float32,
    )
    names = [""] * len(vocab)
    for t, k in vocab.items():
        names[k] = t
    return f, names


@dataclass
class _Interactions:
    matrix: sp.csr_matrix
    timestamps: sp.csr_matrix
    user_ids: np.ndarray
    events: pd.DataFrame


def _interactions(events: pd.DataFrame, item_pos: dict[str, int], n_items: int) -> _Interactions:
    """Weighted users x items matrix and, with the same sparsity, the latest time of each pair (seconds).

    Ids become codes with ``pd.Categorical`` (hash joins in C), and the per-pair maximum time is a sort on one
    int64 key: a million events take about a second.
    """
    items = list(item_pos)
    icode = pd.Categorical(events["item_id"], categories=items).codes.astype(np.int64)
    w = _event_weights(events["type"].to_numpy(), events["watch_ratio"].to_numpy())
    keep = (icode >= 0) & (w > 0)
    ev = events[keep]
    i, w = icode[keep], w[keep]
    ucat = pd.Categorical(ev["user_id"])
    users = np.asarray(ucat.categories).astype(str)
    u = ucat.codes.astype(np.int64)
    shape = (len(users), n_items)
    m = sp.csr_matrix((w.astype(np.float32), (u, i)), shape=shape, dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    key = u * n_items + i
    t = pd.to_numeric(ev["ts"]).to_numpy(np.float64) / 1000.0
    order = np.lexsort((t, key))  # by pair, latest last
    key, t = key[order], t[order]
    last = np.flatnonzero(np.r_[key[1:] != key[:-1], True])
    ts = sp.csr_matrix((t[last], (key[last] // n_items, key[last] % n_items)), shape=shape)
    ts.sort_indices()
    return _Interactions(m, ts, users, ev)


def _spark_interactions(spark: Any, path: str | Path, item_ids: np.ndarray) -> tuple[_Interactions, Any]:
    """Events of a Parquet export aggregated per user-item in Spark (same weights as
    :func:`_interactions`); this process receives the aggregated pairs only, not the events. Returns the
    interactions (no raw events) and the cached Spark pairs for the fit."""
    from knowcast.recommend.spark_als import event_pairs, pairs_to_csr, user_index

    try:
        pairs, users = event_pairs(spark, path, item_ids.tolist(), EVENT_WEIGHTS, MIN_WATCH_RATIO)
        user_ids = user_index(users)
    except Exception as exc:  # Spark's AnalysisException: a missing path, not Parquet, missing columns
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RecommendError(f"cannot read events from {path}: {first}", "from_parquet") from None
    matrix, ts = pairs_to_csr(pairs, len(user_ids), len(item_ids))
    empty = pd.DataFrame(columns=["user_id", "item_id", "type", "ts", "watch_ratio"])
    return _Interactions(matrix, ts, user_ids, empty), pairs


def _user_segments(engine: Engine, user_ids: np.ndarray) -> np.ndarray:
    with engine.connect() as c:
        rows = c.execute(
            select(UserProfile.user_id, UserProfile.segment).where(UserProfile.segment.is_not(None))
        )
        seg = dict(rows.all())
    return np.array([seg.get(u, "") or "" for u in user_ids.tolist()], dtype=str)


def store_dataset(engine: Engine) -> Any:
    """The store's interactions as :class:`~knowcast.recommend.datasets.InteractionData` (same weights as
    :func:`train`), for ``knowcast recommend evaluate --dataset store``."""
    from knowcast.recommend.datasets import InteractionData

    items = _items_frame(engine)
    if items.empty:
        raise RecommendError("the catalog is empty: import items first", "items")
    item_ids = items["item_id"].to_numpy().astype(str)
    data = _interactions(_interaction_events(engine), {v: i for i, v in enumerate(item_ids)}, len(items))
    if data.matrix.nnz == 0:
        raise RecommendError("no interactions to learn from: import events first", "events")
    features, names = _tag_features(items)
    return InteractionData(
        matrix=data.matrix,
        user_ids=data.user_ids,
        item_ids=item_ids,
        timestamps=data.timestamps,
        item_features=features,
        feature_names=names,
        user_segments=_user_segments(engine, data.user_ids),
        items=items,
        item_titles=items["title"].to_numpy(),
        name="store",
    )


# ------------------------------------------------------------------------------------------ artifacts
def _artifacts_root(artifacts_dir: str | Path | None) -> Path:
    if artifacts_dir is not None:
        return Path(artifacts_dir)
    from knowcast.config import get_settings

    return Path(get_settings().artifacts_dir)


def _sparse_to(out: dict[str, np.ndarray], prefix: str, m: sp.spmatrix) -> None:
    c = sp.csr_matrix(m)
    out[f"{prefix}.data"] = c.data
    out[f"{prefix}.indices"] = c.indices
    out[f"{prefix}.indptr"] = c.indptr
    out[f"{prefix}.shape"] = np.asarray(c.shape, dtype=np.int64)


def _sparse_from(z: Any, prefix: str) -> sp.csr_matrix:
    shape = tuple(int(v) for v in z[f"{prefix}.shape"])
    return sp.csr_matrix((z[f"{prefix}.data"], z[f"{prefix}.indices"], z[f"{prefix}.indptr"]), shape=shape)


def _model_state(model: Recommender) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, str]]:
    """Fitted attributes (``name_``) as arrays / sparse matrices / JSON scalars; nothing pickled."""
    arrays: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for key, value in vars(model).items():
        if not key.endswith("_") or key.startswith("_"):
            continue
        if sp.issparse(value):
            _sparse_to(arrays, f"model.{key}", value)
            kinds[key] = "sparse"
        elif isinstance(value, np.ndarray):
            arr = value.astype(str) if value.dtype == object else value
            arrays[f"model.{key}"] = arr
            kinds[key] = "array"
        elif isinstance(value, bool | int | float | str) or value is None:
            scalars[key] = value
        # anything else (implicit's engine object) is rebuilt from the arrays at load time
    return arrays, scalars, kinds


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, np.floating | np.integer):
        return _json_safe(x.item())
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_artifact(tmp: Path, files: dict[str, bytes | dict[str, np.ndarray]]) -> None:
    """Write every file of an artifact into ``tmp`` (npz for arrays, bytes as given), fsynced.

    A separate function so tests can make it fail midway (a full disk) and check nothing is half-served.
    """
    for name, content in files.items():
        path = tmp / name
        if isinstance(content, dict):
            arrays = {k: v.astype(str) if v.dtype == object else v for k, v in content.items()}
            with open(path, "wb") as fh:
                np.savez(fh, allow_pickle=False, **arrays)
        else:
            path.write_bytes(content)
        _fsync_file(path)


# ---------------------------------------------------------------------------------------------- train
@dataclass
class TrainReport:
    name: str
    version: int
    algorithm: str
    path: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    active: bool = True

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _quick_validation(
    factory: Callable[[], Recommender],
    x: sp.csr_matrix,
    side: dict[str, Any],
    k: int = 10,
    seed: int = 0,
    max_users: int = 2000,
) -> dict[str, float]:
    """Hold out 10% of the interactions at random, fit on the rest, Recall/NDCG@k on up to ``max_users``.

    A quick sanity number recorded with each version (and compared with the popular list measured on the
    same split), not the full protocol of :mod:`knowcast.recommend.evaluation`.
    """
    rng = np.random.default_rng(seed)
    coo = x.tocoo()
    test = rng.random(coo.nnz) < 0.1
    train = sp.csr_matrix((coo.data[~test], (coo.row[~test], coo.col[~test])), shape=x.shape)
    truth = sp.csr_matrix((np.ones(test.sum(), np.float32), (coo.row[test], coo.col[test])), shape=x.shape)
    users = np.flatnonzero((np.diff(truth.indptr) > 0) & (np.diff(train.indptr) > 0))
    if len(users) == 0:
        return {}
    if len(users) > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    side = dict(side)
    if side.get("timestamps") is not None:
        ts = side["timestamps"].tocoo()
        keep = ~test  # same ordering: x and timestamps share sparsity and sorted indices
        side["timestamps"] = sp.csr_matrix((ts.data[keep], (ts.row[keep], ts.col[keep])), shape=x.shape)
    out: dict[str, float] = {}
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    for label, model in (
        ("model", fit_with(factory(), train, **side)),
        ("popular", MostPopular().fit(train)),
    ):
        ids, _ = model.recommend(users, train[users], n=k)
        rec, ndcg = [], []
        for row, u in enumerate(users):
            rel = set(truth[u].indices.tolist())
            hits = np.array([i in rel for i in ids[row]], dtype=float)
            rec.append(hits.sum() / min(len(rel), k))
            ideal = disc[: min(len(rel), k)].sum()
            ndcg.append(float((hits * disc).sum() / ideal))
        out[f"{label}_recall@{k}"] = round(float(np.mean(rec)), 4)
        out[f"{label}_ndcg@{k}"] = round(float(np.mean(ndcg)), 4)
    out["validation_users"] = int(len(users))
    return out


def _pick_algorithm(algorithm: str, n_items: int) -> str:
    if algorithm == "auto":
        return "ease" if n_items <= 20_000 else "als"
    if algorithm not in ALGORITHMS:
        raise RecommendError(
            f"unknown algorithm {algorithm!r}; known: auto, {', '.join(ALGORITHMS)}", "algorithm"
        )
    if algorithm == "ease" and n_items > 20_000:
        raise RecommendError(
            f"EASE needs an items x items dense matrix: {n_items:,} items do not fit; use als or item_knn",
            "algorithm",
        )
    return algorithm


def train(
    engine: Engine,
    algorithm: str = "auto",
    params: dict[str, Any] | None = None,
    name: str = "default",
    *,
    artifacts_dir: str | Path | None = None,
    validate: bool = True,
    next_purchase: bool | None = None,
    activate_new: bool = True,
    progress: Callable[[str], None] | None = None,
    compute: str = "local",
    spark_master: str | None = None,
    from_parquet: str | Path | None = None,
) -> TrainReport:
    """Train ``algorithm`` on the store's interactions and store a new version of model ``name``.

    ``algorithm="auto"`` picks EASE up to 20,000 items and ALS beyond. ``params`` go to the algorithm's
    constructor. ``next_purchase=None`` trains the next-purchase model when the data allows it (paid items
    bought in the last week, and not too many users x paid items). Returns the stored version.

    ``compute="spark"`` trains ALS on Apache Spark (:mod:`~knowcast.recommend.spark_als`; ``params`` are
    :class:`~knowcast.recommend.spark_als.SparkALS`'s, ``spark_master`` a master URL) and stores an ordinary
    ALS artifact, served like an in-process one. ``from_parquet`` (Spark only) reads the events from a
    Parquet export instead of the store; they are aggregated per user-item inside Spark.
    """
    if compute not in ("local", "spark"):
        raise RecommendError(f"engine must be local or spark, got {compute!r}", "engine")
    if compute == "local":
        if from_parquet is not None or spark_master is not None:
            raise RecommendError("--from-parquet and --spark-master need --engine spark", "engine")
        return _train(
            engine, algorithm, params, name, artifacts_dir, validate, next_purchase, activate_new, progress
        )
    if algorithm not in ("auto", "als"):
        raise RecommendError(f"the spark engine trains ALS only, got algorithm {algorithm!r}", "algorithm")
    from knowcast.recommend.spark_als import DEFAULT_MASTER, SparkUnavailable, spark_session

    params = dict(params or {})
    master = spark_master or params.get("master") or DEFAULT_MASTER
    params["master"] = master
    try:
        with spark_session(master, params.get("driver_memory", "1g"), params.get("conf")) as spark:
            return _train(
                engine,
                "als",
                params,
                name,
                artifacts_dir,
                validate,
                next_purchase,
                activate_new,
                progress,
                spark=spark,
                from_parquet=from_parquet,
            )
    except SparkUnavailable as exc:
        raise RecommendError(str(exc), "engine") from None


def _train(
    engine: Engine,
    algorithm: str,
    params: dict[str, Any] | None,
    name: str,
    artifacts_dir: str | Path | None,
    validate: bool,
    next_purchase: bool | None,
    activate_new: bool,
    progress: Callable[[str], None] | None,
    spark: Any = None,
    from_parquet: str | Path | None = None,
) -> TrainReport:
    say = progress or (lambda msg: log.info(msg))
    params = dict(params or {})
    t0 = time.perf_counter()
    items = _items_frame(engine)
    if items.empty:
        raise RecommendError("the catalog is empty: import items first", "items")
    alg = _pick_algorithm(algorithm, len(items))
    cls: type[Recommender] = ALGORITHMS[alg]
    if spark is not None:
        from knowcast.recommend.spark_als import SparkALS

        cls = SparkALS
    try:
        cls(**params)
    except TypeError as exc:
        raise RecommendError(f"bad parameter for {alg}: {exc}", "params") from None
    item_ids = items["item_id"].to_numpy().astype(str)
    item_pos = {v: i for i, v in enumerate(item_ids.tolist())}
    pairs = None
    if from_parquet is not None:
        say(f"reading events from {from_parquet} with Spark for {len(items):,} items ...")
        data, pairs = _spark_interactions(spark, from_parquet, item_ids)
        events = data.events
    else:
        say(f"reading interactions for {len(items):,} items ...")
        events = _interaction_events(engine)
        data = _interactions(events, item_pos, len(items))
    if data.matrix.nnz == 0:
        raise RecommendError("no interactions to learn from: import events first", "events")
    t_read = time.perf_counter() - t0
    features, feature_names = _tag_features(items)
    segments = _user_segments(engine, data.user_ids)
    side = {"timestamps": data.timestamps, "item_features": features, "user_segments": segments}
    say(f"{data.matrix.shape[0]:,} users x {data.matrix.shape[1]:,} items, {data.matrix.nnz:,} interactions")
    metrics: dict[str, Any] = {}
    if validate:
        say("validating on a 10% hold-out ...")
        metrics.update(_quick_validation(lambda: cls(**params), data.matrix, side))
    say(f"fitting {alg}{' on Spark' if spark is not None else ''} ...")
    t_fit = time.perf_counter()
    if pairs is not None:  # straight from Spark's aggregated pairs, not via this process
        model = cls(**params).fit_pairs(pairs, *data.matrix.shape)
    else:
        model = fit_with(cls(**params), data.matrix, **side)
    fit_s = time.perf_counter() - t_fit
    spark_params = None
    if spark is not None:  # the same factors as an in-process ALS: one artifact format, one serving path
        spark_params = model.get_params()
        model = model.to_implicit()
        cls = type(model)
    popular = MostPopular(half_life_days=7.0).fit(data.matrix, timestamps=data.timestamps)
    seg_pop = PopularInSegment().fit(data.matrix, user_segments=segments)
    npm_text, npm_arrays = None, {}
    if next_purchase is not False and from_parquet is not None:
        if next_purchase:
            raise RecommendError(
                "the next-purchase model needs the store's events, not --from-parquet", "next_purchase"
            )
        metrics["next_purchase"] = "skipped: events read by Spark from Parquet"
    elif next_purchase is not False:
        npm_text, npm_arrays, npm_note = _fit_next_purchase(events, items, data, required=bool(next_purchase))
        metrics["next_purchase"] = npm_note
    metrics.update(
        {
            "users": int(data.matrix.shape[0]),
            "items": int(data.matrix.shape[1]),
            "interactions": int(data.matrix.nnz),
            "read_s": round(t_read, 3),
            "fit_s": round(fit_s, 3),
        }
    )
    arrays, scalars, kinds = _model_state(model)
    item_events = np.diff(data.matrix.tocsc().indptr).astype(np.int64)
    catalog: dict[str, np.ndarray] = {
        "item_ids": item_ids,
        "kind": items["kind"].astype(str).to_numpy(),
        "creator": items["creator_id"].astype(str).to_numpy(),
        "creator_name": items["creator_name"].astype(str).to_numpy(),
        "title": items["title"].astype(str).to_numpy(),
        "price": pd.to_numeric(items["price"], errors="coerce").fillna(0.0).to_numpy(np.float64),
        "created_at": np.array(
            [t.timestamp() if t is not None and not pd.isna(t) else np.nan for t in items["created_at"]]
        ),
        "item_events": item_events,
        "popular": popular.item_popularity_,
        "segment_labels": seg_pop.segment_labels_.astype(str),
        "segment_scores": seg_pop.segment_scores_,
        "global_scores": seg_pop.global_scores_,
    }
    _sparse_to(catalog, "tags", features)
    pr, pc = [], []
    for i, targets in enumerate(items["promotes"]):
        for t in targets:
            j = item_pos.get(t)
            if j is not None:
                pr.append(i)
                pc.append(j)
    catalog["promotes"] = np.array([pr, pc], dtype=np.int64).reshape(2, -1)
    meta = {
        "format": FORMAT_VERSION,
        "name": name,
        "algorithm": alg,
        "class": cls.__name__,
        "params": model.get_params(),
        "scalars": scalars,
        "kinds": kinds,
        "n_users": int(data.matrix.shape[0]),
        "n_items": int(data.matrix.shape[1]),
        "feature_names": feature_names,
        "next_purchase": npm_text is not None,
        "trained_at": datetime.now(UTC).isoformat(),
        "engine": "spark" if spark is not None else "local",
    }
    if spark_params is not None:
        meta["spark"] = {"params": spark_params, "from_parquet": str(from_parquet) if from_parquet else None}
    files: dict[str, bytes | dict[str, np.ndarray]] = {
        "model.npz": arrays,
        "catalog.npz": catalog,
    }
    if alg in ("als", "bpr") and len(items) >= IVF_MIN_ITEMS:
        say("clustering item factors for the serving index ...")
        files["index.npz"] = _build_ivf(model.item_factors_)
    if npm_text is not None:
        files["next_purchase.txt"] = npm_text.encode()
        files["next_purchase.npz"] = npm_arrays
    files["meta.json"] = json.dumps(_json_safe(meta), ensure_ascii=False).encode()  # written last
    root = _artifacts_root(artifacts_dir) / "models" / name
    root.mkdir(parents=True, exist_ok=True)
    sweep_stale_tmp(root)
    tmp = root / f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    tmp.mkdir()
    say("writing the artifact ...")
    try:
        _write_artifact(tmp, files)
        reg_params = meta["params"] if spark is None else {"engine": "spark", **meta["params"]}
        report = _register(engine, name, alg, root, tmp, reg_params, metrics, activate_new)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    metrics["total_s"] = round(time.perf_counter() - t0, 3)
    say(f"stored {name} v{report.version} ({alg}) in {time.perf_counter() - t0:.1f}s")
    invalidate()
    return report


#: A ``.tmp-*`` folder this old is swept even when its writer cannot be checked (another host).
STALE_TMP_SECONDS = 24 * 3600


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale_tmp(root: Path, now: float | None = None) -> list[str]:
    """Remove half-written artifacts that a killed ``knowcast train`` left behind.

    A folder is ``.tmp-<host>-<pid>-<hex>``: on this host it is stale once its pid is gone; a folder of
    another host (a shared artifact volume) or of the older ``.tmp-<hex>`` form only after
    ``STALE_TMP_SECONDS``, so a training still writing elsewhere is never touched. Returns the names removed.
    """
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    host = socket.gethostname()
    removed: list[str] = []
    for path in root.iterdir():
        if not (path.is_dir() and path.name.startswith(".tmp-")):
            continue
        parts = path.name[len(".tmp-") :].rsplit("-", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
            stale = int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))
        else:
            try:
                stale = now - path.stat().st_mtime > STALE_TMP_SECONDS
            except FileNotFoundError:
                continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    if removed:
        log.info(
            "removed %d half-written artifact folder(s) in %s: %s", len(removed), root, ", ".join(removed)
        )
    return removed


def _register(
    engine: Engine,
    name: str,
    alg: str,
    root: Path,
    tmp: Path,
    params: dict[str, Any],
    metrics: dict[str, Any],
    activate_new: bool,
) -> TrainReport:
    """Move the finished artifact into place and record (and activate) it in one transaction."""
    with engine.begin() as conn:
        last = conn.execute(select(func.max(ModelVersion.version)).where(ModelVersion.name == name)).scalar()
        version = int(last or 0) + 1
        final = root / str(version)
        while final.exists():  # a directory left by a crash after the move but before the commit
            version += 1
            final = root / str(version)
        os.replace(tmp, final)
        try:
            if activate_new:
                conn.execute(update(ModelVersion).where(ModelVersion.name == name).values(active=False))
            conn.execute(
                ModelVersion.__table__.insert().values(
                    name=name,
                    version=version,
                    path=str(final.resolve()),
                    created_at=datetime.now(UTC),
                    params=_json_safe({"algorithm": alg, **params}),
                    metrics=_json_safe(metrics),
                    active=activate_new,
                )
            )
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
    return TrainReport(name, version, alg, str(final.resolve()), params, metrics, activate_new)


def _fit_next_purchase(
    events: pd.DataFrame, items: pd.DataFrame, data: _Interactions, required: bool
) -> tuple[str | None, dict[str, np.ndarray], str]:
    """Fit the next-purchase model when the data allows; returns (booster text, stats arrays, note)."""
    from knowcast.recommend.next_purchase import NextPurchaseModel

    n_paid = int(items["kind"].isin(list(PAID_KINDS)).sum())
    cells = data.matrix.shape[0] * n_paid
    if n_paid == 0 or cells > NPM_MAX_CELLS:
        note = "skipped: no paid items" if n_paid == 0 else f"skipped: {cells:,} user x paid item cells"
        if required:
            raise RecommendError(f"next-purchase model {note}", "next_purchase")
        return None, {}, note
    try:
        npm = NextPurchaseModel().fit(events, items)
    except ValueError as exc:
        if required:
            raise RecommendError(f"next-purchase model: {exc}", "next_purchase") from None
        return None, {}, f"skipped: {exc}"
    arrays = {"item_buyers": npm._item_buyers, "item_conversion": npm._item_conversion}
    return npm.model_.model_to_string(), arrays, f"trained on {npm.train_rows_:,} rows"


def _build_ivf(factors: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """k-means (about sqrt(n) clusters) over item factors; items stored grouped by cluster."""
    from sklearn.cluster import MiniBatchKMeans

    n = len(factors)
    k = int(max(16, round(np.sqrt(n))))
    km = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=1, max_iter=20, random_state=seed)
    labels = km.fit_predict(np.asarray(factors, dtype=np.float32))
    order = np.argsort(labels, kind="stable").astype(np.int64)
    offsets = np.searchsorted(labels[order], np.arange(k + 1)).astype(np.int64)
    return {"centroids": km.cluster_centers_.astype(np.float32), "order": order, "offsets": offsets}


class _IVF:
    """Inverted-file top-k search over item factors: rank clusters by ``centroid . u``, score the items of
    the best ``probe`` share exactly. Slices are contiguous, so each probed cluster is one small mat-vec."""

    def __init__(self, factors: np.ndarray, centroids: np.ndarray, order: np.ndarray, offsets: np.ndarray):
        self.centroids = centroids
        self.order = order
        self.offsets = offsets
        self.factors = np.ascontiguousarray(factors[order], dtype=np.float32)

    def search(self, u: np.ndarray, mask: np.ndarray, k: int, probe: float) -> tuple[np.ndarray, np.ndarray]:
        cs = self.centroids @ u
        nprobe = min(len(cs), max(1, int(np.ceil(len(cs) * probe))))
        best = np.argpartition(-cs, nprobe - 1)[:nprobe] if nprobe < len(cs) else np.arange(len(cs))
        pos = _ranges(self.offsets[best], self.offsets[best + 1])
        scores = self.factors[pos] @ u
        ids = self.order[pos]
        keep = mask[ids]
        return _top(ids[keep], scores[keep].astype(np.float32), k)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``concatenate([arange(a, b) for a, b in zip(starts, stops)])`` without a Python loop."""
    lens = stops - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return shift + np.arange(total, dtype=np.int64)


def _csr_rows(m: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored entries of ``m[rows]`` as (position in ``rows``, column, value): a gather of a few CSR
    rows in NumPy, which costs microseconds where scipy's fancy indexing costs a fraction of a millisecond."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, stops = m.indptr[rows], m.indptr[rows + 1]
    pos = _ranges(starts, stops)
    return np.repeat(np.arange(len(rows)), stops - starts), m.indices[pos], m.data[pos]


def _top(ids: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best (finite) of ``ids`` by ``scores``, best first, ties by item index."""
    if k < len(ids):
        part = np.argpartition(scores, len(ids) - k)[len(ids) - k :]
        ids, scores = ids[part], scores[part]
    ok = np.isfinite(scores)
    ids, scores = ids[ok], scores[ok]
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


# ------------------------------------------------------------------------------------- load / serve
@dataclass
class ServedModel:
    """One loaded model version: the algorithm, the catalogue around it and the cold-start lists."""

    name: str
    version: int
    algorithm: str
    path: str
    model: Recommender
    item_ids: np.ndarray
    item_pos: dict[str, int]
    catalog: Catalog
    item_events: np.ndarray
    popular: np.ndarray
    segment_labels: np.ndarray
    segment_scores: np.ndarray
    global_scores: np.ndarray
    feature_names: list[str]
    tags: sp.csr_matrix
    promotes: sp.csr_matrix
    next_purchase: Any = None
    kind_masks: dict[str, np.ndarray] = field(default_factory=dict)
    ivf: _IVF | None = None
    unit_tags: sp.csr_matrix = field(init=False)
    feature_pos: dict[str, int] = field(init=False)
    segment_pos: dict[str, int] = field(init=False)
    promotes_by_item: sp.csr_matrix = field(init=False)
    cold_ids: np.ndarray = field(init=False)
    cold_tags: sp.csr_matrix = field(init=False)
    cold_tag_rows: np.ndarray = field(init=False)
    surface_ids: dict[str, np.ndarray] = field(default_factory=dict)
    surface_factors: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.promotes_by_item = sp.csr_matrix(self.promotes.T)  # row j: the promoters of item j
        cold = np.flatnonzero(
            (self.item_events < COLD_ITEM_EVENTS) & ~self.catalog.is_paid & (self.catalog.kind != "live")
        )
        if len(cold) > COLD_ITEM_POOL:  # the newest ones: "new on the platform" is about age, too
            created = np.nan_to_num(np.asarray(self.catalog.created_at, dtype=np.float64), nan=-np.inf)
            cold = np.sort(cold[np.argsort(-created[cold], kind="stable")[:COLD_ITEM_POOL]])
        self.cold_ids = cold
        self.unit_tags = sp.csr_matrix(l2_normalize_rows(self.tags))
        self.feature_pos = {t: k for k, t in enumerate(self.feature_names)}
        self.segment_pos = {str(s): k for k, s in enumerate(self.segment_labels.tolist()) if s}
        self.popular = np.asarray(self.popular, dtype=np.float32)
        self.segment_scores = np.asarray(self.segment_scores, dtype=np.float32)
        self.cold_tags = sp.csr_matrix(self.unit_tags[self.cold_ids])
        self.cold_tag_rows = np.repeat(np.arange(len(self.cold_ids)), np.diff(self.cold_tags.indptr))

    def index_surfaces(self) -> None:
        """For factor models: each surface's items and a contiguous copy of their factors, so that a request
        for the live rooms or the next course scores those items only (one small mat-vec), not all."""
        factors = getattr(self.model, "item_factors_", None)
        if factors is None or not hasattr(self.model, "_user_factors"):
            return
        for surface, mask in self.kind_masks.items():
            ids = np.flatnonzero(mask)
            self.surface_ids[surface] = ids
            full = len(ids) == self.n_items
            self.surface_factors[surface] = factors if full else np.ascontiguousarray(factors[ids])

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def _rebuild_als(model: Recommender) -> None:
    """implicit's engine object is not stored: rebuild it from the item factors for the fold-in."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    p = model.get_params()
    with threadpool_limits(1, "blas"):  # implicit warns about a multi-threaded BLAS at construction
        engine = AlternatingLeastSquares(
            factors=model.item_factors_.shape[1],
            regularization=p["regularization"],
            alpha=p["alpha"],
            iterations=p["iterations"],
            random_state=p["random_state"],
            num_threads=1,
        )
    engine.item_factors = np.ascontiguousarray(model.item_factors_, dtype=np.float32)
    engine.user_factors = np.ascontiguousarray(model.user_factors_, dtype=np.float32)
    _ = engine.YtY  # computed once here rather than in the first request
    model.model_ = engine


def load_artifact(path: str | Path, name: str = "default", version: int = 0) -> ServedModel:
    """Load an artifact directory written by :func:`train` (npz + JSON only, ``allow_pickle=False``)."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise RecommendError(f"artifact {path} has format {meta.get('format')!r}, expected {FORMAT_VERSION}")
    cls = ALGORITHMS[meta["algorithm"]]
    model = cls(**meta["params"])
    with np.load(path / "model.npz", allow_pickle=False) as z:
        for key, kind in meta["kinds"].items():
            setattr(model, key, _sparse_from(z, f"model.{key}") if kind == "sparse" else z[f"model.{key}"])
    for key, value in meta["scalars"].items():
        setattr(model, key, value)
    model.n_users_, model.n_items_ = int(meta["n_users"]), int(meta["n_items"])
    model.fitted_ = True
    if meta["algorithm"] == "als":
        _rebuild_als(model)
    with np.load(path / "catalog.npz", allow_pickle=False) as z:
        c = {k: z[k] for k in z.files}
    tags = _sparse_from(c, "tags")
    n = len(c["item_ids"])
    pr = c["promotes"]
    promotes = sp.csr_matrix((np.ones(pr.shape[1], np.float32), (pr[0], pr[1])), shape=(n, n))
    catalog = Catalog(
        kind=c["kind"],
        creator=c["creator"],
        price=c["price"],
        live_now=np.zeros(n, dtype=bool),
        titles=c["title"],
        created_at=c["created_at"],
        features=tags,
        creator_names=dict(zip(c["creator"].tolist(), c["creator_name"].tolist(), strict=True)),
    )
    item_ids = c["item_ids"].astype(str)
    served = ServedModel(
        name=name,
        version=version,
        algorithm=meta["algorithm"],
        path=str(path),
        model=model,
        item_ids=item_ids,
        item_pos={v: i for i, v in enumerate(item_ids.tolist())},
        catalog=catalog,
        item_events=c["item_events"],
        popular=c["popular"],
        segment_labels=c["segment_labels"],
        segment_scores=c["segment_scores"],
        global_scores=c["global_scores"],
        feature_names=list(meta["feature_names"]),
        tags=tags,
        promotes=promotes,
    )
    kinds = catalog.kind
    served.kind_masks = {
        "feed": np.isin(kinds, ["short_video", "live"]) | catalog.is_paid,
        "live": kinds == "live",
        "next_course": np.isin(kinds, list(PAID_KINDS)),
    }
    served.index_surfaces()
    if meta.get("next_purchase"):
        served.next_purchase = _load_next_purchase(path, served)
    if (path / "index.npz").exists():
        with np.load(path / "index.npz", allow_pickle=False) as z:
            served.ivf = _IVF(model.item_factors_, z["centroids"], z["order"], z["offsets"])
    return served


def _load_next_purchase(path: Path, served: ServedModel) -> Any:
    import lightgbm as lgb

    from knowcast.recommend.next_purchase import NextPurchaseModel

    npm = NextPurchaseModel()
    feat = served.tags.tocsr()
    names = np.asarray(served.feature_names + [""], dtype=object)
    tag_lists = [
        names[feat.indices[feat.indptr[i] : feat.indptr[i + 1]]].tolist() for i in range(served.n_items)
    ]
    promo = served.promotes.tocsr()
    ids = served.item_ids
    frame = pd.DataFrame(
        {
            "item_id": ids,
            "kind": served.catalog.kind,
            "creator_id": served.catalog.creator,
            "price": served.catalog.price,
            "title": served.catalog.titles,
            "tags": tag_lists,
            "promotes": [
                ids[promo.indices[promo.indptr[i] : promo.indptr[i + 1]]].tolist() for i in range(len(ids))
            ],
        }
    )
    npm._prepare_items(frame)
    with np.load(path / "next_purchase.npz", allow_pickle=False) as z:
        npm._item_buyers = z["item_buyers"]
        npm._item_conversion = z["item_conversion"]
    npm.model_ = lgb.Booster(model_str=(path / "next_purchase.txt").read_text())
    return npm


# -------------------------------------------------------------------------------------- process cache
@dataclass(frozen=True)
class _View:
    """What a request reads: one model version and this moment's live rooms and blocked list, as masks over
    the model's items. Replaced as a whole (one reference), never mutated."""

    served: ServedModel
    live_mask: np.ndarray
    blocked_mask: np.ndarray
    surface_masks: dict[str, np.ndarray] = field(default_factory=dict)
    catalog: Catalog | None = None
    #: the same in every process for the same version, live rooms and blocked list: part of cache keys
    token: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "token",
            fingerprint(
                self.served.name,
                self.served.version,
                str(self.served.path),
                self.served.algorithm,
                np.packbits(self.live_mask).tobytes(),
                np.packbits(self.blocked_mask).tobytes(),
            ),
        )
        # read-only per view: a request copies one only when it has items of its own to remove
        for surface, kinds in self.served.kind_masks.items():
            m = kinds & ~self.blocked_mask
            m.flags.writeable = False
            self.surface_masks[surface] = m
        object.__setattr__(self, "catalog", _with_context(self.served, self.live_mask))


@dataclass
class _Slot:
    view: _View | None = None
    checked_at: float = -1e18
    loading: threading.Lock = field(default_factory=threading.Lock)


_SLOTS: dict[tuple[str, str], _Slot] = {}
_SLOTS_LOCK = threading.Lock()


def invalidate() -> None:
    """Forget when each slot was last checked: the next request re-reads the active version, live rooms and
    the blocked list (a loaded model is kept and reused while it stays active)."""
    with _SLOTS_LOCK:
        for slot in _SLOTS.values():
            slot.checked_at = -1e18


def _slot(engine: Engine, name: str) -> _Slot:
    key = (engine.url.render_as_string(hide_password=True), name)
    slot = _SLOTS.get(key)
    if slot is None:
        with _SLOTS_LOCK:
            slot = _SLOTS.setdefault(key, _Slot())
    return slot


def _active_row(engine: Engine, name: str) -> tuple[int, str] | None:
    with engine.connect() as c:
        row = c.execute(
            select(ModelVersion.version, ModelVersion.path)
            .where(ModelVersion.name == name, ModelVersion.active.is_(True))
            .order_by(ModelVersion.version.desc())
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), str(row[1]))


def _context_masks(engine: Engine, served: ServedModel) -> tuple[np.ndarray, np.ndarray]:
    """Rooms live now and blocked items/creators (kv ``recommend.blocked``) as boolean masks."""
    with engine.connect() as c:
        live = c.execute(select(LiveSession.item_id).where(LiveSession.state == "live")).scalars().all()
        blocked = c.execute(select(KeyValue.value).where(KeyValue.key == BLOCKED_KEY)).scalar() or {}
    live_mask = np.zeros(served.n_items, dtype=bool)
    live_mask[[served.item_pos[i] for i in live if i in served.item_pos]] = True
    blocked_mask = np.zeros(served.n_items, dtype=bool)
    blocked_mask[[served.item_pos[i] for i in blocked.get("items", []) if i in served.item_pos]] = True
    creators = [str(c) for c in blocked.get("creators", [])]
    if creators:
        blocked_mask |= np.isin(served.catalog.creator, creators)
    return live_mask, blocked_mask


def _view(engine: Engine, name: str = "default") -> _View:
    """The current view of ``name`` for this process (see :func:`served_model`)."""
    slot = _slot(engine, name)
    if time.monotonic() - slot.checked_at >= CHECK_SECONDS and slot.loading.acquire(
        blocking=slot.view is None
    ):
        try:
            if time.monotonic() - slot.checked_at >= CHECK_SECONDS:  # another thread may have just done it
                _refresh(engine, name, slot)
        finally:
            slot.loading.release()
    view = slot.view
    if view is None:
        raise ModelUnavailable(f"no active model {name!r}: train one with 'knowcast train'")
    return view


def _refresh(engine: Engine, name: str, slot: _Slot) -> None:
    active = _active_row(engine, name)
    if active is None:
        slot.view = None
        slot.checked_at = time.monotonic()
        return
    served = slot.view.served if slot.view is not None else None
    if served is None or served.version != active[0] or served.path != active[1]:
        try:
            served = load_artifact(active[1], name, active[0])
            log.info("serving %s v%d (%s)", name, active[0], served.algorithm)
        except (OSError, ValueError, KeyError) as exc:
            if served is None:
                raise ModelUnavailable(
                    f"model {name!r} v{active[0]} cannot be loaded from {active[1]}: {exc}"
                ) from exc
            log.error("cannot load %s v%d (%s); still serving v%d", name, active[0], exc, served.version)
    slot.view = _View(served, *_context_masks(engine, served))
    slot.checked_at = time.monotonic()


def served_model(engine: Engine, name: str = "default") -> ServedModel:
    """The active version of ``name`` for this process, reloaded when another version becomes active.

    At most every :data:`CHECK_SECONDS` one query reads the active version; when it changed, one thread
    loads the new artifact while the others keep answering with the old one; then a single reference is
    swapped. A version whose artifact cannot be loaded is logged and the old one stays in service.
    """
    return _view(engine, name).served


# ---------------------------------------------------------------------------------------- activation
def list_models(engine: Engine, name: str | None = None) -> list[dict[str, Any]]:
    """Stored versions (newest first) with their parameters, metrics and which one is active."""
    q = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())
    if name is not None:
        q = q.where(ModelVersion.name == name)
    with engine.connect() as c:
        rows = c.execute(q).mappings().all()
    out = []
    for r in rows:
        d = dict(r)
        d["created_at"] = d["created_at"].isoformat() if d.get("created_at") else None
        d["exists"] = Path(d["path"]).is_dir()
        out.append(d)
    return out


def activate(engine: Engine, name: str, version: int) -> dict[str, Any]:
    """Serve ``version`` of ``name`` (its artifact must load); every process picks it up within seconds."""
    with engine.connect() as c:
        row = c.execute(
            select(ModelVersion.path).where(ModelVersion.name == name, ModelVersion.version == version)
        ).first()
    if row is None:
        raise NotFound(f"model {name!r} has no version {version}")
    load_artifact(row[0], name, version)  # refuse a broken artifact before any process tries it
    with engine.begin() as conn:
        conn.execute(update(ModelVersion).where(ModelVersion.name == name).values(active=False))
        conn.execute(
            update(ModelVersion)
            .where(ModelVersion.name == name, ModelVersion.version == version)
            .values(active=True)
        )
    invalidate()
    return {"name": name, "version": version, "path": row[0]}


def rollback(engine: Engine, name: str = "default") -> dict[str, Any]:
    """Go back to the newest version older than the active one whose artifact is still on disk."""
    with engine.connect() as c:
        rows = c.execute(
            select(ModelVersion.version, ModelVersion.path, ModelVersion.active)
            .where(ModelVersion.name == name)
            .order_by(ModelVersion.version.desc())
        ).all()
    if not rows:
        raise NotFound(f"no model named {name!r}")
    active = next((int(v) for v, _, a in rows if a), None)
    if active is None:
        raise NotFound(f"model {name!r} has no active version to roll back from")
    for v, path, _ in rows:
        if int(v) < active and Path(path).is_dir():
            return activate(engine, name, int(v)) | {"previous": active}
    raise NotFound(f"model {name!r} has no version older than v{active} to roll back to")


# ----------------------------------------------------------------------------------------- blocked list
def get_blocked(engine: Engine) -> dict[str, list[str]]:
    with engine.connect() as c:
        value = c.execute(select(KeyValue.value).where(KeyValue.key == BLOCKED_KEY)).scalar()
    value = value or {}
    return {"items": sorted(value.get("items", [])), "creators": sorted(value.get("creators", []))}


def set_blocked(
    engine: Engine,
    items: Sequence[str] = (),
    creators: Sequence[str] = (),
    *,
    unblock: bool = False,
    replace: bool = False,
) -> dict[str, list[str]]:
    """Add (or with ``unblock`` remove) items and creators to the blocked list; ``replace`` overwrites it."""
    for fld, values in (("items", items), ("creators", creators)):
        for v in values:
            if not isinstance(v, str) or not v.strip():
                raise RecommendError(f"{fld} must be non-empty strings, got {v!r}", fld)
    with engine.begin() as conn:
        cur = conn.execute(select(KeyValue.value).where(KeyValue.key == BLOCKED_KEY)).scalar()
        cur = {"items": [], "creators": []} if cur is None or replace else cur
        new = {}
        for fld, values in (("items", items), ("creators", creators)):
            s = set(cur.get(fld, []))
            s = s - set(values) if unblock else s | set(values)
            new[fld] = sorted(s)
        exists = conn.execute(select(KeyValue.key).where(KeyValue.key == BLOCKED_KEY)).first() is not None
        if exists:
            conn.execute(update(KeyValue).where(KeyValue.key == BLOCKED_KEY).values(value=new))
        else:
            conn.execute(KeyValue.__table__.insert().values(key=BLOCKED_KEY, value=new))
    invalidate()
    return new


# ------------------------------------------------------------------------------------------ the user
@dataclass
class _UserState:
    cols: np.ndarray  # the user's items (model columns), sorted
    vals: np.ndarray  # their interaction weights (float32)
    n_items: int
    rows: list[tuple[str, str, int, float | None]]  # (type, item_id, ts, watch_ratio), oldest first
    seen: set[int]
    purchased: set[int]
    watched: list[int]
    followed: set[str]
    n_events: int

    @functools.cached_property
    def row(self) -> sp.csr_matrix:
        """The user's row as a 1 x n_items CSR matrix, built only for models that need one."""
        indptr = np.array([0, len(self.cols)])
        return sp.csr_matrix((self.vals, self.cols, indptr), shape=(1, self.n_items))

    def events_frame(self, user_id: str) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=["type", "item_id", "ts", "watch_ratio"])
        return df.assign(user_id=user_id)


#: The user's newest events, one indexed query (``ix_events_user_ts``), sent through the DB-API cursor: for
#: a query this small SQLAlchemy's statement and result machinery costs more than the database does.
_USER_EVENTS_SQL = (
    "SELECT type, item_id, ts, watch_ratio, props FROM events WHERE user_id = {param} "
    f"AND type NOT IN ('impression', 'exposure') ORDER BY ts DESC LIMIT {MAX_USER_EVENTS}"
)
_PARAMSTYLE = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":1", "named": ":user_id"}


def _user_events(engine: Engine, user_id: str) -> list[tuple[Any, ...]]:
    style = engine.dialect.paramstyle
    sql = _USER_EVENTS_SQL.format(param=_PARAMSTYLE[style])
    params: Any = {"user_id": user_id} if style == "named" else (user_id,)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        try:
            cur.execute(sql, params)
            return cur.fetchall()
        finally:
            cur.close()
    finally:
        raw.close()


def _user_state(engine: Engine, served: ServedModel, user_id: str) -> _UserState:
    """The user's current interaction row and context, from their newest events in the store.

    Plain Python over at most :data:`MAX_USER_EVENTS` rows: per request this is cheaper than a DataFrame.
    """
    rows = _user_events(engine, user_id)
    followed: set[str] = set()
    kept: list[tuple[str, str, int, float | None]] = []
    weights: dict[int, float] = {}
    seen: set[int] = set()
    purchased: set[int] = set()
    watched: dict[int, None] = {}
    pos = served.item_pos
    for typ, item, ts, ratio, props in reversed(rows):  # oldest first
        if typ == "follow" and props:
            try:
                cid = json.loads(props).get("creator_id")
            except (TypeError, ValueError, AttributeError):
                cid = None
            if cid:
                followed.add(str(cid))
        j = pos.get(item) if item is not None else None
        if j is None:
            continue
        kept.append((typ, item, ts, ratio))
        w = EVENT_WEIGHTS.get(typ, 0.0)
        if typ == "view":
            r = 1.0 if ratio is None or ratio != ratio else min(max(float(ratio), 0.0), 1.5)
            w = r if r >= MIN_WATCH_RATIO else 0.0
            watched.pop(j, None)
            watched[j] = None
        if w > 0:
            weights[j] = weights.get(j, 0.0) + w
        if typ in SEEN_TYPES:
            seen.add(j)
        if typ in BUY_TYPES:
            purchased.add(j)
    cols = np.fromiter(weights.keys(), dtype=np.int64, count=len(weights))
    order = np.argsort(cols)
    vals = np.fromiter(weights.values(), dtype=np.float32, count=len(weights))[order]
    return _UserState(
        cols[order], vals, served.n_items, kept, seen, purchased, list(watched), followed, len(cols)
    )


def _user_attributes(engine: Engine, user_id: str) -> tuple[bool, str | None, list[str]]:
    """(known user, profile segment, onboarding interests from ``users.attributes.interests``)."""
    with engine.connect() as c:
        attrs = c.execute(select(User.attributes).where(User.id == user_id)).first()
        seg = c.execute(select(UserProfile.segment).where(UserProfile.user_id == user_id)).scalar()
    interests: list[str] = []
    if attrs is not None and isinstance(attrs[0], dict):
        raw = attrs[0].get("interests")
        if isinstance(raw, str):
            interests = [t for t in raw.split("|") if t]
        elif isinstance(raw, list):
            interests = [str(t) for t in raw if t]
    return attrs is not None, seg, interests


# ------------------------------------------------------------------------------------------ recommend
def _policy(surface: str) -> RankingPolicy:
    """Per-surface rules. Blocked items/creators, kinds and bought items are applied before, as one mask."""
    if surface == "feed":
        return RankingPolicy(
            live_boost=0.2,
            paid_every=FEED_PAID_EVERY,
            diversity=0.2,
            max_per_creator=2,
            explain_threshold=0.3,
        )
    if surface == "live":
        # +2 on a 0-1 scale: every room live now ranks above every room that is not
        return RankingPolicy(live_boost=2.0, diversity=0.0, max_per_creator=2, explain_threshold=0.3)
    return RankingPolicy(live_boost=0.0, diversity=0.1, max_per_creator=3, explain_threshold=0.3)


#: Built once: a policy holds no request state.
_POLICIES = {surface: _policy(surface) for surface in SURFACES}


class _LocalSimilarity:
    """Tag cosine between the few items one request looks at (candidates, history, new items), computed
    as one small dense Gram matrix over just the tags those items carry: the rows are gathered straight from
    the CSR arrays (:func:`_csr_rows`), since scipy's indexing and product cost more than the whole job."""

    def __init__(self, unit_tags: sp.csr_matrix, items: np.ndarray) -> None:
        self.ids = np.unique(np.asarray(items, dtype=np.int64))
        m = len(self.ids)
        row, cols, vals = _csr_rows(unit_tags, self.ids)
        # every pair of entries that share a tag adds v_a * v_b to gram[row_a, row_b]; items carry a few tags
        # each, so the pairs are few, and no BLAS call is made (multi-threaded BLAS on a tiny product costs
        # more than the product, and much more on a busy machine)
        order = np.argsort(cols, kind="stable")
        row, cols, vals = row[order], cols[order], vals[order].astype(np.float64)
        bounds = np.flatnonzero(np.r_[True, cols[1:] != cols[:-1], True])
        starts, stops = bounds[:-1], bounds[1:]
        group = np.repeat(np.arange(len(starts)), stops - starts)
        a = np.repeat(np.arange(len(cols)), (stops - starts)[group])
        b = _ranges(starts[group], stops[group])
        self.gram = np.bincount(row[a] * m + row[b], weights=vals[a] * vals[b], minlength=m * m).reshape(m, m)

    def __call__(self, item: int, others: np.ndarray) -> np.ndarray:
        i = np.searchsorted(self.ids, item)
        j = np.searchsorted(self.ids, np.asarray(others, dtype=np.int64))
        return self.gram[i, j]

    def block(self, items: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Similarities of each of ``items`` (rows) to each of ``others`` (columns)."""
        i = np.searchsorted(self.ids, np.asarray(items, dtype=np.int64))
        j = np.searchsorted(self.ids, np.asarray(others, dtype=np.int64))
        return self.gram[np.ix_(i, j)]


def _candidates(scores: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best allowed items of a full score vector, best first."""
    ids = np.flatnonzero(mask)
    return _top(ids, np.asarray(scores, dtype=np.float32)[ids], k)


def _personal(
    served: ServedModel, state: _UserState, surface: str, mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates from the personal model for the user's current row. A factor model folds the row in once,
    then scores the feed of a large catalogue through the IVF index (falling back to a scan when it finds
    too few) and the other surfaces over their own items only; other models score every item."""
    model = served.model
    if served.surface_factors:
        with _one_blas_thread():
            if hasattr(model, "fold_in"):
                u = model.fold_in(state.cols, state.vals)
            else:
                u = model._user_factors(np.array([model.n_users_]), state.row)[0]
            u = np.asarray(u, dtype=np.float32)
            if served.ivf is not None and surface == "feed":
                ids, scores = served.ivf.search(u, mask, k, IVF_PROBE)
                if len(ids) >= k:
                    return ids, scores
            ids = served.surface_ids[surface]
            scores = served.surface_factors[surface] @ u
        keep = mask[ids]
        return _top(ids[keep], scores[keep], k)
    return _candidates(model.score(np.array([model.n_users_]), state.row)[0], mask, k)


def _npm_scores(npm: Any, state: _UserState, user_id: str, n_items: int) -> np.ndarray | None:
    """Purchase probability of every paid item for this user from their current events (None: no events)."""
    import copy

    if not state.rows:
        return None
    m = npm._matrices(state.events_frame(user_id), pd.Index([user_id]))
    local = copy.copy(npm)  # per-request copy: the user's own purchase count is request state
    buys = m["buys"].copy()
    buys.data[:] = 1
    local._user_buys = np.asarray(buys.sum(axis=1)).ravel().astype(np.float32)
    x = local._features(m, np.array([0]))
    p = npm.model_.predict(x, num_threads=1)
    out = np.full(n_items, -np.inf, dtype=np.float32)
    out[npm.paid_] = p
    return out


def _item_out(served: ServedModel, cat: Catalog, r: Recommendation) -> dict[str, Any]:
    price = float(cat.price[r.item])
    return {
        "item_id": str(served.item_ids[r.item]),
        "kind": str(cat.kind[r.item]),
        "title": cat.title(r.item),
        "creator_id": str(cat.creator[r.item]),
        "price": price if price > 0 else None,
        "live_now": bool(cat.live_now[r.item]),
        "score": round(float(r.score), 6),
        "reason": r.reason,
        "reason_code": r.reason_code,
        "source": r.source,
    }


def _with_context(served: ServedModel, live_mask: np.ndarray) -> Catalog:
    """The served catalogue with this moment's live rooms (a shallow copy; the model's stays untouched)."""
    import copy

    cat = copy.copy(served.catalog)
    cat.live_now = live_mask
    return cat


def recommend(
    engine: Engine, user_id: str, n: int = 10, surface: str = "feed", name: str = "default"
) -> dict[str, Any]:
    """A page of ``n`` items for ``user_id`` on ``surface`` (feed, live, next_course), each with a reason.

    Scores come from the active model applied to the user's current row (their events in the store, newer
    ones included); a user without events gets the cold-start list (onboarding interests, their segment's
    popular items, or what is popular now) and switches to the personal model from their first event.
    """
    if surface not in SURFACES:
        raise RecommendError(f"surface must be one of {', '.join(SURFACES)}, got {surface!r}", "surface")
    if not isinstance(n, int) or not 1 <= n <= 100:
        raise RecommendError(f"n must be an integer in [1, 100], got {n!r}", "n")
    if not isinstance(user_id, str) or not user_id.strip():
        raise RecommendError("user_id must be a non-empty string", "user_id")
    view = _view(engine, name)
    served = view.served
    catalog = view.catalog
    state = _user_state(engine, served, user_id)
    policy = _POLICIES[surface]
    mask = view.surface_masks[surface]
    hide = list(state.purchased)  # never offer what the user already bought
    if surface == "feed":
        hide += state.seen  # watched a moment ago: gone from the feed at once
    if hide:
        mask = mask.copy()
        mask[hide] = False
    segment: str | None = None
    interests: list[str] = []
    cold = state.n_events == 0
    if cold:
        _, segment, interests = _user_attributes(engine, user_id)
    cache = page_cache()
    key = None
    if cache is not None:  # the key holds all the page depends on, so it never needs invalidating
        key = fingerprint(
            view.token, user_id, surface, n, state.rows, sorted(state.followed), segment, interests
        )
        hit = cache.get(key)
        if hit is not None:
            return hit
    source = "personal"
    scores: np.ndarray | None = None
    k = max(N_CANDIDATES, 3 * n)
    p = None
    if surface == "next_course" and not cold and served.next_purchase is not None:
        p = _npm_scores(served.next_purchase, state, user_id, served.n_items)
    if p is not None:
        scores, source = p, "next_purchase"
    elif not cold:
        cand, cand_scores = _personal(served, state, surface, mask, k)
    elif interests and any(t in served.feature_pos for t in interests):
        cols = [served.feature_pos[t] for t in interests if t in served.feature_pos]
        scores = np.asarray(served.unit_tags[:, cols].sum(axis=1), dtype=np.float32).ravel()
        scores = scores + 1e-3 * served.global_scores / max(float(served.global_scores.max()), 1e-12)
        source = "onboarding"
    elif segment and segment in served.segment_pos:
        scores, source = served.segment_scores[served.segment_pos[segment]], "popular_segment"
    else:
        scores, source = served.popular, "popular"
    if scores is not None:
        cand, cand_scores = _candidates(scores, mask, k)
    if surface == "live" and catalog.live_now.any():
        # rooms live now always enter the candidates, even those the model scores low
        extra = np.setdiff1d(np.flatnonzero(catalog.live_now & mask), cand)
        if len(extra):
            low = float(cand_scores.min()) if len(cand_scores) else 0.0
            cand = np.concatenate([cand, extra])
            cand_scores = np.concatenate([cand_scores, np.full(len(extra), low, np.float32)])
    ctx = UserContext(
        purchased=state.purchased,
        watched=state.watched[-50:],
        followed_creators=state.followed,
        segment=segment,
        interests=interests,
        now=time.time(),
    )
    new_items = _new_items(served, catalog, state, mask, cand) if surface == "feed" else np.array([], int)
    sim = _LocalSimilarity(
        served.unit_tags, np.concatenate([cand, np.asarray(ctx.watched, dtype=np.int64), new_items])
    )
    page = policy.rank(cand, cand_scores, catalog, ctx, n=n, source=source, similarity=sim)
    _promotion_reasons(served, catalog, state, page)
    if len(new_items):
        page = _insert_new_items(policy, catalog, ctx, sim, page, new_items, n)
    out = {
        "user_id": user_id,
        "surface": surface,
        "n": n,
        "cold_start": cold,
        "source": source,
        "model": {"name": served.name, "version": served.version, "algorithm": served.algorithm},
        "items": [_item_out(served, catalog, r) for r in page],
    }
    if key is not None:
        cache.set(key, out)  # type: ignore[union-attr]
    return out


def _promotion_reasons(
    served: ServedModel, catalog: Catalog, state: _UserState, page: list[Recommendation]
) -> None:
    """A paid item featured in a video or live the user watched says so: the most specific reason there is
    for an upsell (the promotion link is also the next-purchase model's strongest signal)."""
    if not state.watched:
        return
    watched = np.asarray(state.watched, dtype=np.int64)
    promo_t = served.promotes_by_item
    for r in page:
        if r.reason_code == "live_now" or not catalog.is_paid[r.item]:
            continue
        promoters = promo_t.indices[promo_t.indptr[r.item] : promo_t.indptr[r.item + 1]]
        hit = watched[np.isin(watched, promoters)]
        if len(hit):
            r.reason = f"Featured in {catalog.title(int(hit[-1]))}, which you watched"
            r.reason_code = "promoted_by_watched"


def _new_items(
    served: ServedModel, catalog: Catalog, state: _UserState, mask: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """Free items with fewer than ``COLD_ITEM_EVENTS`` interactions at training, closest to the user's tag
    profile first: the content-based exposure new items get until they have feedback."""
    cold_ids = served.cold_ids[mask[served.cold_ids]]
    if len(cold_ids) == 0:
        return cold_ids
    k = len(COLD_ITEM_POSITIONS)
    if len(state.cols):
        row, cols, vals = _csr_rows(served.unit_tags, state.cols)
        n_tags = served.unit_tags.shape[1]
        prof = np.bincount(cols, weights=vals * state.vals[row], minlength=n_tags)
        prof /= max(float(np.linalg.norm(prof)), 1e-12)
        ct = served.cold_tags
        sim = np.bincount(
            served.cold_tag_rows, weights=ct.data * prof[ct.indices], minlength=len(served.cold_ids)
        )
        sim = sim[mask[served.cold_ids]]
    else:
        sim = np.zeros(len(cold_ids))
    if len(cold_ids) > 4 * k:  # keep the best few (ties included), then order them exactly
        top = np.argpartition(-sim, 4 * k)[: 4 * k]
        cold_ids, sim = cold_ids[top], sim[top]
    # ties (e.g. a user without history) go to the item with the fewest interactions, then by id
    order = np.lexsort((cold_ids, served.item_events[cold_ids], -sim))
    return cold_ids[order[:k]]


def _insert_new_items(
    policy: RankingPolicy,
    catalog: Catalog,
    ctx: UserContext,
    sim: _LocalSimilarity,
    page: list[Recommendation],
    new_items: np.ndarray,
    n: int,
) -> list[Recommendation]:
    page = [r for r in page if r.item not in set(new_items.tolist())]
    for pos, item in zip(COLD_ITEM_POSITIONS, new_items.tolist(), strict=False):
        if pos >= n:
            break
        why = policy.explain(int(item), catalog, ctx, "new_item", sim)
        if why["reason_code"] in ("popular", "popular_segment", "because_watched"):
            why = {"reason": "New on the platform", "reason_code": "new_item"}
        page.insert(min(pos, len(page)), Recommendation(item=int(item), score=0.0, source="new_item", **why))
    return page[:n]


def similar(
    engine: Engine, item_id: str, n: int = 10, kind: str | None = None, name: str = "default"
) -> dict[str, Any] | None:
    """Collaborative neighbours of ``item_id`` from the active model, or None when there is no model, the
    item is not in it or has no interactions (callers then fall back to content similarity)."""
    try:
        served = served_model(engine, name)
    except ModelUnavailable:
        return None
    j = served.item_pos.get(item_id)
    if j is None or served.item_events[j] == 0:
        return None
    try:
        sims = np.array(served.model._item_similarity(np.array([j])), dtype=np.float32)[0]
    except NotImplementedError:
        return None
    sims[j] = -np.inf
    sims[served.item_events == 0] = -np.inf  # no interactions: a collaborative score means nothing
    if kind is not None:
        sims[served.catalog.kind != kind] = -np.inf
    ids, vals = top_n(sims[None, :], n)
    out = []
    for i, s in zip(ids[0], vals[0], strict=True):
        if i < 0 or not np.isfinite(s) or s <= 0:
            continue
        out.append(
            {
                "item_id": str(served.item_ids[i]),
                "score": round(float(s), 6),
                "kind": str(served.catalog.kind[i]),
                "title": served.catalog.title(int(i)),
                "creator_id": str(served.catalog.creator[i]),
            }
        )
    if not out:
        return None
    return {
        "item_id": item_id,
        "source": "collaborative",
        "model": {"name": served.name, "version": served.version, "algorithm": served.algorithm},
        "n": n,
        "similar": out,
    }
