"""Algorithms compute the formulas their docstrings promise, on matrices small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from knowcast.recommend import algorithms as A
from knowcast.recommend.base import NotFittedError, top_n
from knowcast.recommend.checks import synthetic_interactions

X = sp.csr_matrix(
    np.array(
        [
            [1, 1, 0, 0, 1],
            [1, 0, 1, 0, 0],
            [0, 1, 1, 1, 0],
            [1, 1, 0, 1, 0],
            [0, 0, 1, 1, 1],
        ],
        dtype=np.float32,
    )
)


def test_user_knn_is_the_weighted_average_of_neighbours():
    m = A.UserKNN(k=2, shrink=0.0).fit(X)
    d = X.toarray()
    norms = np.linalg.norm(d, axis=1)
    sims = d @ d.T / np.outer(norms, norms)
    u = 0
    s = sims[u].copy()
    s[u] = 0
    nbrs = np.argsort(-s, kind="stable")[:2]
    expected = (s[nbrs] @ d[nbrs]) / np.abs(s[nbrs]).sum()
    np.testing.assert_allclose(m.score([u], X[u])[0], expected, rtol=1e-5)


def test_item_knn_uses_shrunk_cosine():
    m = A.ItemKNN(k=4, shrink=2.0).fit(X)
    d = X.toarray()
    norms = np.linalg.norm(d, axis=0)
    sim = d.T @ d / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(sim, 0)
    np.testing.assert_allclose(m.similarity_.toarray(), sim, rtol=1e-5)
    np.testing.assert_allclose(m.score([1], X[1])[0], d[1] @ sim, rtol=1e-5)


def test_ease_matches_the_closed_form():
    lam = 3.0
    m = A.EASE(lambda_=lam).fit(X)
    g = X.toarray().T @ X.toarray() + lam * np.eye(5)
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0)
    np.testing.assert_allclose(m.weights_, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="lambda_"):
        A.EASE(lambda_=0).fit(X)


def test_pure_svd_full_rank_reconstructs_rows():
    m = A.PureSVD(factors=4).fit(X)
    assert m.item_factors_.shape == (5, 4)
    # a projection: applying it twice changes nothing
    s1 = m.score([0], X[0])
    s2 = (s1 @ m.item_factors_) @ m.item_factors_.T
    np.testing.assert_allclose(s1, s2, atol=1e-5)


def test_most_popular_time_decay_prefers_recent_items():
    m = sp.csr_matrix(np.array([[1, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32))
    day = 86400.0
    ts = sp.csr_matrix(np.array([[day, 100 * day], [2 * day, 0], [3 * day, 0], [0, 100 * day]]))
    plain = A.MostPopular().fit(m)
    assert plain.recommend(0, sp.csr_matrix((1, 2)), n=1)[0][0] == 0  # 3 users vs 2
    decayed = A.MostPopular(half_life_days=7).fit(m, timestamps=ts)
    assert decayed.recommend(0, sp.csr_matrix((1, 2)), n=1)[0][0] == 1  # recent beats old


def test_popular_in_segment_differs_by_segment():
    d = synthetic_interactions(n_users=200)
    m = A.PopularInSegment(shrink_users=0).fit(d.matrix, user_segments=d.user_segments)
    tops = {seg: m.recommend_for_segment(seg, n=5)[0] for seg in np.unique(d.user_segments)}
    item_group = np.arange(d.matrix.shape[1]) % 4
    for seg, ids in tops.items():
        assert (item_group[ids] == int(seg)).mean() >= 0.8  # group g's users like block g
    unknown, _ = m.recommend_for_segment("nobody", n=5)
    glob = A.MostPopular().fit(d.matrix).recommend(0, sp.csr_matrix((1, 60)), n=5)[0]
    assert set(unknown) == set(glob)


def test_content_based_reaches_cold_items():
    # item 4 has never been seen but shares user 0's tag
    m = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 1, 1, 0, 0]], dtype=np.float32))
    feats = sp.csr_matrix(np.array([[1, 0], [0, 1], [0, 1], [0, 1], [1, 0]], dtype=np.float32))
    cb = A.ContentBased().fit(m, item_features=feats)
    ids, scores = cb.recommend(0, m[0], n=1)
    assert ids[0] == 4 and scores[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="item_features"):
        A.ContentBased().fit(m)


def test_als_folds_in_a_new_user():
    d = synthetic_interactions()
    als = A.ImplicitALS(factors=8, iterations=10).fit(d.matrix)
    row = d.matrix[5]
    known, _ = als.recommend(5, row, n=5)
    new, _ = als.recommend(d.matrix.shape[0] + 1, row, n=5)
    assert len(set(known) & set(new)) >= 3


def test_not_fitted_and_bad_input_errors():
    with pytest.raises(NotFittedError, match="fit"):
        A.EASE().recommend(0, X[0])
    with pytest.raises(TypeError, match="user_items"):
        A.EASE().fit([[1, 0]])
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="row 1"):
        A.ItemKNN().fit(bad)
    m = A.ItemKNN().fit(X)
    with pytest.raises(ValueError, match="item columns"):
        m.recommend(0, sp.csr_matrix((1, 3)))


def test_top_n_pads_and_orders():
    ids, vals = top_n(np.array([[0.1, 0.5, -np.inf, 0.3]], dtype=np.float32), 5)
    assert ids.tolist() == [[1, 3, 0, -1, -1]]
    assert np.isneginf(vals[0, 3:]).all()


def test_recommend_is_fast_at_100k_items():
    """Serving budget: one user at 100,000 items well under 20 ms (vectorised scoring + argpartition)."""
    import time

    rng = np.random.default_rng(0)
    n_items, f = 100_000, 64
    als = A.ImplicitALS(factors=f)
    # a fitted state without training: the cost measured is scoring and selection only
    als.n_users_, als.n_items_, als.fitted_ = 10, n_items, True
    als.user_factors_ = rng.standard_normal((10, f)).astype(np.float32)
    als.item_factors_ = rng.standard_normal((n_items, f)).astype(np.float32)
    row = sp.csr_matrix(
        (np.ones(50), (np.zeros(50, int), rng.choice(n_items, 50, replace=False))), shape=(1, n_items)
    )
    ours, peer = [], []
    for _ in range(40):
        t = time.perf_counter()
        ids, _ = als.recommend(3, row, n=10)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        s = als.item_factors_ @ als.user_factors_[3]
        s[row.indices] = -np.inf
        np.argsort(-s)[:10]
        peer.append(time.perf_counter() - t)
    assert not np.isin(ids, row.indices).any()
    # target p99 < 20 ms on an idle machine; these 2 cores are shared, so compare with a naive peer timed
    # in the same loop (full argsort) and keep a generous absolute bound
    assert np.median(ours) < np.median(peer)
    assert np.median(ours) < 0.05


def test_ease_dropout_is_edlae_closed_form():
    """EDLAE: the diagonal penalty grows with each item's own count, ``lambda + p / (1 - p) * G_ii``."""
    lam, p = 3.0, 0.25
    m = A.EASE(lambda_=lam, dropout=p).fit(X)
    d = X.toarray()
    g = d.T @ d
    g = g + np.diag(lam + p / (1 - p) * np.diag(g))
    inv = np.linalg.inv(g)
    b = -inv / np.diag(inv)[None, :]
    np.fill_diagonal(b, 0)
    np.testing.assert_allclose(m.weights_, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="dropout"):
        A.EASE(dropout=1.0).fit(X)


def test_als_fold_in_matches_implicit_recalculate_user():
    x = synthetic_interactions(n_users=60, n_items=40, seed=3).matrix
    m = A.ImplicitALS(factors=8, iterations=5, alpha=2.0, regularization=0.1, num_threads=1).fit(x)
    row = sp.csr_matrix(([1.0, 0.5, 2.0], ([0, 0, 0], [3, 10, 22])), shape=(1, 40), dtype=np.float32)
    ref = m.model_.recalculate_user(0, row)
    np.testing.assert_allclose(m.fold_in(row.indices, row.data), np.ravel(ref), rtol=2e-3, atol=2e-4)
    np.testing.assert_array_equal(m.fold_in(np.array([], int), np.array([])), np.zeros(8, np.float32))
