"""Offline evaluation: splits, full-ranking metrics, hyper-parameter search on the validation part only.

Protocol (the one RecBole publishes its tables with, so our numbers are comparable):

* **splits**: ``random`` (each user's interactions shuffled and cut 80/10/10, RecBole's rounding),
  ``leave_last_out`` (each user's last interaction by time is the test, the one before the validation) and
  ``time`` (one global time cut at the 80% and 90% quantiles of interaction time);
* **full ranking**: every item not seen in the fitted part is a candidate, nothing is sampled;
* **metrics @k**: Recall, Precision, NDCG, MAP, MRR, hit rate (per user, averaged over users with a held-out
  item), catalogue coverage, novelty (mean self-information ``-log2(pop(i)/n_users)``) and intra-list
  diversity (mean pairwise ``1 - cos`` of item features within a list);
* **phases**: ``phase="valid"`` fits on train and scores the validation part (use it to tune);
  ``phase="test"`` fits on train+validation and scores the test part (report it, never tune on it).

Entry points: :func:`make_split`, :func:`evaluate`, :func:`grid_search`, :func:`evaluate_ranking`,
:func:`format_table`.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from knowcast.recommend.base import Recommender, clone, fit_with
from knowcast.recommend.datasets import InteractionData

__all__ = [
    "METRICS",
    "Split",
    "evaluate",
    "evaluate_policy",
    "evaluate_ranking",
    "fit_on",
    "format_table",
    "grid_search",
    "make_split",
    "to_json",
]

METRICS = ("recall", "precision", "ndcg", "map", "mrr", "hit", "coverage", "novelty", "ild")
SPLITS = ("random", "leave_last_out", "time")


@dataclass
class Split:
    """Three disjoint parts of one dataset, same shape. ``train`` / ``train_valid`` keep the side data."""

    train: InteractionData
    valid: sp.csr_matrix
    test: sp.csr_matrix
    train_valid: InteractionData
    kind: str
    seed: int


def _ratio_counts(tot: np.ndarray, ratios: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-user (valid, test) sizes with RecBole's ``split_by_ratio`` rounding: floor, but a user with any
    room gets at least one validation and one test item as long as two or more stay in training."""
    n_valid = np.floor(ratios[1] * tot).astype(np.int64)
    n_test = np.floor(ratios[2] * tot).astype(np.int64)
    n_train = tot - n_valid - n_test
    for n_part, r in ((n_test, ratios[2]), (n_valid, ratios[1])):
        bump = (n_train > 1) & (r * tot > 0) & (r * tot < 1)
        n_part[bump] += 1
        n_train[bump] -= 1
    return n_valid, n_test


