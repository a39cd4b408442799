"""The dashboard re-warms itself after API writes: once per burst, after the writes pause."""

from __future__ import annotations

import time

import pytest

from knowcast.ingest.service import import_records
from knowcast.store import Store
from knowcast.web.rewarm import Rewarmer


def _post(store: Store, k: int) -> None:
    import_records(
        store.engine,
        "events",
        [
            {
                "event_id": f"rw-{k}-{time.time_ns()}",
                "type": "view",
                "user_id": "u000001",
                "item_id": "i00001",
                "ts": int(time.time() * 1000) - 5000,
            }
        ],  # fmt: skip
    )


def test_warms_once_after_a_burst_pauses(store: Store) -> None:
    calls: list[str] = []
    rw = Rewarmer(store.engine, interval=1.0, work=lambda e: calls.append("warm"))
    assert rw.step() is False  # first look: remembers the current version
    _post(store, 1)
    assert rw.step() is False  # the log moved since the last look: writes may still be coming
    _post(store, 2)
    assert rw.step() is False
    assert rw.step() is True  # still since the last look: warm now
    assert calls == ["warm"] and rw.runs == 1
    assert rw.step() is False  # nothing new: no second warm
    _post(store, 3)
    assert rw.step() is False and rw.step() is True and calls == ["warm", "warm"]


def test_real_warm_fills_the_attribution_cache(store: Store) -> None:
    from knowcast.web import pages_ops
    from knowcast.web.cache import cached

    rw = Rewarmer(store.engine, interval=1.0)
    rw.step()
    _post(store, 4)
    rw.step()
    assert rw.step() is True
    computed: list[int] = []
    # the page's cached value for the new data version is already there: compute is not called
    cached(
        store.engine,
        "attribution",
        "7",
        lambda: computed.append(1) or pages_ops.attribution_table(store.engine, 7),
    )
    assert computed == []


def test_thread_runs_and_stops(store: Store) -> None:
    calls: list[float] = []
    rw = Rewarmer(store.engine, interval=0.05, work=lambda e: calls.append(time.monotonic())).start()
    try:
        time.sleep(0.2)
        _post(store, 5)
        t_end = time.monotonic() + 10
        while not calls and time.monotonic() < t_end:
            time.sleep(0.05)
    finally:
        rw.stop()
    assert len(calls) == 1
    with pytest.raises(ValueError):
        Rewarmer(store.engine, interval=0)
