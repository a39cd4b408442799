"""Predictive scores: churn, propensity to buy, commercial value of a video or live (pure, scikit-learn).

One estimator shape for all three: gradient boosting on tabular features, fitted on an earlier period and
evaluated on a later one (a time split, so the reported AUC is what a deployment would see), with AUC,
Brier score and a calibration table reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import brier_score_loss, roc_auc_score


@dataclass
class Evaluation:
    auc: float
    brier: float
    base_rate: float
    n: int
    calibration: pd.DataFrame = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"auc": self.auc, "brier": self.brier, "base_rate": self.base_rate, "n": self.n,
                "calibration": self.calibration.to_dict(orient="records")}  # fmt: skip


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed rate per probability decile."""
    q = pd.qcut(p, q=bins, duplicates="drop")
    df = pd.DataFrame({"bin": q, "p": p, "y": y}).groupby("bin", observed=True)
    return pd.DataFrame(
        {"predicted": df["p"].mean(), "observed": df["y"].mean(), "n": df.size()}
    ).reset_index(drop=True)


class ScoreModel:
    """Gradient-boosted binary classifier over named feature columns (scikit-learn estimator habits)."""

    def __init__(
        self,
        features: tuple[str, ...],
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_leaf_nodes: int = 15,
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.random_state = random_state

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"feature column(s) missing: {missing}")
        return frame[list(self.features)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)

    def fit(self, frame: pd.DataFrame, y: np.ndarray | pd.Series) -> ScoreModel:
        y = np.asarray(y, dtype=int)
        if len(np.unique(y)) < 2:
            raise ValueError("the label has a single class in the training period; cannot fit")
        self.model_ = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            random_state=self.random_state,
        ).fit(self._x(frame), y)  # fmt: skip
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise RuntimeError("call fit() first")
        return self.model_.predict_proba(self._x(frame))[:, 1]

    def evaluate(self, frame: pd.DataFrame, y: np.ndarray | pd.Series) -> Evaluation:
        y = np.asarray(y, dtype=int)
        p = self.predict_proba(frame)
        auc = float(roc_auc_score(y, p)) if len(np.unique(y)) > 1 else float("nan")
        return Evaluation(
            auc, float(brier_score_loss(y, p)), float(y.mean()), len(y), calibration_table(y, p)
        )


CHURN_FEATURES = (
    "n_view", "n_like", "n_comment", "n_share", "n_click", "n_add_to_cart", "n_purchase", "n_live_join",
    "n_tip",
    "active_days", "recency_days", "tenure_days", "spend", "watch_ratio",
)  # fmt: skip


def activity_features(activity: pd.DataFrame, cutoff_ms: int) -> pd.DataFrame:
    """Add recency and tenure (days before the cutoff) to queries.user_activity rows."""
    a = activity.copy()
    a["recency_days"] = (cutoff_ms - a["last_ts"].astype(float)) / 86_400_000
    a["tenure_days"] = (cutoff_ms - a["first_ts"].astype(float)) / 86_400_000
    return a


def segment(
    frame: pd.DataFrame,
    scores: np.ndarray,
    threshold: float | None = None,
    top: int | None = None,
    id_col: str = "user_id",
) -> pd.DataFrame:
    """An exportable segment: ids with their score, the ``top`` highest or those above ``threshold``."""
    out = pd.DataFrame({id_col: frame[id_col].to_numpy(), "score": scores}).sort_values(
        "score", ascending=False
    )
    if threshold is not None:
        out = out[out["score"] >= threshold]
    if top is not None:
        out = out.head(top)
    return out.reset_index(drop=True)


COMMERCIAL_FEATURES = (
    "first_hour_views", "first_hour_watch_ratio", "first_hour_likes", "first_hour_comments",
    "first_hour_shares", "first_hour_intent_comments", "promoted_price", "is_live",
)  # fmt: skip
