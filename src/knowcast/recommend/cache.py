"""A cache of served recommendation pages: in process by default, in Redis when ``KNOWCAST_REDIS_URL`` is set.

Keys say everything a page depends on (model version, this moment's live rooms and blocked list, the user's
current events, surface, n), so a key never needs invalidating: a new event, a new model version or a room
going live makes a new key, and old ones expire. In Redis the cache is shared by every worker and machine, so
a user who reloads a page on another worker gets the page already ranked. Redis failures fail open: the page
is computed as if the cache were empty, and the cache retries Redis a few seconds later.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

PREFIX = "kc:rec:"
DEFAULT_TTL = 60.0  # seconds; bounds how long time-dependent parts (recency, "live now") can lag


def fingerprint(*parts: Any) -> str:
    """A short hash of ``parts`` that is the same in every process (unlike ``hash()`` of a str)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


class PageCache(Protocol):
    kind: str

    def get(self, key: str) -> dict[str, Any] | None: ...

    def set(self, key: str, page: dict[str, Any]) -> None: ...


class MemoryPageCache:
    """Pages with a time to live, for one process, oldest first out.

    Every page lives ``ttl`` seconds from when it was set, so insertion order is expiry order: each ``set``
    drops the expired pages at the front, and the cache holds about ``ttl`` seconds of traffic (bounded by
    ``max_entries``) instead of filling up to the bound and staying there."""

    kind = "memory"

    def __init__(self, max_entries: int = 20_000, ttl: float = DEFAULT_TTL) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("max_entries must be >= 1 and ttl > 0")
        self.max_entries, self.ttl = max_entries, ttl
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._data[key]
                return None
        return orjson.loads(hit[1])  # a fresh copy: callers may change the page they get

    def set(self, key: str, page: dict[str, Any]) -> None:
        blob = orjson.dumps(page)
        now = time.monotonic()
        with self._lock:
            self._data.pop(key, None)  # re-set: to the back, with its new expiry
            self._data[key] = (now + self.ttl, blob)
            data = self._data
            while data and (len(data) > self.max_entries or next(iter(data.values()))[0] < now):
                data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class RedisPageCache:
    """Pages in Redis (``SET key value EX ttl``), shared by all workers; short timeouts, fails open."""

    kind = "redis"
    RETRY_SECONDS = 5.0

    def __init__(self, url: str, ttl: float = DEFAULT_TTL, timeout: float = 0.25) -> None:
        import redis

        self.url, self.ttl = url, max(1, int(round(ttl)))
        self._client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._down_until = 0.0

    def _failed(self, exc: Exception) -> None:
        if self._down_until < time.monotonic():
            log.warning("recommendation cache: Redis unavailable (%s); serving uncached for now", exc)
        self._down_until = time.monotonic() + self.RETRY_SECONDS

    def get(self, key: str) -> dict[str, Any] | None:
        if self._down_until > time.monotonic():
            return None
        try:
            blob = self._client.get(PREFIX + key)
        except Exception as exc:  # noqa: BLE001 - any Redis failure means "not cached"
            self._failed(exc)
            return None
        return orjson.loads(blob) if blob is not None else None

    def set(self, key: str, page: dict[str, Any]) -> None:
        if self._down_until > time.monotonic():
            return
        try:
            self._client.set(PREFIX + key, orjson.dumps(page), ex=self.ttl)
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)


_lock = threading.Lock()
_configured = False
_cache: PageCache | None = None


def page_cache() -> PageCache | None:
    """The process's cache, built on first use from the environment: ``KNOWCAST_REC_CACHE_TTL`` seconds
    (default 60; 0 turns caching off) in Redis at ``KNOWCAST_REDIS_URL`` when set, else in memory."""
    global _configured, _cache
    if not _configured:
        with _lock:
            if not _configured:
                _cache = _from_env()
                _configured = True
    return _cache


def set_page_cache(cache: PageCache | None) -> None:
    """Use ``cache`` (None: no caching) instead of the one from the environment (tests, embedding apps)."""
    global _configured, _cache
    with _lock:
        _cache, _configured = cache, True


def reset_page_cache() -> None:
    """Forget the configured cache; the next request builds it from the environment again."""
    global _configured, _cache
    with _lock:
        _cache, _configured = None, False


def _from_env() -> PageCache | None:
    raw = os.environ.get("KNOWCAST_REC_CACHE_TTL", "")
    try:
        ttl = float(raw) if raw else DEFAULT_TTL
    except ValueError as exc:
        raise ValueError(f"KNOWCAST_REC_CACHE_TTL must be a number of seconds, got {raw!r}") from exc
    if ttl <= 0:
        return None
    url = os.environ.get("KNOWCAST_REDIS_URL")
    if url:
        return RedisPageCache(url, ttl=ttl)
    return MemoryPageCache(ttl=ttl)
