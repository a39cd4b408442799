"""Topic model over the catalog: NMF (default) or LDA, with the number of topics chosen by coherence.

Why coherence and not a fixed k: a catalog of cooking videos and one of finance courses do not have the same
number of themes. For each candidate k we fit the model and score its topics by NPMI coherence (Bouma 2009;
Roeder et al. 2015 found it among the measures closest to human judgement): for the top-N words of a topic,
the average over word pairs of ``log(P(a, b) / (P(a) P(b))) / -log P(a, b)``, with probabilities counted as
document co-occurrence in the same catalog. Pairs that never co-occur score -1, pairs that always do score
+1. The k with the best mean coherence wins (ties go to the smaller k).

NMF runs on TF-IDF (it favours distinctive words); LDA on raw counts (it is a count model). An item's topic
mixture is its row of the document-topic matrix normalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import NMF, LatentDirichletAllocation
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

from knowcast.content.text import is_keyword_token

__all__ = ["TopicModel", "npmi_coherence"]


def _identity(x: list[str]) -> list[str]:
    return x


def npmi_coherence(top_words: np.ndarray, doc_term: sp.csr_matrix) -> np.ndarray:
    """NPMI coherence per topic; ``top_words``: (topics, N) term ids; ``doc_term``: binary docs x terms."""
    n_docs = doc_term.shape[0]
    cols = np.unique(top_words)
    sub = doc_term[:, cols].astype(np.float64)
    co = (sub.T @ sub).toarray()  # co-document counts among the words that matter
    pos = {c: i for i, c in enumerate(cols)}
    df = np.diag(co)
    out = np.zeros(len(top_words))
    eps = 1e-12
    for t, words in enumerate(top_words):
        idx = [pos[w] for w in words]
        vals = []
        for i in range(len(idx)):
            for j in range(i + 1, len(idx)):
                a, b = idx[i], idx[j]
                pab = co[a, b] / n_docs
                if pab <= 0:
                    vals.append(-1.0)
                    continue
                pa, pb = df[a] / n_docs, df[b] / n_docs
                vals.append(float(np.log(pab / (pa * pb + eps)) / (-np.log(pab) + eps)))
        out[t] = float(np.mean(vals)) if vals else 0.0
    return out


class TopicModel:
    """Topics over tokenized item documents.

    Parameters
    ----------
    n_topics: an int, or ``"auto"`` to pick from ``candidates`` by NPMI coherence.
    candidates: numbers of topics tried when ``n_topics="auto"``.
    method: ``"nmf"`` or ``"lda"``.
    top_n: words per topic (shown to people and used for coherence).
    min_df / max_df: vocabulary limits (absolute count / fraction of items).
    random_state: seed.
    """

    def __init__(
        self,
        n_topics: int | str = "auto",
        candidates: Sequence[int] = (5, 10, 15, 20, 30),
        method: str = "nmf",
        top_n: int = 10,
        min_df: int = 5,
        max_df: float = 0.3,
        random_state: int = 0,
    ) -> None:
        self.n_topics = n_topics
        self.candidates = candidates
        self.method = method
        self.top_n = top_n
        self.min_df = min_df
        self.max_df = max_df
        self.random_state = random_state

    def _model(self, k: int):
        if self.method == "nmf":
            return NMF(n_components=k, init="nndsvda", random_state=self.random_state, max_iter=300)
        return LatentDirichletAllocation(
            n_components=k, random_state=self.random_state, learning_method="batch"
        )

    def fit(self, tokens: Sequence[list[str]]) -> TopicModel:
        """Fit on token lists (one per item; see ``knowcast.content.text.tokenize_many``)."""
        if self.method not in {"nmf", "lda"}:
            raise ValueError(f"method must be 'nmf' or 'lda', got {self.method!r}")
        toks = [[t for t in row if is_keyword_token(t)] for row in tokens]
        vec_cls = TfidfVectorizer if self.method == "nmf" else CountVectorizer
        kwargs = {"sublinear_tf": True} if self.method == "nmf" else {}
        self.vectorizer_ = vec_cls(analyzer=_identity, min_df=self.min_df, max_df=self.max_df, **kwargs)
        try:
            x = self.vectorizer_.fit_transform(toks)
        except ValueError as exc:
            raise ValueError(f"too little text to learn topics from ({len(toks)} items): {exc}") from exc
        self.terms_ = self.vectorizer_.get_feature_names_out()
        binary = (x > 0).astype(np.float64).tocsr()
        if self.n_topics == "auto":
            ks = sorted({int(k) for k in self.candidates if 2 <= int(k) < min(x.shape)})
            if not ks:
                raise ValueError(
                    f"no candidate number of topics fits {x.shape[0]} items x {x.shape[1]} terms"
                )
        elif isinstance(self.n_topics, int) and self.n_topics >= 2:
            ks = [self.n_topics]
        else:
            raise ValueError(f"n_topics must be an int >= 2 or 'auto', got {self.n_topics!r}")
        self.coherence_by_k_: dict[int, float] = {}
        best = None
        for k in ks:
            model = self._model(k).fit(x)
            top = np.argsort(-model.components_, axis=1)[:, : self.top_n]
            coh = npmi_coherence(top, binary)
            score = float(coh.mean())
            self.coherence_by_k_[k] = round(score, 4)
            if best is None or score > best[0] + 1e-9:
                best = (score, k, model, top, coh)
        self.coherence_, self.n_topics_, self.model_, top, coh = best
        self.topic_coherence_ = coh
        self.topic_words_ = [[str(self.terms_[j]) for j in row] for row in top]
        return self

    def transform(self, tokens: Sequence[list[str]]) -> np.ndarray:
        """Topic mixture per item (rows sum to 1; all-zero for items with no known word)."""
        if not hasattr(self, "model_"):
            raise RuntimeError("TopicModel is not fitted: call fit() first")
        toks = [[t for t in row if is_keyword_token(t)] for row in tokens]
        w = self.model_.transform(self.vectorizer_.transform(toks))
        s = w.sum(axis=1, keepdims=True)
        return np.divide(w, s, out=np.zeros_like(w), where=s > 0)

    def topic_labels(self, n_words: int = 3) -> list[str]:
        """A short readable label per topic: its first words joined by ' / '."""
        return [" / ".join(ws[:n_words]) for ws in self.topic_words_]
