"""Precompute the dashboard's cached results after an import (the post-import hook's second half).

``services.rollups.refresh`` keeps the day rollups current; the few page numbers that still need a whole-log
computation (attribution models, segment profiles, retention, top creators' audience, creator pages) are
cached per data version by ``web.cache``. Computing them here, right after the import, moves that one-off
cost out of the first page view: every page then answers from the rollups or the cache.

    from knowcast.services.rollups import refresh
    from knowcast.web.warm import warm
    refresh(engine); warm(engine)
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, select


def prune(engine: Engine) -> int:
    """Delete cached results of older data versions from the ``kv`` table (entries of pages nobody opened
    since, e.g. one-off funnel specs, would otherwise stay); returns how many were removed."""
    from sqlalchemy import delete

    from knowcast.services.rollups import ensure_fresh
    from knowcast.store.models import KeyValue

    token = ensure_fresh(engine, 0)
    removed = 0
    with engine.begin() as c:
        rows = c.execute(select(KeyValue.key, KeyValue.value).where(KeyValue.key.like("web.cache.%"))).all()
        stale = [k for k, v in rows if not (isinstance(v, dict) and v.get("token") == token)]
        for i in range(0, len(stale), 500):
            removed += c.execute(delete(KeyValue).where(KeyValue.key.in_(stale[i : i + 500]))).rowcount or 0
    return removed


def warm(engine: Engine, creators: bool = False, lookbacks: tuple[int, ...] = (7,)) -> dict[str, float]:
    """Fill the result caches for the current data version; returns seconds per part. ``creators``: also
    every creator page at UTC (one read of each creator's events; off by default)."""
    from knowcast.services.rollups import refresh
    from knowcast.web import pages, pages_ops
    from knowcast.web import queries as q
    from knowcast.web.cache import cached

    out: dict[str, float] = {}

    def part(name: str, fn: Any) -> None:
        t = time.perf_counter()
        try:
            fn()
        except Exception:  # noqa: BLE001,S110 (a page falls back to computing it on demand)
            pass
        out[name] = time.perf_counter() - t

    part("rollups", lambda: refresh(engine))
    part("prune", lambda: prune(engine))
    for lb in lookbacks:
        part(
            f"attribution:{lb}",
            lambda lb=lb: cached(
                engine, "attribution", str(lb), lambda: pages_ops.attribution_table(engine, lb)
            ),
        )
    for period in ("day", "week"):
        part(f"retention:{period}", lambda period=period: pages_ops.retention_frames(engine, period))
    _, hi = q.data_bounds(engine)
    if hi is not None:
        end = (hi // q.DAY_MS + 1) * q.DAY_MS
        part(
            "top_creators",
            lambda: cached(
                engine, "top_creators", f"{end}:0", lambda: q.top_creators(engine, end - 7 * q.DAY_MS, end)
            ),
        )
    seg_ids = [s["id"] for s in q.segments(engine)] or list(q.TIER_TEXT)
    for sid in seg_ids:
        part(f"segment:{sid}", lambda sid=sid: pages.segment_data(engine, sid))
    if creators:
        for c in q.creators(engine):
            part(f"creator:{c['id']}", lambda cid=c["id"]: pages.creator_data(engine, cid, 0))
    return out
