"""Keywords and categories for catalog items.

Keywords: :class:`KeywordExtractor` learns inverse document frequencies over the whole catalog and gives each
item the tokens that are frequent in it and rare elsewhere (TF-IDF), or the most central tokens of its word
co-occurrence graph (TextRank, Mihalcea & Tarau 2004), which favours words tied to many others in the same
text and works better on long descriptions and transcripts than on one-line captions.

Categories: :class:`CategoryClassifier` learns a taxonomy from labelled items. Why it beats a plain
"TF-IDF over caption words + logistic regression": short captions are noisy (slang, typos, jieba splitting
new words), so we (1) read every text field (caption, cover text, hashtags), (2) add character 1-3-gram
TF-IDF next to the word TF-IDF, which survives segmentation errors and unseen words, (3) use sublinear term
frequency and (4) a linear SVM (hinge loss, one-vs-rest), which fits sparse high-dimensional text better
than an under-regularised default logistic regression. ``benchmarks/content_tagging.py`` measures it.

:class:`KeywordTaxonomyTagger` covers the other case: the user supplies a taxonomy as seed words per
category and has no labelled items yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.svm import LinearSVC

from knowcast.content.text import is_keyword_token, tokenize_many
from knowcast.text.normalize import normalize

__all__ = ["KeywordExtractor", "CategoryClassifier", "KeywordTaxonomyTagger", "textrank"]


def _identity(x: list[str]) -> list[str]:
    return x


def _check_fitted(obj: object, attr: str) -> None:
    if not hasattr(obj, attr):
        raise RuntimeError(f"{type(obj).__name__} is not fitted: call fit() first")


def textrank(
    tokens: Sequence[str], window: int = 4, damping: float = 0.85, n_iter: int = 50
) -> dict[str, float]:
    """TextRank scores of the distinct tokens of one document.

    Tokens that appear within ``window`` positions of each other are linked (undirected, weighted by how
    often); the score is PageRank on that graph: ``s = (1 - d) + d * W_norm^T s``.
    """
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    n = len(vocab)
    if n == 0:
        return {}
    if n == 1:
        return {next(iter(vocab)): 1.0}
    ids = np.fromiter((vocab[t] for t in tokens), dtype=np.int64, count=len(tokens))
    rows, cols = [], []
    for k in range(1, window):
        rows.append(ids[:-k])
        cols.append(ids[k:])
    r = np.concatenate(rows) if rows else np.empty(0, np.int64)
    c = np.concatenate(cols) if cols else np.empty(0, np.int64)
    keep = r != c
    r, c = r[keep], c[keep]
    w = sp.coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n)).tocsr()
    w = w + w.T
    out_deg = np.asarray(w.sum(axis=1)).ravel()
    out_deg[out_deg == 0] = 1.0
    m = sp.diags(1.0 / out_deg) @ w  # row-normalised
    s = np.ones(n)
    for _ in range(n_iter):
        s_new = (1 - damping) + damping * (m.T @ s)
        if np.abs(s_new - s).max() < 1e-6:
            s = s_new
            break
        s = s_new
    inv = list(vocab)
    return {inv[i]: float(s[i]) for i in range(n)}


class KeywordExtractor:
    """Keywords per item from TF-IDF over the catalog, or TextRank within the item.

    Parameters
    ----------
    method: ``"tfidf"`` (default) or ``"textrank"`` (scores are TextRank x IDF, so common words still sink).
    top_k: keywords per item.
    min_df: a token must occur in at least this many items to get a learnt IDF (rarer ones get the max IDF).
    """

    def __init__(self, method: str = "tfidf", top_k: int = 5, min_df: int = 1) -> None:
        self.method = method
        self.top_k = top_k
        self.min_df = min_df

    def fit(
        self, docs: Sequence[str] | None = None, tokens: Sequence[list[str]] | None = None
    ) -> KeywordExtractor:
        """Learn IDF from item documents (``docs``) or already tokenized ones (``tokens``)."""
        if self.method not in {"tfidf", "textrank"}:
            raise ValueError(f"method must be 'tfidf' or 'textrank', got {self.method!r}")
        toks = self._tokens(docs, tokens)
        self.vectorizer_ = TfidfVectorizer(
            analyzer=_identity, sublinear_tf=True, min_df=self.min_df, norm="l2"
        ).fit(toks)
        self.vocabulary_ = self.vectorizer_.vocabulary_
        self.idf_ = self.vectorizer_.idf_
        self.max_idf_ = float(self.idf_.max()) if len(self.idf_) else 1.0
        self.terms_ = self.vectorizer_.get_feature_names_out()
        self.keyword_mask_ = np.array([is_keyword_token(t) for t in self.terms_], dtype=bool)
        return self

    def fit_transform(
        self, docs: Sequence[str] | None = None, tokens: Sequence[list[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        toks = self._tokens(docs, tokens)
        return self.fit(tokens=toks).transform(tokens=toks)

    def transform(
        self, docs: Sequence[str] | None = None, tokens: Sequence[list[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        """For each item, ``[(keyword, score), ...]`` best first (at most ``top_k``)."""
        _check_fitted(self, "vectorizer_")
        toks = self._tokens(docs, tokens)
        if self.method == "textrank":
            return [self._textrank_one(t) for t in toks]
        x = self.vectorizer_.transform(toks).tocsr()
        x.data[~self.keyword_mask_[x.indices]] = 0.0
        out: list[list[tuple[str, float]]] = []
        for i in range(x.shape[0]):
            if any(t not in self.vocabulary_ for t in toks[i]):
                out.append(self._tfidf_one(toks[i]))  # words the catalog never had (a new transcript)
                continue
            lo, hi = x.indptr[i], x.indptr[i + 1]
            data, idx = x.data[lo:hi], x.indices[lo:hi]
            if len(data) == 0:
                out.append([])
                continue
            k = min(self.top_k, len(data))
            top = np.argpartition(-data, k - 1)[:k] if len(data) > k else np.arange(len(data))
            top = top[np.lexsort((idx[top], -data[top]))]
            out.append([(str(self.terms_[idx[j]]), round(float(data[j]), 4)) for j in top if data[j] > 0])
        return out

    def _tfidf_one(self, toks: list[str]) -> list[tuple[str, float]]:
        """TF-IDF of one document whose tokens are not all in the catalog vocabulary: an unseen token is
        rarer than any seen one, so it gets the largest learnt IDF (the vectorizer would drop it)."""
        counts: dict[str, int] = {}
        for t in toks:
            counts[t] = counts.get(t, 0) + 1
        w = {}
        for t, c in counts.items():
            j = self.vocabulary_.get(t)
            w[t] = (1.0 + np.log(c)) * (self.idf_[j] if j is not None else self.max_idf_)
        norm = float(np.sqrt(sum(v * v for v in w.values()))) or 1.0
        scored = sorted(
            ((t, v / norm) for t, v in w.items() if is_keyword_token(t)), key=lambda p: (-p[1], p[0])
        )
        return [(t, round(float(v), 4)) for t, v in scored[: self.top_k]]

    def _textrank_one(self, toks: list[str]) -> list[tuple[str, float]]:
        scores = textrank(toks)
        scored = []
        for t, s in scores.items():
            if not is_keyword_token(t):
                continue
            j = self.vocabulary_.get(t)
            idf = self.idf_[j] if j is not None else self.max_idf_
            scored.append((t, s * idf))
        scored.sort(key=lambda p: (-p[1], p[0]))
        return [(t, round(float(s), 4)) for t, s in scored[: self.top_k]]

    @staticmethod
    def _tokens(docs: Sequence[str] | None, tokens: Sequence[list[str]] | None) -> list[list[str]]:
        if tokens is not None:
            return [list(t) for t in tokens]
        if docs is None:
            raise ValueError("pass docs (texts) or tokens (token lists)")
        return tokenize_many(docs)


class CategoryClassifier:
    """Learn item categories from labelled items: word + character n-gram TF-IDF and a linear SVM.

    Parameters
    ----------
    C: SVM regularisation (smaller = smoother). 0.3 was best on a KuaiRec validation split.
    char_ngrams: character n-gram range, or None to use words only.
    class_weight: passed to the SVM (``"balanced"`` trades accuracy for macro-F1 on rare categories).
    min_df: minimum document frequency of a character n-gram.
    """

    def __init__(
        self,
        C: float = 0.3,
        char_ngrams: tuple[int, int] | None = (1, 3),
        class_weight: str | None = None,
        min_df: int = 2,
    ) -> None:
        self.C = C
        self.char_ngrams = char_ngrams
        self.class_weight = class_weight
        self.min_df = min_df

    def _features(self, docs: Sequence[str], tokens: Sequence[list[str]] | None, fit: bool) -> sp.csr_matrix:
        norm = [normalize(d) if isinstance(d, str) else "" for d in docs]
        toks = [list(t) for t in tokens] if tokens is not None else tokenize_many(norm)
        if fit:
            self.word_vectorizer_ = TfidfVectorizer(analyzer=_identity, sublinear_tf=True)
            xw = self.word_vectorizer_.fit_transform(toks)
        else:
            xw = self.word_vectorizer_.transform(toks)
        if self.char_ngrams is None:
            return xw.tocsr()
        if fit:
            self.char_vectorizer_ = TfidfVectorizer(
                analyzer="char_wb", ngram_range=self.char_ngrams, sublinear_tf=True, min_df=self.min_df
            )
            xc = self.char_vectorizer_.fit_transform(norm)
        else:
            xc = self.char_vectorizer_.transform(norm)
        return sp.hstack([xw, xc]).tocsr()

    def fit(
        self, docs: Sequence[str], labels: Sequence[str], tokens: Sequence[list[str]] | None = None
    ) -> CategoryClassifier:
        """``docs``: one text per item (see ``item_document``); ``labels``: their categories."""
        if len(docs) != len(labels):
            raise ValueError(f"docs has {len(docs)} rows but labels has {len(labels)}")
        for i, lab in enumerate(labels):
            if lab is None or (isinstance(lab, float) and np.isnan(lab)) or str(lab).strip() == "":
                raise ValueError(f"labels row {i} is empty: drop unlabelled items before fit()")
        y = np.asarray([str(v) for v in labels])
        if len(set(y)) < 2:
            raise ValueError("labels must hold at least two categories")
        x = self._features(docs, tokens, fit=True)
        self.model_ = LinearSVC(C=self.C, class_weight=self.class_weight).fit(x, y)
        self.classes_ = self.model_.classes_
        return self

    def decision_function(self, docs: Sequence[str], tokens: Sequence[list[str]] | None = None) -> np.ndarray:
        _check_fitted(self, "model_")
        return self.model_.decision_function(self._features(docs, tokens, fit=False))

    def predict(self, docs: Sequence[str], tokens: Sequence[list[str]] | None = None) -> np.ndarray:
        _check_fitted(self, "model_")
        return self.model_.predict(self._features(docs, tokens, fit=False))

    def predict_top(
        self, docs: Sequence[str], k: int = 3, tokens: Sequence[list[str]] | None = None
    ) -> list[list[tuple[str, float]]]:
        """Top-k categories per item with a softmax over SVM margins as a rough confidence."""
        z = self.decision_function(docs, tokens)
        if z.ndim == 1:  # binary: one margin
            z = np.column_stack([-z, z])
        p = np.exp(3.0 * (z - z.max(axis=1, keepdims=True)))
        p /= p.sum(axis=1, keepdims=True)
        order = np.argsort(-p, axis=1)[:, :k]
        return [
            [(str(self.classes_[j]), round(float(p[i, j]), 4)) for j in row] for i, row in enumerate(order)
        ]


class KeywordTaxonomyTagger:
    """Categories from a user-supplied taxonomy with no labelled items: seed words per category.

    Each item scores ``sum over seed words in the item of 1 / (number of categories sharing that word)``; the
    best-scoring category wins, ``default`` when nothing matches. Categories may be paths like
    ``"教育/编程"``; the tagger treats them as opaque names.
    """

    def __init__(self, taxonomy: Mapping[str, Sequence[str]], default: str | None = None) -> None:
        self.taxonomy = taxonomy
        self.default = default

    def fit(self, docs: Sequence[str] | None = None) -> KeywordTaxonomyTagger:
        if not self.taxonomy:
            raise ValueError("taxonomy is empty: give at least one category with seed words")
        self.categories_ = list(self.taxonomy)
        owners: dict[str, list[int]] = {}
        for ci, (cat, words) in enumerate(self.taxonomy.items()):
            if isinstance(words, str):
                raise TypeError(f"taxonomy[{cat!r}] must be a list of words, not a string")
            for w in words:
                nw = normalize(str(w))
                if nw:
                    owners.setdefault(nw, []).append(ci)
        self.seed_owners_ = owners
        return self

    def predict(self, docs: Sequence[str], tokens: Sequence[list[str]] | None = None) -> list[str | None]:
        _check_fitted(self, "seed_owners_")
        toks = [list(t) for t in tokens] if tokens is not None else tokenize_many(docs)
        out: list[str | None] = []
        for row in toks:
            scores = np.zeros(len(self.categories_))
            for t in set(row):
                t2 = t[1:] if t.startswith("#") else t
                for key in (t, t2):
                    cats = self.seed_owners_.get(key)
                    if cats:
                        scores[cats] += 1.0 / len(cats)
                        break
            out.append(self.categories_[int(np.argmax(scores))] if scores.max() > 0 else self.default)
        return out
