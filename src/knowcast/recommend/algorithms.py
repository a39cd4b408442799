"""Recommender algorithms behind the one :class:`~knowcast.recommend.base.Recommender` interface.

Every class takes its parameters in ``__init__``, learns in ``fit(user_items)`` (a users x items CSR matrix
of non-negative weights) and scores users with one vectorised matrix product, so that serving a single user
is one row times a matrix, and evaluating thousands of users is the same code on a block of rows.

Formulas (``X`` is the users x items matrix, ``x_u`` a user's row):

* :class:`MostPopular`: ``pop(i) = sum_u [x_ui > 0] * 0.5 ** (age_ui / half_life)`` (no decay by default).
* :class:`PopularInSegment`: the popularity within the user's segment, shrunk to the global one for small
  segments: ``(n_s * p_s(i) + m * p(i)) / (n_s + m)``.
* :class:`ItemKNN`: ``sim(i, j) = <X_i, X_j> / (|X_i| |X_j| + shrink)``, the ``k`` best neighbours per item,
  ``r(u, j) = sum_i x_ui sim(i, j)``.
* :class:`UserKNN`: ``r(u, i) = sum_{v in N(u)} sim(u, v) x_vi / sum_{v in N(u)} |sim(u, v)|``.
* :class:`EASE`: ``B = I - P diagMat(1 / diag(P))``, ``P = (X^T X + lambda I)^-1``, ``r(u) = x_u B``.
* :class:`PureSVD`: ``X ~ U S V^T`` (``scipy.sparse.linalg.svds``), ``r(u) = x_u V V^T``.
* :class:`RP3beta`: random walk user->item->user->item, ``W = P_iu P_ui / pop(j) ** beta``.
* :class:`ImplicitALS`, :class:`ImplicitBPR`: the ``implicit`` package's engines, wrapped.
* :class:`ContentBased`: ``r(u, j) = cos(sum_i x_ui f_i, f_j)`` over (TF-IDF) item features: it scores items
  nobody has touched yet, which is what cold items need.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.linalg import lapack

from knowcast.recommend.base import Recommender, top_n

__all__ = [
    "EASE",
    "ContentBased",
    "ImplicitALS",
    "ImplicitBPR",
    "ItemKNN",
    "MostPopular",
    "PopularInSegment",
    "PureSVD",
    "RP3beta",
    "UserKNN",
    "ALGORITHMS",
    "l2_normalize_rows",
]

#: Cells of a dense block built at once when computing item-item neighbourhoods (bounds peak memory).
_BLOCK_CELLS = 20_000_000


def l2_normalize_rows(m: sp.spmatrix | np.ndarray) -> sp.csr_matrix | np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    if sp.issparse(m):
        m = sp.csr_matrix(m, dtype=np.float32)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        return sp.csr_matrix(sp.diags(1.0 / norms) @ m, dtype=np.float32)
    a = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(a, axis=1)
    norms[norms == 0] = 1.0
    return a / norms[:, None]


def _keep_top_k_rows(dense: np.ndarray, k: int) -> sp.csr_matrix:
    """Sparse copy of ``dense`` keeping the ``k`` largest positive entries of each row."""
    n_rows, n_cols = dense.shape
    k = min(k, n_cols)
    if k <= 0:
        return sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    idx = (
        np.argpartition(-dense, k - 1, axis=1)[:, :k]
        if k < n_cols
        else np.tile(np.arange(n_cols), (n_rows, 1))
    )
    vals = np.take_along_axis(dense, idx, axis=1)
    keep = vals > 0
    rows = np.repeat(np.arange(n_rows), k).reshape(n_rows, k)
    return sp.csr_matrix(
        (vals[keep].astype(np.float32), (rows[keep], idx[keep])), shape=(n_rows, n_cols), dtype=np.float32
    )


def _block_size(n_cols: int) -> int:
    return max(1, _BLOCK_CELLS // max(n_cols, 1))


def _threads(num_threads: int) -> int:
    """0 means all cores the process may use."""
    if num_threads > 0:
        return num_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------------
class MostPopular(Recommender):
    """Most popular items, optionally with exponential time decay (a feed wants what is popular *now*).

    ``fit(user_items, timestamps=None)``: ``timestamps`` is a CSR matrix with the same sparsity as
    ``user_items`` holding each interaction's time in seconds; ``now`` defaults to its maximum.
    """

    def __init__(self, half_life_days: float | None = None, now: float | None = None) -> None:
        self.half_life_days = half_life_days
        self.now = now

    def _fit(self, user_items: sp.csr_matrix, timestamps: sp.spmatrix | None = None) -> None:
        binary = user_items.copy()
        binary.data[:] = 1.0
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError(f"half_life_days must be positive, got {self.half_life_days}")
        if self.half_life_days is not None and timestamps is not None:
            ts = sp.csr_matrix(timestamps, dtype=np.float64)
            ts.sort_indices()
            if ts.shape != user_items.shape or ts.nnz != user_items.nnz:
                raise ValueError("timestamps must have the same shape and non-zeros as user_items")
            now = float(ts.data.max()) if self.now is None else float(self.now)
            age_days = np.maximum(now - ts.data, 0.0) / 86400.0
            binary.data = (0.5 ** (age_days / self.half_life_days)).astype(np.float32)
        self.item_popularity_ = np.asarray(binary.sum(axis=0)).ravel().astype(np.float32)
        self.item_users_ = user_items.T.tocsr()

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.item_popularity_, (len(user_ids), 1))

    def _item_vectors(self) -> sp.spmatrix:
        return self.item_users_


class PopularInSegment(Recommender):
    """Popularity within the user's segment (age band, interest group, onboarding choice...).

    ``fit(user_items, user_segments=None, timestamps=None)``: ``user_segments`` has one label per user
    row. Small segments are shrunk to the global popularity with weight ``shrink_users``. Users outside the
    training rows, or with an unknown label, get the global list; :meth:`recommend_for_segment` serves a
    brand-new user from the segment they chose at onboarding.
    """

    def __init__(self, shrink_users: float = 20.0, half_life_days: float | None = None) -> None:
        self.shrink_users = shrink_users
        self.half_life_days = half_life_days

    def _fit(
        self,
        user_items: sp.csr_matrix,
        user_segments: Any = None,
        timestamps: sp.spmatrix | None = None,
    ) -> None:
        n_users = user_items.shape[0]
        segs = (
            np.zeros(n_users, dtype=object)
            if user_segments is None
            else np.asarray(user_segments, dtype=object)
        )
        if segs.shape != (n_users,):
            raise ValueError(f"user_segments must have one label per user row ({n_users}), got {segs.shape}")
        weights = user_items.copy()
        weights.data[:] = 1.0
        glob = MostPopular(self.half_life_days).fit(user_items, timestamps=timestamps)
        if self.half_life_days is not None and timestamps is not None:
            # reuse the decayed weights of each interaction
            ts = sp.csr_matrix(timestamps, dtype=np.float64)
            ts.sort_indices()
            now = float(ts.data.max())
            weights.data = (0.5 ** (np.maximum(now - ts.data, 0) / 86400.0 / self.half_life_days)).astype(
                np.float32
            )
        global_share = glob.item_popularity_ / max(float(glob.item_popularity_.sum()), 1e-12)
        labels, codes = np.unique(segs.astype(str), return_inverse=True)
        onehot = sp.csr_matrix(
            (np.ones(n_users, np.float32), (codes, np.arange(n_users))), (len(labels), n_users)
        )
        seg_pop = np.asarray((onehot @ weights).todense(), dtype=np.float32)
        seg_users = np.bincount(codes, minlength=len(labels)).astype(np.float32)
        seg_share = seg_pop / np.maximum(seg_pop.sum(axis=1, keepdims=True), 1e-12)
        m = float(self.shrink_users)
        lam = (seg_users / (seg_users + m))[:, None] if m > 0 else np.ones((len(labels), 1), np.float32)
        self.segment_labels_ = labels
        self.segment_scores_ = (lam * seg_share + (1 - lam) * global_share[None, :]).astype(np.float32)
        self.global_scores_ = global_share.astype(np.float32)
        self.user_segment_codes_ = codes
        self.item_users_ = user_items.T.tocsr()

    def segment_scores(self, segment: Any) -> np.ndarray:
        """Scores of every item for one segment label (global scores if the label is unknown)."""
        self._check_fitted()
        pos = np.searchsorted(self.segment_labels_, str(segment))
        if pos < len(self.segment_labels_) and self.segment_labels_[pos] == str(segment):
            return self.segment_scores_[pos].copy()
        return self.global_scores_.copy()

    def recommend_for_segment(
        self, segment: Any, n: int = 10, seen: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` for a new user who belongs to ``segment``; ``seen`` item ids are left out."""
        s = self.segment_scores(segment)[None, :]
        if seen is not None:
            s[0, np.asarray(seen, dtype=np.int64)] = -np.inf
        ids, scores = top_n(s, n)
        return ids[0], scores[0]

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        out = np.tile(self.global_scores_, (len(user_ids), 1))
        known = user_ids < len(self.user_segment_codes_)
        out[known] = self.segment_scores_[self.user_segment_codes_[user_ids[known]]]
        return out

    def _item_vectors(self) -> sp.spmatrix:
        return self.item_users_


