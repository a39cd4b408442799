"""Train the shipped sentiment model: ``python -m knowcast.text.train_sentiment [--out PATH] [--folds K]``.

Reads ChnSentiCorp hotel reviews and waimai reviews from shared/data/sentiment, holds out 20% of each corpus
with a fixed seed (stratified by label; :func:`split` is what benchmarks/sentiment.py uses to measure only on
unseen rows) and trains on the other 80% only:

1. features as in :mod:`knowcast.text.sentiment`: character 1–4-grams and word 1–2-grams seen in at least
   two training reviews; idf = ln((1 + n) / (1 + df)) + 1; a sublinear tf-idf view and a binary-idf view,
   each L2-normalised per family;
2. members: logistic regression on tf-idf and NB-LR (binary-idf scaled by the log-count ratio
   r = ln(p/|p|₁ / q/|q|₁), p and q the smoothed positive/negative document counts) on both corpora
   together, and the same two on each corpus alone;
3. each member's C is chosen by stratified K-fold cross-validation on the training rows (never the held-out
   rows); the out-of-fold decision values also give each member's spread, by which it is divided so the
   members weigh alike in the average;
4. the ``general`` column combines the two joint members (live comments use it); a corpus's column combines
   the joint members and that corpus's own members, weighted by a logistic regression on their
   out-of-fold values (stacking, training rows only), which also calibrates the column as log-odds.
   Everything is linear, so the column is stored as one coefficient per n-gram and view.

This module reads files (it is a training script, not core logic): the scoring in sentiment.py stays pure.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from knowcast.text.normalize import normalize
from knowcast.text.sentiment import GENERAL, MODEL_PATH, SentimentModel, featurize
from knowcast.text.tokenize import tokenize

SEED = 20240601
TEST_FRAC = 0.2
CORPORA = {"hotel": "ChnSentiCorp_htl_all.csv", "waimai": "waimai_10k.csv"}
MIN_DF = 2
LR_GRID = (3.0, 10.0, 30.0)
NB_GRID = (1.0, 3.0, 10.0)
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


def gram_lists(texts: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """Character and word n-gram lists of each text, exactly as the scorer builds them."""
    chars, words = [], []
    for t in texts:
        s = normalize(t)
        c, w = featurize(s, tokenize(s, stopwords=False, normalized=True))
        chars.append(c)
        words.append(w)
    return chars, words


class Features:
    """Vocabulary (n-grams with document frequency ≥ ``min_df`` in the fitting texts) and idf per family."""

    def __init__(self, min_df: int = MIN_DF) -> None:
        self.min_df = min_df

    def fit(self, chars: list[list[str]], words: list[list[str]]) -> Features:
        n = len(chars)
        self.vocab_: list[str] = []
        self.family_: list[int] = []
        self.index_: list[dict[str, int]] = []
        idf: list[float] = []
        for fam, docs in enumerate((chars, words)):
            df: dict[str, int] = {}
            for d in docs:
                for g in set(d):
                    df[g] = df.get(g, 0) + 1
            keep = sorted(g for g, c in df.items() if c >= self.min_df)
            self.index_.append({g: len(self.vocab_) + i for i, g in enumerate(keep)})
            self.vocab_ += keep
            self.family_ += [fam] * len(keep)
            idf += [float(np.log((1 + n) / (1 + df[g])) + 1.0) for g in keep]
        self.idf_ = np.asarray(idf)
        return self

    def transform(self, chars: list[list[str]], words: list[list[str]]):
        """(sublinear tf-idf view, binary-idf view) as CSR matrices, each family L2-normalised per row."""
        import scipy.sparse as sp

        views = []
        for binary in (False, True):
            rows, cols, vals = [], [], []
            for i in range(len(chars)):
                for fam, doc in enumerate((chars[i], words[i])):
                    cnt: dict[int, int] = {}
                    idx = self.index_[fam]
                    for g in doc:
                        j = idx.get(g)
                        if j is not None:
                            cnt[j] = cnt.get(j, 0) + 1
                    if not cnt:
                        continue
                    js = np.fromiter(cnt, dtype=np.int64)
                    w = self.idf_[js].copy()
                    if not binary:
                        w *= 1.0 + np.log(np.fromiter(cnt.values(), dtype=np.float64))
                    w /= np.sqrt(w @ w)
                    rows.append(np.full(len(js), i))
                    cols.append(js)
                    vals.append(w)
            X = sp.csr_matrix(
                (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                shape=(len(chars), len(self.vocab_)),
            )
            views.append(X)
        return views[0], views[1]


def _nb_ratio(Xb, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Log-count ratio of feature presence in positive vs negative documents (NB-SVM)."""
    B = (Xb > 0).astype(np.float64)
    p = np.asarray(B[y == 1].sum(axis=0)).ravel() + alpha
    q = np.asarray(B[y == 0].sum(axis=0)).ravel() + alpha
    return np.log((p / p.sum()) / (q / q.sum()))


