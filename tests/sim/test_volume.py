"""iter_event_frames: exact sizes, unique ids across chunks, sorted stream, same entities and value rules."""

import numpy as np
import pandas as pd
import pytest

from knowcast.domain import EVENT_COLUMNS, EVENT_TYPES, MONEY_EVENTS
from knowcast.sim import iter_event_frames
from knowcast.sim.catalog import build_catalog


def test_chunks_ids_and_order(small_cfg):
    frames = list(iter_event_frames(small_cfg, n_events=25_000, chunk_size=7_000))
    assert [len(f) for f in frames] == [7_000, 7_000, 7_000, 4_000]
    e = pd.concat(frames, ignore_index=True)
    assert tuple(e.columns) == EVENT_COLUMNS
    assert e["event_id"].is_unique
    assert e["ts"].dtype == np.int64 and e["ts"].is_monotonic_increasing
    assert e["ts"].min() >= small_cfg.start_ms and e["ts"].max() < small_cfg.end_ms
    cat = build_catalog(small_cfg)
    assert e["user_id"].isin(cat.users["user_id"]).all()
    assert e["item_id"].dropna().isin(cat.items["item_id"]).all()
    assert set(e["type"]) <= EVENT_TYPES
    money = e["type"].isin(MONEY_EVENTS)
    assert (e.loc[money, "amount"] > 0).all() and e.loc[~money, "amount"].isna().all()
    assert e.loc[e["type"] == "view", "watch_ratio"].between(0, 1.5).all()
    assert {"impression", "view", "click", "add_to_cart", "live_join", "comment"} <= set(e["type"])
    # funnel order per user and item: the first purchase comes after the first cart and click
    first = e.groupby(["user_id", "item_id", "type"])["ts"].min().unstack()
    if "purchase" in first:
        buys = first["purchase"].dropna()
        assert (first.loc[buys.index, "add_to_cart"] <= buys).all()


def test_deterministic_and_distinct_from_platform_ids(small_cfg, small_platform):
    a = pd.concat(iter_event_frames(small_cfg, n_events=5_000, chunk_size=2_000))
    b = pd.concat(iter_event_frames(small_cfg, n_events=5_000, chunk_size=2_000))
    pd.testing.assert_frame_equal(a, b)
    assert not a["event_id"].isin(small_platform.events["event_id"]).any()


def test_bad_sizes(small_cfg):
    with pytest.raises(ValueError, match="n_events"):
        next(iter_event_frames(small_cfg, n_events=0))
    with pytest.raises(ValueError, match="chunk_size"):
        next(iter_event_frames(small_cfg, n_events=10, chunk_size=-1))