# ---------------------------------------------------------------------------------------------------------
class ItemKNN(Recommender):
    """Item-based nearest neighbours with shrunk cosine similarity (Sarwar et al. 2001; shrinkage as in
    Koren's neighbourhood models, so that items seen together once do not look perfectly similar)."""

    def __init__(self, k: int = 100, shrink: float = 10.0, binarize: bool = True) -> None:
        self.k = k
        self.shrink = shrink
        self.binarize = binarize

    def _fit(self, user_items: sp.csr_matrix) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        x = user_items.copy()
        if self.binarize:
            x.data[:] = 1.0
        xt = x.T.tocsr()  # items x users
        norms = np.sqrt(np.asarray(xt.multiply(xt).sum(axis=1)).ravel()).astype(np.float32)
        n_items = x.shape[1]
        blocks = []
        step = _block_size(n_items)
        for start in range(0, n_items, step):
            stop = min(start + step, n_items)
            dots = np.asarray((xt[start:stop] @ x).todense(), dtype=np.float32)
            dots /= norms[start:stop, None] * norms[None, :] + self.shrink + 1e-9
            dots[np.arange(stop - start), np.arange(start, stop)] = 0.0
            blocks.append(_keep_top_k_rows(dots, self.k))
        # rows: item i, columns: its neighbours j; score(u, j) = sum_i x_ui W[i, j]
        self.similarity_ = sp.vstack(blocks).tocsr()
        self.item_users_ = xt
        self._binarize_rows = self.binarize

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        r = rows.copy()
        if self.binarize:
            r.data[:] = 1.0
        return np.asarray((r @ self.similarity_).todense(), dtype=np.float32)

    def _item_vectors(self) -> sp.spmatrix:
        return self.item_users_


