"""Train the shipped sentiment model: ``python -m knowcast.text.train_sentiment [--out PATH]``.

Reads ChnSentiCorp hotel reviews and waimai reviews from shared/data/sentiment, holds out 20% of each corpus
with a fixed seed (stratified by label; :func:`split` is what benchmarks/sentiment.py uses to measure only on
unseen rows), builds the hashed tf-idf features of :mod:`knowcast.text.sentiment`, fits a logistic
regression, and writes ``src/knowcast/text/data/sentiment.npz``.

This module reads files (it is a training script, not core logic): the scoring in sentiment.py stays pure.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from knowcast.text.normalize import normalize
from knowcast.text.sentiment import MODEL_PATH, N_BUCKETS, SentimentModel, featurize
from knowcast.text.tokenize import tokenize

SEED = 20240601
TEST_FRAC = 0.2
CORPORA = {"hotel": "ChnSentiCorp_htl_all.csv", "waimai": "waimai_10k.csv"}
_log = logging.getLogger("knowcast.train_sentiment")


def load_corpus(name: str):
    """One corpus as a DataFrame with ``label`` (0/1) and ``review``; empty reviews dropped."""
    import pandas as pd

    from knowcast.paths import shared_data

    df = pd.read_csv(shared_data("sentiment", CORPORA[name]))
    df = df.dropna(subset=["review"])
    df = df[df["review"].astype(str).str.strip() != ""].reset_index(drop=True)
    df["label"] = df["label"].astype(int)
    return df


def split(
    labels: np.ndarray, test_frac: float = TEST_FRAC, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices, reproducible from ``seed`` alone."""
    rng = np.random.RandomState(seed)
    test: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        test.append(idx[: int(round(len(idx) * test_frac))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def build_matrix(texts: list[str], idf: np.ndarray | None = None, min_df: int = 2):
    """Hashed tf-idf rows (char and word families L2-normalised separately); fits idf when not given."""
    import scipy.sparse as sp

    feats = []
    for t in texts:
        s = normalize(t)
        feats.append(featurize(s, tokenize(s, stopwords=False, normalized=True)))
    if idf is None:
        df = np.zeros(N_BUCKETS)
        for chars, words in feats:
            for fam in (chars, words):
                df[list(fam)] += 1
        n = len(texts)
        idf = np.where(df >= min_df, np.log((1 + n) / (1 + df)) + 1.0, 0.0)
    rows, cols, vals = [], [], []
    for i, (chars, words) in enumerate(feats):
        for fam in (chars, words):
            if not fam:
                continue
            idx = np.fromiter(fam.keys(), dtype=np.int64)
            w = (1.0 + np.log(np.fromiter(fam.values(), dtype=np.float64))) * idf[idx]
            norm = math.sqrt(float(w @ w))
            if norm > 0:
                w = w / norm
            keep = w != 0
            rows.extend([i] * int(keep.sum()))
            cols.extend(idx[keep].tolist())
            vals.extend(w[keep].tolist())
    X = sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), N_BUCKETS))
    return X, idf


def train(C: float = 10.0, seed: int = SEED) -> tuple[SentimentModel, dict[str, float]]:
    """Fit on the training part of both corpora; returns the model and held-out accuracy per corpus."""
    from sklearn.linear_model import LogisticRegression

    texts: list[str] = []
    labels: list[int] = []
    held: dict[str, tuple[list[str], np.ndarray]] = {}
    for name in CORPORA:
        df = load_corpus(name)
        y = df["label"].to_numpy()
        tr, te = split(y, seed=seed)
        texts += df["review"].astype(str).iloc[tr].tolist()
        labels += y[tr].tolist()
        held[name] = (df["review"].astype(str).iloc[te].tolist(), y[te])
        _log.info("%s: %d train rows, %d held out", name, len(tr), len(te))
    t0 = time.perf_counter()
    X, idf = build_matrix(texts)
    _log.info(
        "features built in %.1fs (%d non-empty buckets)", time.perf_counter() - t0, int((idf > 0).sum())
    )
    clf = LogisticRegression(C=C, max_iter=3000, solver="liblinear", random_state=seed)
    clf.fit(X, np.asarray(labels))
    coef = np.where(idf > 0, clf.coef_[0], 0.0)
    model = SentimentModel(coef.astype(np.float64), idf, float(clf.intercept_[0]))
    acc = {}
    for name, (ts, y) in held.items():
        Xt, _ = build_matrix(ts, idf=idf)
        acc[name] = float(((Xt @ coef + clf.intercept_[0] > 0).astype(int) == y).mean())
    return model, acc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    ap.add_argument("--C", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    model, acc = train(C=args.C, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    _log.info("wrote %s (%.1f kB); held-out accuracy %s", args.out, args.out.stat().st_size / 1e3, acc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
