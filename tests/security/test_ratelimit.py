"""Rate limiting: the token bucket itself, the middleware's 429s, Redis-shared buckets and failing open."""

from __future__ import annotations

import logging
import socket
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from knowcast.api import ratelimit
from knowcast.api.ratelimit import RateLimiter, TokenBuckets
from knowcast.config import Settings
from tests.security.conftest import bearer, make_app


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_bucket_burst_then_average_rate() -> None:
    clock = Clock()
    b = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [b.take([("k", 1, 1)]) for _ in range(3)] == [0, 0, 0]
    wait = b.take([("k", 1, 1)])
    assert wait == pytest.approx(0.5)  # one token at 2/s
    clock.t += 0.5
    assert b.take([("k", 1, 1)]) == 0
    assert b.take([("k", 1, 1)]) == pytest.approx(0.5)
    clock.t += 100  # refills to the burst, never above
    assert [b.take([("k", 1, 1)]) for _ in range(4)][-1] > 0
    assert b.take([("other", 1, 1)]) == 0  # buckets are independent


def test_bucket_refused_request_costs_nothing_and_charges_are_atomic() -> None:
    clock = Clock()
    b = TokenBuckets(rate=1.0, burst=2, clock=clock)
    b.take([("fail", 1, 0)])
    b.take([("fail", 1, 0)])
    b.take([("fail", 1, 0)])  # need 0: always applied, never below zero
    # the key bucket is full, but the fail bucket is empty: refused, and the key bucket is untouched
    assert b.take([("key", 1, 1), ("fail", 0, 1)]) == pytest.approx(1.0)
    clock.t += 1
    assert b.take([("key", 1, 1), ("fail", 0, 1)]) == 0
    assert b.take([("key", 1, 1)]) == 0
    assert b.take([("key", 1, 1)]) > 0  # burst of 2 used by the two allowed calls


def test_bucket_memory_is_bounded() -> None:
    b = TokenBuckets(rate=1.0, burst=1, max_buckets=100)
    for i in range(1000):
        b.take([(f"ip:{i}", 1, 1)])
    assert len(b) == 100


def test_bucket_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBuckets(rate=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        TokenBuckets(rate=1, burst=0)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert s.rate_limit >= 1000 and s.rate_burst >= 2000  # generous: tests and benchmarks never hit it
    monkeypatch.setenv("KNOWCAST_RATE_LIMIT", "2.5")
    monkeypatch.setenv("KNOWCAST_RATE_BURST", "7")
    s = Settings()
    assert (s.rate_limit, s.rate_burst) == (2.5, 7)
    lim = RateLimiter.from_settings(s)
    assert lim is not None and (lim.rate, lim.burst) == (2.5, 7)
    monkeypatch.setenv("KNOWCAST_RATE_LIMIT", "0")
    assert RateLimiter.from_settings(Settings()) is None
    monkeypatch.setenv("KNOWCAST_RATE_LIMIT", "lots")
    with pytest.raises(ValueError, match="KNOWCAST_RATE_LIMIT"):
        Settings()


def test_429_with_retry_after_per_key(store: Any, keys: dict[str, str]) -> None:
    app = make_app(store, rate_limit=0.5, rate_burst=3)
    c = TestClient(app)
    statuses = [c.get("/v1/items?limit=1", headers=bearer(keys["read"])).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = c.get("/v1/items?limit=1", headers=bearer(keys["read"]))
    assert r.status_code == 429
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["retry-after"]) == 2  # one token at 0.5/s
    assert r.json()["retry_after"] == 2 and "rate limit" in r.json()["detail"]
    # another key, the health check and an anonymous caller are not affected
    assert c.get("/v1/items?limit=1", headers={"X-API-Key": keys["admin"]}).status_code == 200
    assert c.get("/healthz").status_code == 200
    assert c.get("/v1/items").status_code == 401


def test_unauthenticated_callers_limited_by_address(store: Any) -> None:
    app = make_app(store, rate_limit=0.5, rate_burst=2)
    c = TestClient(app)
    assert [c.get("/login").status_code for _ in range(3)] == [200, 200, 429]
    other = TestClient(app, client=("10.0.0.2", 5000))
    assert other.get("/login").status_code == 200


def test_guessing_keys_is_limited_by_address(store: Any, keys: dict[str, str]) -> None:
    """A new made-up key per request gets a fresh key bucket, but each 401 drains the address's bucket."""
    app = make_app(store, rate_limit=0.5, rate_burst=3)
    c = TestClient(app)
    statuses = [c.get("/v1/items", headers=bearer(f"kc_{i:08x}_guess{i}")).status_code for i in range(5)]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429]
    # the same address with a real key waits too; another address does not
    assert c.get("/v1/items", headers=bearer(keys["read"])).status_code == 429
    other = TestClient(app, client=("10.0.0.9", 5000))
    assert other.get("/v1/items?limit=1", headers=bearer(keys["read"])).status_code == 200


def test_limit_off_when_zero(store: Any, keys: dict[str, str]) -> None:
    app = make_app(store, rate_limit=0, rate_burst=1)
    assert app.state.rate_limiter is None
    c = TestClient(app)
    assert all(c.get("/healthz").status_code == 200 for _ in range(5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_redis_down_fails_open_with_a_log_line(
    store: Any, keys: dict[str, str], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "WARN_EVERY_S", 3600.0)
    app = make_app(store, rate_limit=0.5, rate_burst=2, redis_url=f"redis://127.0.0.1:{_free_port()}/0")
    caplog.set_level(logging.WARNING, logger="knowcast.api.ratelimit")
    c = TestClient(app)
    statuses = [c.get("/v1/items?limit=1", headers=bearer(keys["read"])).status_code for _ in range(3)]
    # Redis refused: requests still served, and the per-process buckets still limit
    assert statuses == [200, 200, 429]
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert keys["read"] not in warnings[0].getMessage()


def _redis_reason() -> str | None:
    try:
        import redis

        redis.Redis(socket_connect_timeout=0.5, socket_timeout=0.5).ping()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"Redis not reachable on 127.0.0.1:6379: {type(exc).__name__}"


@pytest.mark.redis
def test_redis_buckets_are_shared_by_workers(
    store: Any, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reason = _redis_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setattr(ratelimit, "REDIS_PREFIX", f"knowcast:test:{uuid.uuid4().hex}:")
    url = "redis://127.0.0.1:6379/0"
    # two apps = two workers with their own in-process state; one Redis bucket between them
    a = TestClient(make_app(store, rate_limit=0.5, rate_burst=4, redis_url=url))
    b = TestClient(make_app(store, rate_limit=0.5, rate_burst=4, redis_url=url))
    h = bearer(keys["read"])
    statuses = [(a if i % 2 else b).get("/v1/items?limit=1", headers=h).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    r = a.get("/v1/items?limit=1", headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert a.app.state.rate_limiter.local.take([("x", 0, 0)]) == 0  # local buckets untouched
    assert len(a.app.state.rate_limiter.local) == 1
