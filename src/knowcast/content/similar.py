"""Similar items from content features (text embedding, tags/topics, video features), for
``GET /v1/items/{id}/similar``.

Why blocks with weights: each feature family lives on its own scale and dimension count. Every block is
L2-normalised per item and multiplied by the square root of its weight, and the blocks are concatenated, so
the dot product of two items is exactly ``sum_b weight_b * cosine_b(i, j)`` (weights are normalised to
sum 1). An item missing a block (no video, no text) gets zeros there and is compared on the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from knowcast.content.embeddings import l2_normalize

__all__ = ["SimilarItems", "standardize_numeric"]


def standardize_numeric(frame: pd.DataFrame) -> np.ndarray:
    """Z-scores of numeric columns (e.g. video summaries: duration, cuts/minute, brightness); NaN -> 0."""
    x = frame.apply(pd.to_numeric, errors="coerce").astype(float)
    z = (x - x.mean()) / x.std(ddof=0).replace(0, 1.0)
    return z.fillna(0.0).to_numpy()


class SimilarItems:
    """Cosine nearest neighbours over weighted feature blocks; an ``implicit``-style ``similar_items``.

    Parameters
    ----------
    weights: weight per block name (blocks not named get weight 1).
    """

    def __init__(self, weights: Mapping[str, float] | None = None) -> None:
        self.weights = weights

    def fit(self, item_ids: Sequence[Any], blocks: Mapping[str, np.ndarray]) -> SimilarItems:
        if not blocks:
            raise ValueError("give at least one feature block")
        n = len(item_ids)
        w = {name: float((self.weights or {}).get(name, 1.0)) for name in blocks}
        if any(v < 0 for v in w.values()) or sum(w.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {w}")
        total = sum(w.values())
        parts = []
        for name, m in blocks.items():
            m = np.asarray(m, dtype=np.float64)
            if m.ndim != 2 or m.shape[0] != n:
                raise ValueError(f"block {name!r} has shape {m.shape}; expected ({n}, d)")
            parts.append(l2_normalize(m) * np.sqrt(w[name] / total))
        self.matrix_ = np.hstack(parts)
        self.item_ids_ = list(item_ids)
        self.index_ = pd.Index(self.item_ids_)
        if not self.index_.is_unique:
            raise ValueError("item_ids must be unique")
        self.block_weights_ = {k: v / total for k, v in w.items()}
        return self

    def similar_items(
        self, item_id: Any, n: int = 10, candidates: Sequence[Any] | None = None
    ) -> list[tuple[Any, float]]:
        """The ``n`` most similar items to ``item_id`` as ``(item_id, score)``, itself excluded.

        ``candidates`` restricts the answer (e.g. paid items only, or a segment's allowed catalog).
        """
        if not hasattr(self, "matrix_"):
            raise RuntimeError("SimilarItems is not fitted: call fit() first")
        i = self.index_.get_indexer([item_id])[0]
        if i < 0:
            raise KeyError(f"unknown item_id {item_id!r}")
        scores = self.matrix_ @ self.matrix_[i]
        scores[i] = -np.inf
        if candidates is not None:
            allowed = np.zeros(len(scores), dtype=bool)
            ci = self.index_.get_indexer(list(candidates))
            allowed[ci[ci >= 0]] = True
            scores = np.where(allowed, scores, -np.inf)
        k = min(n, int(np.isfinite(scores).sum()))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.item_ids_[j], round(float(scores[j]), 4)) for j in top]
