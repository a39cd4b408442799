"""Is a profile useful? Predict the tags of each user's next items from the profile built on earlier events.

Protocol (per user, in time order): the last ``n_next`` events on known items are the future, everything
before is history. The interest profile built on the history names its top-``k`` tags; a future event is a
hit when its item carries at least one of them. The hit rate is averaged over all future events. The
baseline gives every user the ``k`` tags most common in all users' history (global popularity), measured on
the same future events. Users with fewer than ``min_history`` history events are left out of both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from knowcast.profiles.interest import InterestProfiler, ItemFeatures, behaviour_strength, to_epoch_ms

__all__ = ["split_last_n", "next_tag_hit_rate"]


def split_last_n(
    events: pd.DataFrame, n_next: int, min_history: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, future): each user's last ``n_next`` events are the future."""
    ev = events.assign(_ts=to_epoch_ms(events["ts"].reset_index(drop=True)))
    ev = ev.sort_values(["user_id", "_ts"], kind="stable")
    rank_from_end = ev.groupby("user_id", sort=False).cumcount(ascending=False)
    size = ev.groupby("user_id", sort=False)["_ts"].transform("size")
    ok = size >= n_next + min_history
    future = ev[ok & (rank_from_end < n_next)].drop(columns="_ts")
    history = ev[ok & (rank_from_end >= n_next)].drop(columns="_ts")
    return history, future


def _hits(
    future: pd.DataFrame, top: Mapping[Any, Sequence[str]], item_tags: Mapping[Any, Sequence[str]]
) -> float:
    hits = [
        bool(set(top.get(u, ())) & set(item_tags.get(i, ())))
        for u, i in zip(future["user_id"], future["item_id"], strict=True)
    ]
    return float(np.mean(hits)) if hits else float("nan")


def next_tag_hit_rate(
    events: pd.DataFrame,
    items: ItemFeatures,
    item_tags: Mapping[Any, Sequence[str]],
    k: int = 3,
    n_next: int = 5,
    min_history: int = 5,
    **profiler_params: Any,
) -> dict[str, float]:
    """Hit rate@k of the interest profile and of global tag popularity on each user's next items."""
    known = events["item_id"].isin(items.index) & ~np.isnan(behaviour_strength(events))
    history, future = split_last_n(events[known], n_next, min_history)
    if history.empty or future.empty:
        raise ValueError("not enough events per user to split history and future")
    prof = InterestProfiler(items, **profiler_params).fit(history)
    pred = prof.predict_top(k)
    top = {
        u: [t for t in row if t is not None]
        for u, row in zip(pred.index, pred.to_numpy().tolist(), strict=True)
    }
    counts = Counter(t for i in history["item_id"] for t in item_tags.get(i, ()))
    popular = [t for t, _ in counts.most_common(k)]
    pop = dict.fromkeys(future["user_id"].unique(), popular)
    return {
        "profile": _hits(future, top, item_tags),
        "popularity": _hits(future, pop, item_tags),
        "users": float(future["user_id"].nunique()),
        "history_events": float(len(history)),
        "future_events": float(len(future)),
    }