class UserKNN(Recommender):
    """User-based nearest neighbours: ``r(u,i) = sum_{v in N(u)} sim(u,v) x_vi / sum_{v in N(u)} |sim(u,v)|``
    with shrunk cosine ``sim``. Neighbours are found at query time from the row given, so a user who is new
    since training still gets neighbours from their fresh history."""

    def __init__(self, k: int = 50, shrink: float = 10.0, binarize: bool = True) -> None:
        self.k = k
        self.shrink = shrink
        self.binarize = binarize

    def _fit(self, user_items: sp.csr_matrix) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        x = user_items.copy()
        if self.binarize:
            x.data[:] = 1.0
        self.user_items_ = x
        self.user_norms_ = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel()).astype(np.float32)

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        r = rows.copy()
        if self.binarize:
            r.data[:] = 1.0
        out = np.empty((r.shape[0], self.n_items_), dtype=np.float32)
        xt = self.user_items_.T.tocsr()
        step = _block_size(self.n_users_)
        for start in range(0, r.shape[0], step):
            stop = min(start + step, r.shape[0])
            block = r[start:stop]
            norms = np.sqrt(np.asarray(block.multiply(block).sum(axis=1)).ravel())
            sims = np.asarray((block @ xt).todense(), dtype=np.float32)
            sims /= norms[:, None] * self.user_norms_[None, :] + self.shrink + 1e-9
            ids = user_ids[start:stop]
            own = ids < self.n_users_
            sims[np.flatnonzero(own), ids[own]] = 0.0  # a user is not their own neighbour
            s = _keep_top_k_rows(sims, self.k)
            denom = np.abs(np.asarray(s.sum(axis=1)).ravel())
            denom[denom == 0] = 1.0
            out[start:stop] = np.asarray((s @ self.user_items_).todense()) / denom[:, None]
        return out

    def _item_vectors(self) -> sp.spmatrix:
        return self.user_items_.T.tocsr()


