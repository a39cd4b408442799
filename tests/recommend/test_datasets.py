"""Dataset loaders and the event -> interaction conversion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knowcast.recommend.datasets import (
    from_events,
    from_frame,
    load_movielens_100k,
    load_movielens_latest_small,
)


def test_movielens_100k_loader():
    try:
        d = load_movielens_100k(min_rating=3.0)
    except FileNotFoundError:
        pytest.skip("shared/data/movielens/ml-100k not available")
    assert d.matrix.shape == (943, 1682) and d.nnz == 82520  # ratings >= 3
    assert d.item_features.shape == (1682, 19) and d.feature_names[1] == "Action"
    assert d.timestamps.nnz == d.nnz and d.timestamps.data.min() >= 874724710
    assert d.item_titles[0] == "Toy Story (1995)" and len(set(d.user_segments)) == 8


def test_movielens_latest_small_loader():
    try:
        d = load_movielens_latest_small()
    except FileNotFoundError:
        pytest.skip("shared/data/movielens/ml-latest-small not available")
    assert d.n_users == 609 and d.item_features.shape[1] == 19 and d.nnz > 80_000


def test_from_frame_merges_duplicates_and_names_bad_rows():
    df = pd.DataFrame(
        {"user_id": ["a", "a", "b"], "item_id": ["x", "x", "y"], "w": [1.0, 2.0, 1.0], "ts": [5, 9, 7]}
    )
    d = from_frame(df, weight_col="w", ts_col="ts")
    assert d.matrix.toarray().tolist() == [[3.0, 0.0], [0.0, 1.0]]
    assert d.timestamps.toarray()[0, 0] == 9
    bad = df.assign(w=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="row 1: w=-1.0"):
        from_frame(bad, weight_col="w")
    with pytest.raises(ValueError, match="no column 'nope'"):
        from_frame(df, user_col="nope")


def test_from_events_uses_watch_ratio_and_items():
    events = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u2", "u2"],
            "item_id": ["v1", "v2", "v1", "c1", "v2"],
            "type": ["view", "view", "view", "purchase", "impression"],
            "ts": [1_000, 2_000, 3_000, 4_000, 5_000],
            "watch_ratio": [0.9, 0.1, 0.5, np.nan, np.nan],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["v1", "v2", "c1"],
            "kind": ["short_video", "short_video", "course"],
            "tags": [["math"], ["math", "exam"], ["math"]],
            "creator_id": ["k", "k", "k"],
            "price": [0, 0, 99],
        }
    )
    d = from_events(events, items=items, min_watch_ratio=0.3)
    assert d.item_ids.tolist() == ["v1", "v2", "c1"]
    # u1's 10% view of v2 is not interest; the impression is ignored; a purchase weighs 5
    assert d.matrix.toarray().tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 5.0]]
    assert d.timestamps.toarray()[1, 2] == pytest.approx(4.0)  # seconds
    assert "math" in d.feature_names and "kind=course" in d.feature_names
