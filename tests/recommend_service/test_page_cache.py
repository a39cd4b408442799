"""The cache of served pages: keys that never go stale, memory LRU with TTL, Redis shared and failing open."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from knowcast.ingest.service import import_records
from knowcast.recommend import service as svc
from knowcast.recommend.cache import (
    PREFIX,
    MemoryPageCache,
    RedisPageCache,
    fingerprint,
    reset_page_cache,
    set_page_cache,
)
from tests.live_server.conftest import redis_reason

from .conftest import active_users

REDIS_URL = "redis://127.0.0.1:6379/0"
PAGE = {"user_id": "u1", "items": [{"item_id": "i1", "score": 0.5, "reason": "因为你看过"}]}


class CountingCache(MemoryPageCache):
    def __init__(self) -> None:
        super().__init__(ttl=60)
        self.hits = self.misses = 0

    def get(self, key: str) -> dict[str, Any] | None:
        page = super().get(key)
        self.hits += page is not None
        self.misses += page is None
        return page


@pytest.fixture
def counting() -> Iterator[CountingCache]:
    cache = CountingCache()
    set_page_cache(cache)
    yield cache
    reset_page_cache()


def test_fingerprint_is_stable_and_sensitive() -> None:
    a = fingerprint("v1", "u1", [("view", "i1", 1, 0.5)])
    assert a == fingerprint("v1", "u1", [("view", "i1", 1, 0.5)])
    assert a != fingerprint("v1", "u1", [("view", "i1", 2, 0.5)])
    assert len(a) == 24


def test_memory_cache_copies_expires_and_evicts() -> None:
    c = MemoryPageCache(max_entries=2, ttl=0.2)
    c.set("a", PAGE)
    got = c.get("a")
    assert got == PAGE
    got["items"].clear()  # a caller changing its copy changes nothing cached
    assert c.get("a") == PAGE
    c.set("b", PAGE)
    c.set("c", PAGE)  # over the bound: the oldest set goes first
    assert c.get("a") is None and c.get("b") == PAGE and c.get("c") == PAGE and len(c) == 2
    time.sleep(0.25)
    assert c.get("b") is None and c.get("c") is None
    with pytest.raises(ValueError):
        MemoryPageCache(ttl=0)


def test_memory_cache_drops_expired_pages_when_it_sets_new_ones() -> None:
    c = MemoryPageCache(max_entries=1000, ttl=0.2)
    for i in range(50):
        c.set(f"old{i}", PAGE)
    time.sleep(0.15)
    c.set("old0", PAGE)  # a re-set page moves to the back with a new expiry
    c.set("mid", PAGE)
    time.sleep(0.1)  # the first 49 have expired, old0 (re-set) and mid have not
    c.set("new", PAGE)
    assert len(c) == 3 and c.get("old0") == PAGE and c.get("mid") == PAGE and c.get("old1") is None


@pytest.mark.skipif(redis_reason(REDIS_URL) is not None, reason=str(redis_reason(REDIS_URL)))
def test_redis_cache_round_trip_with_ttl() -> None:
    import redis

    c = RedisPageCache(REDIS_URL, ttl=30)
    key = fingerprint("test", time.time_ns())
    assert c.get(key) is None
    c.set(key, PAGE)
    assert c.get(key) == PAGE
    ttl = redis.Redis.from_url(REDIS_URL).ttl(PREFIX + key)
    assert 0 < ttl <= 30


def test_redis_down_fails_open_quickly(caplog: pytest.LogCaptureFixture) -> None:
    from tests.live_server.conftest import free_port

    c = RedisPageCache(f"redis://127.0.0.1:{free_port()}/0", ttl=30)
    t0 = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="knowcast.recommend.cache"):
        assert c.get("k") is None
        c.set("k", PAGE)  # no error
        assert c.get("k") is None
    assert time.perf_counter() - t0 < 2
    assert sum("Redis unavailable" in r.message for r in caplog.records) == 1  # one line per outage


def test_service_serves_a_repeat_from_cache_and_a_new_event_misses(store, counting: CountingCache) -> None:  # type: ignore[no-untyped-def]
    svc.train(store.engine, "ease", {"lambda_": 100}, next_purchase=False)
    user = active_users(store, 1)[0]
    first = svc.recommend(store.engine, user, 5, "feed")
    assert counting.misses == 1 and counting.hits == 0
    again = svc.recommend(store.engine, user, 5, "feed")
    assert again == first and counting.hits == 1
    # another n, surface or user is another page
    svc.recommend(store.engine, user, 6, "feed")
    svc.recommend(store.engine, user, 5, "live")
    assert counting.misses == 3
    # watching the top item changes the user's events: a new key, and the item is gone at once
    top = first["items"][0]["item_id"]
    import_records(
        store.engine,
        "events",
        [
            {
                "event_id": f"cache-{time.time_ns()}",
                "type": "view",
                "user_id": user,
                "item_id": top,
                "ts": int(time.time() * 1000) - 1000,
                "watch_ratio": 1.0,
            }
        ],  # fmt: skip
    )
    after = svc.recommend(store.engine, user, 5, "feed")
    assert counting.misses == 4
    assert top not in [it["item_id"] for it in after["items"]]
    # a new model version is a new key too
    svc.train(store.engine, "item_knn", next_purchase=False)
    svc.invalidate()  # this process picks the new version up now (others within CHECK_SECONDS)
    newer = svc.recommend(store.engine, user, 5, "feed")
    assert newer["model"]["version"] == 2 and counting.misses == 5


def test_caching_off_gives_the_same_pages(store) -> None:  # type: ignore[no-untyped-def]
    svc.train(store.engine, "ease", {"lambda_": 100}, next_purchase=False)
    user = active_users(store, 1)[0]
    set_page_cache(MemoryPageCache())
    try:
        cached = [svc.recommend(store.engine, user, 5, s) for s in ("feed", "feed", "next_course")]
        set_page_cache(None)
        plain = [svc.recommend(store.engine, user, 5, s) for s in ("feed", "feed", "next_course")]
    finally:
        reset_page_cache()
    assert cached == plain