class EASE(Recommender):
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): a closed-form item-item model.

    ``B = I - P / diag(P)`` with ``P = (X^T X + Lambda)^-1`` and a zero diagonal. Memory is
    ``n_items^2`` floats: fine to ~20,000 items; use ItemKNN/ALS beyond that.

    ``Lambda = lambda I`` is plain EASE. ``dropout = p > 0`` adds the emphasised-denoising term of EDLAE
    (Steck, "Autoencoders that don't overfit towards the identity", NeurIPS 2020):
    ``Lambda = lambda I + p / (1 - p) diagMat(diag(X^T X))``, a penalty that grows with an item's
    popularity, so popular items explain less of each other and the long tail gets its share.
    """

    def __init__(self, lambda_: float = 250.0, binarize: bool = True, dropout: float = 0.0) -> None:
        self.lambda_ = lambda_
        self.binarize = binarize
        self.dropout = dropout

    def _fit(self, user_items: sp.csr_matrix) -> None:
        if self.lambda_ <= 0:
            raise ValueError(f"lambda_ must be positive, got {self.lambda_}")
        x = user_items.copy()
        if self.binarize:
            x.data[:] = 1.0
        # float64 for small catalogues; float32 halves time and memory for big ones (ranking unchanged)
        big = x.shape[1] > 2000
        g = np.asarray((x.T @ x).todense(), dtype=np.float32 if big else np.float64)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        g[np.diag_indices_from(g)] *= 1.0 + self.dropout / (1.0 - self.dropout)
        g[np.diag_indices_from(g)] += self.lambda_
        # G is symmetric positive definite: Cholesky inversion is about twice as fast as a general inverse
        potrf, potri = (lapack.spotrf, lapack.spotri) if big else (lapack.dpotrf, lapack.dpotri)
        c, info = potrf(g, lower=False, overwrite_a=True)
        if info != 0:
            raise ValueError(f"X^T X + lambda I is not positive definite (LAPACK info {info}); raise lambda_")
        p, info = potri(c, lower=False, overwrite_c=True)
        p = np.triu(p) + np.triu(p, 1).T
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights_ = b.astype(np.float32)

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        r = rows.copy()
        if self.binarize:
            r.data[:] = 1.0
        return np.asarray(r @ self.weights_, dtype=np.float32)

    def _item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        return self.weights_[item_ids]


class PureSVD(Recommender):
    """Truncated SVD of the interaction matrix (Cremonesi et al. 2010), NumPy/SciPy only.

    The user is folded in from their row (``x_u V V^T``), so new users need no retraining.
    """

    def __init__(self, factors: int = 50, random_state: int | None = 0) -> None:
        self.factors = factors
        self.random_state = random_state

    def _fit(self, user_items: sp.csr_matrix) -> None:
        k = min(self.factors, min(user_items.shape) - 1)
        if k < 1:
            raise ValueError(f"matrix {user_items.shape} too small for an SVD with factors={self.factors}")
        rng = np.random.default_rng(self.random_state)
        v0 = rng.standard_normal(min(user_items.shape))
        _, s, vt = spla.svds(user_items.astype(np.float64), k=k, v0=v0)
        order = np.argsort(-s)
        self.singular_values_ = s[order].astype(np.float32)
        self.item_factors_ = vt[order].T.astype(np.float32)  # items x k

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray((rows @ self.item_factors_) @ self.item_factors_.T, dtype=np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_ * self.singular_values_[None, :]


class RP3beta(Recommender):
    """Random walks of length 3 with popularity penalisation (Paudel et al. 2017).

    ``W[i, j] = (P_iu P_ui)[i, j] / pop(j) ** beta`` where ``P`` are row-normalised transition matrices
    raised to ``alpha``; ``beta`` pushes the long tail, which a learned ranker can then trade off.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, k: int = 100) -> None:
        self.alpha = alpha
        self.beta = beta
        self.k = k

    def _fit(self, user_items: sp.csr_matrix) -> None:
        x = user_items.copy()
        x.data[:] = 1.0
        p_ui = sp.csr_matrix(sp.diags(1.0 / np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)) @ x)
        xt = x.T.tocsr()
        pop = np.asarray(xt.sum(axis=1)).ravel()
        p_iu = sp.csr_matrix(sp.diags(1.0 / np.maximum(pop, 1)) @ xt)
        if self.alpha != 1.0:
            p_ui.data **= self.alpha
            p_iu.data **= self.alpha
        penalty = (1.0 / np.power(np.maximum(pop, 1), self.beta)).astype(np.float32)
        n_items = x.shape[1]
        blocks = []
        step = _block_size(n_items)
        for start in range(0, n_items, step):
            stop = min(start + step, n_items)
            w = np.asarray((p_iu[start:stop] @ p_ui).todense(), dtype=np.float32) * penalty[None, :]
            w[np.arange(stop - start), np.arange(start, stop)] = 0.0
            blocks.append(_keep_top_k_rows(w, self.k))
        self.similarity_ = sp.vstack(blocks).tocsr()

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        r = rows.copy()
        r.data[:] = 1.0
        return np.asarray((r @ self.similarity_).todense(), dtype=np.float32)

    def _item_similarity(self, item_ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity_[item_ids].todense(), dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------
class _ImplicitMF(Recommender):
    """Shared code for the wrapped ``implicit`` matrix-factorisation engines."""

    def _threadpool(self) -> Any:
        # implicit runs its own threads; BLAS threads on top of them oversubscribe the cores
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, "blas")

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        uf = self._user_factors(user_ids, rows)
        return np.asarray(uf @ self.item_factors_.T, dtype=np.float32)

    def _item_vectors(self) -> np.ndarray:
        return self.item_factors_

    def _user_factors(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError


class ImplicitALS(_ImplicitMF):
    """Alternating least squares for implicit feedback (Hu, Koren, Volinsky 2008) via ``implicit``.

    Confidence is ``1 + alpha * x_ui``. Users beyond the training rows are solved from their row
    (implicit's ``recalculate_user``), the usual fold-in.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int | None = 0,
        num_threads: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        with self._threadpool():
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=_threads(self.num_threads),
            )
            model.fit(user_items, show_progress=False)
        self.model_ = model
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        self._yty = None  # Y^T Y of these factors, computed at the first fold-in

    def _user_factors(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        out = np.empty((len(user_ids), self.item_factors_.shape[1]), dtype=np.float32)
        known = user_ids < self.n_users_
        out[known] = self.user_factors_[user_ids[known]]
        new = np.flatnonzero(~known)
        if len(new) == 1:
            r = rows[int(new[0])] if rows.shape[0] > 1 else rows
            out[new[0]] = self.fold_in(r.indices, r.data)
        elif len(new):
            out[new] = self.model_.recalculate_user(np.zeros(len(new), dtype=np.int64), rows[new])
        return out

    def fold_in(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Factors of one user from their (item, weight) pairs: the least-squares step of ALS written out,
        ``(Y^T Y + Y_u^T (C_u - I) Y_u + reg I) x = Y_u^T c_u`` with confidence ``c = alpha * w``.

        The same solution implicit's ``recalculate_user`` returns, without building a sparse matrix and
        calling into its batch solver: for one serving request that overhead is most of the cost.
        """
        yty = getattr(self, "_yty", None)
        if yty is None:
            y = self.item_factors_.astype(np.float64)
            yty = self._yty = y.T @ y
        if len(items) == 0:
            return np.zeros(yty.shape[0], dtype=np.float32)
        yu = self.item_factors_[np.asarray(items, dtype=np.int64)].astype(np.float64)
        c = self.alpha * np.asarray(weights, dtype=np.float64)
        a = yty + (yu.T * (c - 1.0)) @ yu
        a[np.diag_indices_from(a)] += self.regularization
        return np.linalg.solve(a, yu.T @ c).astype(np.float32)


class ImplicitBPR(_ImplicitMF):
    """Bayesian personalised ranking (Rendle et al. 2009) via ``implicit``.

    ``num_threads=1`` by default: BPR's parallel SGD is lock-free (Hogwild), so only one thread gives the
    same model for the same seed. A new user is the mean of their items' factors (a cheap fold-in).
    """

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        random_state: int | None = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            random_state=self.random_state,
            num_threads=_threads(self.num_threads),
        )
        with self._threadpool():
            model.fit(user_items, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)

    def _user_factors(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        out = np.empty((len(user_ids), self.item_factors_.shape[1]), dtype=np.float32)
        known = user_ids < self.n_users_
        out[known] = self.user_factors_[user_ids[known]]
        new = np.flatnonzero(~known)
        if len(new):
            r = rows[new].copy()
            r.data[:] = 1.0
            cnt = np.maximum(np.asarray(r.sum(axis=1)).ravel(), 1)
            folded = np.asarray(r @ self.item_factors_) / cnt[:, None]
            folded[:, -1] = 1.0  # implicit keeps the item bias in the last factor
            out[new] = folded
        return out


# ---------------------------------------------------------------------------------------------------------
class ContentBased(Recommender):
    """User profile x item features: ``r(u, j) = cos(sum_i x_ui f_i, f_j)``.

    ``fit(user_items, item_features=F)`` with ``F`` an items x features matrix (tag counts, genre flags,
    text embeddings). With ``tfidf=True`` the features are TF-IDF weighted first, so that rare tags speak
    louder than "Drama". Items nobody has interacted with score as well as any other: the cold-item path.
    """

    def __init__(self, tfidf: bool = True, binarize: bool = True) -> None:
        self.tfidf = tfidf
        self.binarize = binarize

    def _fit(self, user_items: sp.csr_matrix, item_features: Any = None) -> None:
        if item_features is None:
            raise ValueError("ContentBased.fit needs item_features (items x features matrix)")
        f = item_features
        if f.shape[0] != user_items.shape[1]:
            raise ValueError(
                f"item_features has {f.shape[0]} rows, user_items has {user_items.shape[1]} items"
            )
        if self.tfidf:
            from sklearn.feature_extraction.text import TfidfTransformer

            f = TfidfTransformer(norm=None).fit_transform(sp.csr_matrix(f, dtype=np.float64))
        self.item_features_ = l2_normalize_rows(f)

    def _profiles(self, rows: sp.csr_matrix) -> sp.csr_matrix | np.ndarray:
        r = rows.copy()
        if self.binarize:
            r.data[:] = 1.0
        return l2_normalize_rows(r @ self.item_features_)

    def _score(self, user_ids: np.ndarray, rows: sp.csr_matrix) -> np.ndarray:
        prof = self._profiles(rows)
        s = prof @ self.item_features_.T
        return np.asarray(s.todense() if sp.issparse(s) else s, dtype=np.float32)

    def _item_vectors(self) -> sp.spmatrix | np.ndarray:
        return self.item_features_


#: Name -> class, for configuration files and the CLI (``knowcast train --algorithm ease``).
ALGORITHMS: dict[str, type[Recommender]] = {
    "most_popular": MostPopular,
    "popular_in_segment": PopularInSegment,
    "item_knn": ItemKNN,
    "user_knn": UserKNN,
    "ease": EASE,
    "pure_svd": PureSVD,
    "rp3beta": RP3beta,
    "als": ImplicitALS,
    "bpr": ImplicitBPR,
    "content": ContentBased,
}
