"""Conformance test every recommender passes, in the spirit of scikit-learn's ``check_estimator``.

Why: the harness, the hybrid, the ranking policy and the serving layer rely on the interface contract
(shapes like ``implicit``, filtering, determinism). A new algorithm proves it keeps the contract by passing
:func:`check_recommender`; the test suite runs it on every algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from knowcast.recommend.base import NotFittedError, Recommender, clone

__all__ = ["SyntheticData", "check_recommender", "synthetic_interactions"]


@dataclass
class SyntheticData:
    """A small clustered interaction set with every kind of side data an algorithm may ask for."""

    matrix: sp.csr_matrix
    timestamps: sp.csr_matrix
    item_features: sp.csr_matrix
    user_segments: np.ndarray

    def fit_params(self) -> dict[str, Any]:
        return {
            "timestamps": self.timestamps,
            "item_features": self.item_features,
            "user_segments": self.user_segments,
        }


def synthetic_interactions(
    n_users: int = 120, n_items: int = 60, n_groups: int = 4, seed: int = 0
) -> SyntheticData:
    """Users in ``n_groups`` taste groups, each liking mostly its own block of items (so there is signal
    for every algorithm to find), with timestamps, group-tag item features and segment labels."""
    rng = np.random.default_rng(seed)
    user_group = rng.integers(0, n_groups, n_users)
    item_group = np.arange(n_items) % n_groups
    p = np.where(user_group[:, None] == item_group[None, :], 0.35, 0.04)
    dense = (rng.random((n_users, n_items)) < p).astype(np.float32)
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # nobody is empty
    m = sp.csr_matrix(dense)
    ts = m.copy()
    ts.data = (1_700_000_000 + rng.integers(0, 90 * 86400, m.nnz)).astype(np.float64)
    feats = np.zeros((n_items, n_groups + 2), dtype=np.float32)
    feats[np.arange(n_items), item_group] = 1.0
    feats[:, n_groups:] = rng.random((n_items, 2)) < 0.5
    return SyntheticData(m, sp.csr_matrix(ts, dtype=np.float64), sp.csr_matrix(feats), user_group.astype(str))


def _fail(name: str, check: str, msg: str) -> AssertionError:
    return AssertionError(f"{name} fails check {check!r}: {msg}")


def check_recommender(
    estimator: Recommender,
    fit_params: dict[str, Any] | Callable[[SyntheticData], dict[str, Any]] | None = None,
    data: SyntheticData | None = None,
) -> list[str]:
    """Run the conformance checks; raise ``AssertionError`` naming the first failed one.

    ``fit_params``: extra ``fit`` arguments (a dict, or a callable given the synthetic data); by default
    every side input the estimator's ``fit`` accepts is passed. Returns the names of the checks passed.
    """
    name = type(estimator).__name__
    d = data or synthetic_interactions()
    if fit_params is None:
        from knowcast.recommend.base import fit_with

        def do_fit(est: Recommender, m: sp.spmatrix) -> Any:
            return fit_with(est, m, **d.fit_params())

    else:
        params = fit_params(d) if callable(fit_params) else dict(fit_params)

        def do_fit(est: Recommender, m: sp.spmatrix) -> Any:
            return est.fit(m, **params)

    passed: list[str] = []
    n_users, n_items = d.matrix.shape
    users = np.array([0, 3, 7, 11, 19])

    # parameters: stored as given, clone keeps them
    params0 = estimator.get_params()
    twin = clone(estimator)
    if sorted(twin.get_params()) != sorted(params0):
        raise _fail(name, "clone", "clone() changed the parameter names")
    passed.append("get_params/clone")

    # nothing learned before fit
    fresh = clone(estimator)
    for call in (
        lambda: fresh.recommend(users, d.matrix[users], n=5),
        lambda: fresh.similar_items(np.array([0, 1]), n=5),
    ):
        try:
            call()
        except NotFittedError:
            continue
        raise _fail(name, "not_fitted", "used before fit without raising NotFittedError")
    learned = [k for k in vars(fresh) if k.endswith("_") and not k.startswith("_") and k not in params0]
    if learned:
        raise _fail(name, "not_fitted", f"has learned attributes before fit: {learned}")
    passed.append("not_fitted")

    # fit returns self and does not touch the input
    before = d.matrix.copy()
    est = clone(estimator)
    out = do_fit(est, d.matrix)
    if out is not est:
        raise _fail(name, "fit_returns_self", f"fit returned {type(out).__name__}, not self")
    if (before != d.matrix).nnz or not np.array_equal(before.indptr, d.matrix.indptr):
        raise _fail(name, "input_unchanged", "fit modified the user_items matrix it was given")
    passed.append("fit_returns_self")

    # output shapes like implicit
    ids, scores = est.recommend(users, d.matrix[users], n=7)
    if ids.shape != (len(users), 7) or scores.shape != (len(users), 7):
        raise _fail(
            name, "shapes", f"batch recommend gave {ids.shape} / {scores.shape}, want {(len(users), 7)}"
        )
    if not np.issubdtype(ids.dtype, np.integer) or not np.issubdtype(scores.dtype, np.floating):
        raise _fail(name, "dtypes", f"ids {ids.dtype} / scores {scores.dtype}")
    one_ids, one_scores = est.recommend(int(users[1]), d.matrix[users[1]], n=7)
    if one_ids.shape != (7,) or one_scores.shape != (7,):
        raise _fail(name, "shapes", f"single-user recommend gave {one_ids.shape}, want (7,)")
    if not np.array_equal(one_ids, ids[1]):
        raise _fail(name, "batch_equals_single", f"user {users[1]}: single {one_ids} != batch {ids[1]}")
    if ((ids < -1) | (ids >= n_items)).any():
        raise _fail(name, "id_range", f"item ids outside [-1, {n_items}): {ids.min()}..{ids.max()}")
    fin = np.where(np.isfinite(scores), scores, -np.inf)
    if (np.diff(fin, axis=1) > 1e-6).any():
        raise _fail(name, "sorted", "scores are not in descending order")
    passed.append("shapes")

    # filters
    for row, u in enumerate(users):
        seen = set(d.matrix[u].indices.tolist())
        got = set(ids[row][ids[row] >= 0].tolist())
        if seen & got:
            raise _fail(name, "filter_already_seen", f"user {u} got already-seen items {sorted(seen & got)}")
    blocked = ids[:, 0][ids[:, 0] >= 0]
    ids_f, _ = est.recommend(users, d.matrix[users], n=7, filter_items=blocked)
    if np.isin(ids_f, blocked).any():
        raise _fail(name, "filter_items", "a filtered item was recommended")
    allowed = np.arange(0, n_items, 3)
    ids_a, _ = est.recommend(users, d.matrix[users], n=7, items=allowed)
    if not np.isin(ids_a[ids_a >= 0], allowed).all():
        raise _fail(name, "items", "an item outside `items` was recommended")
    ids_all, _ = est.recommend(users, d.matrix[users], n=n_items + 5)
    if ids_all.shape != (len(users), n_items + 5) or (ids_all[:, n_items:] != -1).any():
        raise _fail(name, "padding", "n beyond the catalogue must pad with -1")
    passed.append("filters")

    # determinism with a seed
    est2 = do_fit(clone(estimator), d.matrix)
    ids2, scores2 = est2.recommend(users, d.matrix[users], n=7)
    if not (np.array_equal(ids, ids2) and np.allclose(scores, scores2, equal_nan=True)):
        raise _fail(name, "deterministic", "two fits with the same parameters gave different lists")
    passed.append("deterministic")

    # a user that was not in training (a new row) is served from their history
    new_row = sp.csr_matrix(d.matrix[users[0]])
    new_ids, _ = est.recommend(n_users + 3, new_row, n=5)
    if new_ids.shape != (5,) or np.isin(new_ids, new_row.indices).any():
        raise _fail(name, "new_user", f"new-user recommend gave {new_ids}")
    passed.append("new_user")

    # similar items
    s_ids, s_scores = est.similar_items(np.array([0, 5, 9]), n=4)
    if s_ids.shape != (3, 4) or s_scores.shape != (3, 4):
        raise _fail(name, "similar_items", f"shape {s_ids.shape}, want (3, 4)")
    if (s_ids == np.array([0, 5, 9])[:, None]).any():
        raise _fail(name, "similar_items", "an item is listed as similar to itself")
    one, _ = est.similar_items(5, n=4)
    if one.shape != (4,):
        raise _fail(name, "similar_items", f"scalar item gave shape {one.shape}")
    passed.append("similar_items")

    # bad input gets a clear error
    for bad, exc in ((np.ones(5), TypeError), (sp.csr_matrix(-d.matrix), ValueError)):
        try:
            clone(estimator).fit(bad)
        except exc:
            continue
        except Exception as err:  # noqa: BLE001 - report which error came instead
            raise _fail(name, "bad_input", f"{type(err).__name__} instead of {exc.__name__}") from err
        raise _fail(name, "bad_input", f"accepted bad input without {exc.__name__}")
    passed.append("bad_input")
    return passed