def make_split(
    data: InteractionData,
    kind: str = "random",
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> Split:
    """Cut ``data`` into train / validation / test (see the module docstring for the three kinds)."""
    if kind not in SPLITS:
        raise ValueError(f"split kind must be one of {SPLITS}, got {kind!r}")
    if abs(sum(ratios) - 1.0) > 1e-9 or min(ratios) < 0:
        raise ValueError(f"ratios must be >= 0 and sum to 1, got {ratios}")
    df = data.to_frame()
    if kind != "random" and df["ts"].isna().all():
        raise ValueError(f"split {kind!r} needs timestamps; dataset {data.name!r} has none")
    rng = np.random.default_rng(seed)
    part = np.zeros(len(df), dtype=np.int8)  # 0 train, 1 valid, 2 test
    if kind == "time":
        q1, q2 = np.quantile(df["ts"].to_numpy(), [ratios[0], ratios[0] + ratios[1]])
        part[df["ts"].to_numpy() >= q1] = 1
        part[df["ts"].to_numpy() >= q2] = 2
    else:
        if kind == "random":
            df["key"] = rng.random(len(df))
        else:
            # time order, ties broken at random so the result does not depend on row order
            df["key"] = df["ts"].to_numpy() + rng.random(len(df)) * 1e-6
        df = df.sort_values(["user", "key"], kind="stable")
        pos = df.groupby("user").cumcount().to_numpy()
        tot = df.groupby("user")["item"].transform("size").to_numpy()
        if kind == "random":
            n_valid, n_test = _ratio_counts(tot, ratios)
        else:
            n_test = (tot >= 2).astype(np.int64)
            n_valid = (tot >= 3).astype(np.int64)
        from_end = tot - pos  # 1 for the last
        p = np.zeros(len(df), dtype=np.int8)
        p[from_end <= n_test + n_valid] = 1
        p[from_end <= n_test] = 2
        part = p
    shape = data.matrix.shape

    def mat(mask: np.ndarray, col: str = "weight") -> sp.csr_matrix:
        sub = df[mask]
        m = sp.csr_matrix((sub[col].to_numpy(), (sub["user"], sub["item"])), shape=shape)
        m.sort_indices()
        return m

    has_ts = not df["ts"].isna().all()
    tr, va, te = part == 0, part == 1, part == 2
    train = data.with_matrix(mat(tr), mat(tr, "ts") if has_ts else None)
    train_valid = data.with_matrix(mat(tr | va), mat(tr | va, "ts") if has_ts else None)
    return Split(train=train, valid=mat(va), test=mat(te), train_valid=train_valid, kind=kind, seed=seed)


def fit_on(model: Recommender, data: InteractionData) -> Recommender:
    """Fit ``model`` on ``data``, passing the side information its ``fit`` accepts (``timestamps``,
    ``item_features``, ``user_segments``, ``items``, ``item_titles``) so one harness fits every algorithm."""
    return fit_with(
        model,
        data.matrix,
        timestamps=data.timestamps,
        item_features=data.item_features,
        user_segments=data.user_segments,
        items=data.items,
        item_titles=data.item_titles,
    )


def _dense_features(item_vectors: sp.spmatrix | np.ndarray) -> np.ndarray:
    f = item_vectors.toarray() if sp.issparse(item_vectors) else np.asarray(item_vectors)
    f = f.astype(np.float32)
    norms = np.linalg.norm(f, axis=1)
    norms[norms == 0] = 1.0
    return f / norms[:, None]


def evaluate_ranking(
    rec_ids: np.ndarray,
    truth: sp.csr_matrix,
    k: int,
    item_popularity: np.ndarray | None = None,
    n_train_users: int | None = None,
    item_features: sp.spmatrix | np.ndarray | None = None,
) -> dict[str, float]:
    """Metrics of ready-made top lists: ``rec_ids[u]`` (ids, ``-1`` = empty slot) against ``truth`` rows.

    ``truth`` has one row per row of ``rec_ids``; rows without any held-out item are skipped. Novelty needs
    ``item_popularity`` (training counts) and ``n_train_users``; diversity needs ``item_features``.
    """
    rec_ids = np.asarray(rec_ids)[:, :k]
    truth = sp.csr_matrix(truth)
    n_truth = np.diff(truth.indptr)
    users = np.flatnonzero(n_truth > 0)
    if len(users) == 0:
        raise ValueError("no user has a held-out item: nothing to evaluate")
    rec = rec_ids[users]
    valid = rec >= 0
    t = truth[users]
    hits = np.zeros(rec.shape, dtype=bool)
    step = max(1, 5_000_000 // max(truth.shape[1], 1))
    for s in range(0, len(users), step):
        dense = t[s : s + step].toarray() > 0
        r = np.where(valid[s : s + step], rec[s : s + step], 0)
        hits[s : s + step] = np.take_along_axis(dense, r, axis=1) & valid[s : s + step]
    n_rel = n_truth[users].astype(np.float64)
    ranks = np.arange(1, rec.shape[1] + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1)
    dcg = (hits * discounts).sum(axis=1)
    ideal_len = np.minimum(n_rel, rec.shape[1]).astype(np.int64)
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_len]
    n_hits = hits.sum(axis=1)
    cum_hits = np.cumsum(hits, axis=1)
    ap = (hits * cum_hits / ranks).sum(axis=1) / np.maximum(ideal_len, 1)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    out = {
        "recall": float(np.mean(n_hits / n_rel)),
        "precision": float(np.mean(n_hits / k)),
        "ndcg": float(np.mean(dcg / idcg)),
        "map": float(np.mean(ap)),
        "mrr": float(np.mean(1.0 / first)),
        "hit": float(np.mean(n_hits > 0)),
        "coverage": float(len(np.unique(rec[valid])) / truth.shape[1]),
        "users": float(len(users)),
    }
    if item_popularity is not None and n_train_users:
        pop = np.maximum(np.asarray(item_popularity, dtype=np.float64), 1.0)
        info = -np.log2(pop / float(n_train_users))
        out["novelty"] = float(info[rec[valid]].mean()) if valid.any() else 0.0
    if item_features is not None:
        f = _dense_features(item_features)
        ild = []
        for s in range(0, len(users), 512):
            r = rec[s : s + 512]
            v = valid[s : s + 512]
            vec = f[np.where(v, r, 0)] * v[..., None]
            sims = np.einsum("ukd,uld->ukl", vec, vec)
            cnt = v.sum(axis=1)
            pairs = cnt * (cnt - 1)
            off = sims.sum(axis=(1, 2)) - np.einsum("ukk->u", sims)
            with np.errstate(invalid="ignore", divide="ignore"):
                ild.append(np.where(pairs > 0, 1.0 - off / np.maximum(pairs, 1), np.nan))
        vals = np.concatenate(ild)
        out["ild"] = float(np.nanmean(vals)) if np.isfinite(vals).any() else 0.0
    return out


def _as_factory(model_factory: Callable[[], Recommender] | Recommender) -> Callable[[], Recommender]:
    if isinstance(model_factory, Recommender):
        return lambda: clone(model_factory)
    if not callable(model_factory):
        raise TypeError("model_factory must be a Recommender or a callable returning one")
    return model_factory


def evaluate(
    model_factory: Callable[[], Recommender] | Recommender,
    dataset: InteractionData | Split,
    split: str = "random",
    k: int = 10,
    seed: int = 0,
    phase: str = "test",
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Fit a fresh model and measure it with full ranking.

    ``phase="test"``: fit on train+validation, score the test part. ``phase="valid"``: fit on train, score the
    validation part (for tuning). ``dataset`` may be an already made :class:`Split` (then ``split``/``seed``
    are taken from it) so that several models share one split. Returns a dict with every metric@k, fit and
    scoring seconds, and the protocol used.
    """
    if phase not in ("test", "valid"):
        raise ValueError(f"phase must be 'test' or 'valid', got {phase!r}")
    sp_ = dataset if isinstance(dataset, Split) else make_split(dataset, kind=split, seed=seed)
    fit_data = sp_.train_valid if phase == "test" else sp_.train
    truth = sp_.test if phase == "test" else sp_.valid
    model = _as_factory(model_factory)()
    t0 = time.perf_counter()
    fit_on(model, fit_data)
    fit_s = time.perf_counter() - t0
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    t0 = time.perf_counter()
    rec = np.full((fit_data.n_users, k), -1, dtype=np.int64)
    for s in range(0, len(users), batch_size):
        u = users[s : s + batch_size]
        ids, _ = model.recommend(u, fit_data.matrix[u], n=k, filter_already_seen=True)
        rec[u] = ids
    score_s = time.perf_counter() - t0
    pop = np.asarray((fit_data.matrix > 0).sum(axis=0)).ravel()
    feats = fit_data.item_features if fit_data.item_features is not None else fit_data.matrix.T.tocsr()
    metrics = evaluate_ranking(
        rec, truth, k, item_popularity=pop, n_train_users=fit_data.n_users, item_features=feats
    )
    out: dict[str, Any] = {
        f"{m}@{k}" if m not in ("coverage", "novelty", "ild", "users") else m: v for m, v in metrics.items()
    }
    out.update(
        {
            "model": repr(model),
            "dataset": fit_data.name,
            "split": sp_.kind,
            "seed": sp_.seed,
            "phase": phase,
            "k": k,
            "fit_s": round(fit_s, 3),
            "score_s": round(score_s, 3),
        }
    )
    return out


def evaluate_policy(
    model: Recommender,
    split_: Split,
    policy: Any,
    catalog: Any,
    k: int = 10,
    n_candidates: int = 100,
) -> dict[str, Any]:
    """Metrics of a fitted model's lists after a :class:`~knowcast.recommend.policy.RankingPolicy` re-ranked
    its top ``n_candidates`` (MMR diversity, creator caps...): measures what the trade-off costs in NDCG and
    buys in intra-list diversity and coverage. ``model`` must be fitted on ``split_.train_valid``."""
    from knowcast.recommend.policy import UserContext

    fit_data = split_.train_valid
    truth = split_.test
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    rec = np.full((fit_data.n_users, k), -1, dtype=np.int64)
    for s in range(0, len(users), 1024):
        u = users[s : s + 1024]
        ids, scores = model.recommend(u, fit_data.matrix[u], n=n_candidates)
        for row, uid in enumerate(u):
            page = policy.rank(ids[row], scores[row], catalog, UserContext(), n=k)
            rec[uid, : len(page)] = [r.item for r in page]
    pop = np.asarray((fit_data.matrix > 0).sum(axis=0)).ravel()
    feats = fit_data.item_features if fit_data.item_features is not None else fit_data.matrix.T.tocsr()
    m = evaluate_ranking(
        rec, truth, k, item_popularity=pop, n_train_users=fit_data.n_users, item_features=feats
    )
    return {f"{n}@{k}" if n not in ("coverage", "novelty", "ild", "users") else n: v for n, v in m.items()}


def grid_search(
    model_builder: Callable[..., Recommender],
    grid: Mapping[str, Iterable[Any]],
    dataset: InteractionData | Split,
    split: str = "random",
    k: int = 10,
    seed: int = 0,
    metric: str = "ndcg",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Try every combination of ``grid`` on the **validation** part; returns (best params, all results).

    ``model_builder(**params)`` builds the model. The test part is never looked at: call :func:`evaluate`
    with ``phase="test"`` on the winner afterwards.
    """
    sp_ = dataset if isinstance(dataset, Split) else make_split(dataset, kind=split, seed=seed)
    keys = list(grid)
    results = []
    for values in itertools.product(*(list(grid[key]) for key in keys)):
        params = dict(zip(keys, values, strict=True))
        res = evaluate(lambda p=params: model_builder(**p), sp_, k=k, phase="valid")
        res["params"] = params
        results.append(res)
    key = f"{metric}@{k}"
    best = max(results, key=lambda r: r[key])
    return dict(best["params"]), results


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None, digits: int = 4) -> str:
    """A Markdown table of result dicts (the same dicts :func:`evaluate` returns)."""
    if not rows:
        return ""
    cols = columns or [c for c in rows[0] if not isinstance(rows[0][c], dict | list)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.{digits}f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_json(rows: list[dict[str, Any]]) -> str:
    """Results as JSON (NumPy scalars converted)."""
    return json.dumps(rows, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