def _fit_member(
    kind: str, C: float, Xs, Xb, y: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """(coefficients on the tf-idf view, on the binary view, intercept) of one member."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=C, solver="liblinear", max_iter=3000, random_state=seed)
    if kind == "lr":
        clf.fit(Xs, y)
        return clf.coef_[0], np.zeros(Xs.shape[1]), float(clf.intercept_[0])
    r = _nb_ratio(Xb, y)
    clf.fit(Xb.multiply(r).tocsr(), y)
    return np.zeros(Xs.shape[1]), clf.coef_[0] * r, float(clf.intercept_[0])


def _decision(m: tuple[np.ndarray, np.ndarray, float], Xs, Xb) -> np.ndarray:
    return Xs @ m[0] + Xb @ m[1] + m[2]


def train(seed: int = SEED, folds: int = 3) -> tuple[SentimentModel, dict[str, float], dict[str, object]]:
    """Fit on the training part of both corpora; returns the model, held-out accuracy per corpus (with
    the corpus's own column) and a report of the cross-validation choices."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    texts: list[str] = []
    labels: list[int] = []
    doms: list[int] = []
    held: dict[str, tuple[list[str], np.ndarray]] = {}
    names = list(CORPORA)
    for k, name in enumerate(names):
        df = load_corpus(name)
        y = df["label"].to_numpy()
        tr, te = split(y, seed=seed)
        texts += df["review"].astype(str).iloc[tr].tolist()
        labels += y[tr].tolist()
        doms += [k] * len(tr)
        held[name] = (df["review"].astype(str).iloc[te].tolist(), y[te])
        _log.info("%s: %d train rows, %d held out", name, len(tr), len(te))
    y = np.asarray(labels)
    dom = np.asarray(doms)
    t0 = time.perf_counter()
    chars, words = gram_lists(texts)
    feats = Features().fit(chars, words)
    Xs, Xb = feats.transform(chars, words)
    _log.info("features: %d n-grams, built in %.1fs", len(feats.vocab_), time.perf_counter() - t0)

    # members: (name, kind, rows it trains on)
    members = [("joint-lr", "lr", None), ("joint-nb", "nb", None)]
    for k, name in enumerate(names):
        members += [(f"{name}-lr", "lr", k), (f"{name}-nb", "nb", k)]
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    report: dict[str, object] = {}
    fitted: dict[str, tuple[tuple[np.ndarray, np.ndarray, float], float]] = {}
    oofs: dict[str, np.ndarray] = {}
    for mname, kind, k in members:
        rows = np.arange(len(y)) if k is None else np.flatnonzero(dom == k)
        best = None
        for C in LR_GRID if kind == "lr" else NB_GRID:
            oof = np.zeros(len(rows))
            for a, b in cv.split(rows, y[rows] * 2 + dom[rows]):
                m = _fit_member(kind, C, Xs[rows[a]], Xb[rows[a]], y[rows[a]], seed)
                oof[b] = _decision(m, Xs[rows[b]], Xb[rows[b]])
            acc = float(((oof > 0) == y[rows]).mean())
            _log.info("  %-10s C=%-5g CV accuracy %.4f", mname, C, acc)
            if best is None or acc > best[0]:
                best = (acc, C, float(np.std(oof)), oof)
        assert best is not None
        m = _fit_member(kind, best[1], Xs[rows], Xb[rows], y[rows], seed)
        fitted[mname] = (m, best[2])
        full = np.full(len(y), np.nan)
        full[rows] = best[3]
        oofs[mname] = full
        report[mname] = {"C": best[1], "cv_accuracy": round(best[0], 4)}

    domains = [GENERAL, *names]
    n = len(feats.vocab_)
    coef_t = np.zeros((n, len(domains)))
    coef_b = np.zeros((n, len(domains)))
    intercept = np.zeros(len(domains))
    for col, d in enumerate(domains):
        use = ["joint-lr", "joint-nb"] + ([] if d == GENERAL else [f"{d}-lr", f"{d}-nb"])
        rows = np.arange(len(y)) if d == GENERAL else np.flatnonzero(dom == names.index(d))
        # stacking: a logistic regression on the members' out-of-fold values (each divided by its spread)
        # weighs the members and calibrates the result, so the column's output is a log-odds again (the
        # neutral band and p_positive mean something); fitted on training rows only
        Z = np.column_stack([oofs[m][rows] / fitted[m][1] for m in use])
        stack = LogisticRegression(C=1.0, solver="lbfgs").fit(Z, y[rows])
        weights = stack.coef_[0]
        cv_acc = float(((stack.decision_function(Z) > 0) == y[rows]).mean())
        report[f"column {d}"] = {
            "members": dict(zip(use, np.round(weights, 3).tolist(), strict=True)),
            "cv_accuracy": round(cv_acc, 4),
        }
        for mname, wt in zip(use, weights, strict=True):
            (ct, cb, b), spread = fitted[mname]
            scale = float(wt) / spread
            coef_t[:, col] += ct * scale
            coef_b[:, col] += cb * scale
            intercept[col] += b * scale
        intercept[col] += float(stack.intercept_[0])
    model = SentimentModel(feats.vocab_, np.asarray(feats.family_), feats.idf_, coef_t, coef_b, intercept,
                           domains)  # fmt: skip
    acc = {}
    for name, (ts, yt) in held.items():
        acc[name] = float(((model.predict_proba(ts, domain=name) >= 0.5).astype(int) == yt).mean())
        acc[f"{name} (general)"] = float(((model.predict_proba(ts) >= 0.5).astype(int) == yt).mean())
    return model, acc, report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=MODEL_PATH)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--folds", type=int, default=3, help="cross-validation folds for choosing C")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    model, acc, report = train(seed=args.seed, folds=args.folds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    _log.info("CV choices: %s", report)
    _log.info("wrote %s (%.1f MB); held-out accuracy %s", args.out, args.out.stat().st_size / 1e6, acc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
