"""Rate limiting for the HTTP API: a token bucket per API key (per client IP without a key).

Why a token bucket: it allows short bursts (a dashboard page fires a few requests at once, an importer sends
batches back to back) while capping the average rate, and its whole state is two numbers per caller.

A bucket holds at most ``burst`` tokens and refills at ``rate`` tokens per second; each request takes one.
A request that finds less than one token gets **429** with ``Retry-After`` (whole seconds until a token is
back). Buckets:

- ``key:<sha256 of the secret>``: requests carrying an API key (``Authorization: Bearer`` or ``X-API-Key``).
  The bucket is named by a hash of the whole secret, not its public prefix, so nobody can drain another
  caller's bucket by sending wrong secrets with their prefix, and the secret itself is never kept or logged.
- ``ip:<address>``: requests without a key (dashboard pages, anonymous calls).
- ``fail:<address>``: charged once for every 401 from that address. Keyed requests from an address whose
  ``fail`` bucket is empty are refused, so inventing a new random key per request does not escape the limit.

Buckets live in process by default. With ``settings.redis_url`` they live in Redis (one Lua script per
request, atomic, using the Redis clock) so every worker shares one limit. If Redis is unreachable the limiter
fails open to the in-process buckets (still a per-worker limit) and logs a warning at most every 30 s.

``/healthz`` and ``/static/`` are never limited; WebSocket streams are left to their routers (the live rooms
router has its own per-room comment limiter).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("knowcast.api.ratelimit")

EXEMPT_PREFIXES = ("/healthz", "/static/")
REDIS_PREFIX = "knowcast:rl:"
#: Timeout for every Redis call the limiter makes: a slow Redis must not slow every request down.
REDIS_TIMEOUT_S = 0.25
#: After a Redis failure, use the in-process buckets for this long before trying Redis again.
REDIS_RETRY_S = 5.0
WARN_EVERY_S = 30.0

# One request = several buckets, each with (cost, need): allowed when every bucket holds at least `need`
# tokens; then each bucket loses `cost` tokens (never below zero). Returns the wait in seconds (0 = allowed).
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = math.ceil(burst / rate * 1000) + 1000
local tokens = {}
local wait = 0
for i, key in ipairs(KEYS) do
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tok = tonumber(v[1])
  local ts = tonumber(v[2])
  if tok == nil then tok = burst; ts = now end
  tok = math.min(burst, tok + math.max(0, now - ts) * rate)
  tokens[i] = tok
  local need = tonumber(ARGV[2 + 2 * i])
  if tok < need then wait = math.max(wait, (need - tok) / rate) end
end
for i, key in ipairs(KEYS) do
  local tok = tokens[i]
  if wait == 0 then tok = math.max(0, tok - tonumber(ARGV[1 + 2 * i])) end
  redis.call('HSET', key, 'tokens', tok, 'ts', now)
  redis.call('PEXPIRE', key, ttl)
end
return tostring(wait)
"""


class TokenBuckets:
    """In-process token buckets (not thread-safe across event loops; the middleware uses one per app).

    At most ``max_buckets`` are kept; the least recently used is dropped first, which only forgives a caller
    that has been quiet the longest (a full bucket and a missing one behave the same).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        max_buckets: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tok, ts = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tok + max(0.0, now - ts) * self.rate)

    def take(self, charges: Sequence[tuple[str, float, float]]) -> float:
        """Apply ``(bucket, cost, need)`` charges atomically; 0.0 if allowed, else seconds to wait."""
        now = self.clock()
        levels = [self._level(key, now) for key, _, _ in charges]
        wait = max(
            (max(0.0, need - lvl) / self.rate for lvl, (_, _, need) in zip(levels, charges, strict=True)),
            default=0.0,
        )
        for lvl, (key, cost, _) in zip(levels, charges, strict=True):
            self._buckets[key] = (max(0.0, lvl - cost) if wait == 0 else lvl, now)
            self._buckets.move_to_end(key)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimiter:
    """Token buckets, in Redis when ``redis_url`` is given (shared by workers), else in process."""

    def __init__(self, rate: float, burst: int, redis_url: str | None = None) -> None:
        self.rate = float(rate)
        self.burst = int(burst)
        self.local = TokenBuckets(rate, burst)
        self.redis_url = redis_url
        # redis.asyncio connections belong to one event loop; keep one client per loop.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._script_sha: str | None = None
        self._redis_down_until = 0.0
        self._last_warning = -math.inf

    @classmethod
    def from_settings(cls, settings: Any) -> RateLimiter | None:
        """None when ``settings.rate_limit`` is 0 or less (limiting off)."""
        rate = float(getattr(settings, "rate_limit", 0) or 0)
        if rate <= 0:
            return None
        burst = int(getattr(settings, "rate_burst", 0) or max(1, math.ceil(rate)))
        return cls(rate, burst, getattr(settings, "redis_url", None))

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(
                self.redis_url,  # type: ignore[arg-type]
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                decode_responses=True,
            )
            self._clients[loop] = client
        return client

    async def take(self, charges: Sequence[tuple[str, float, float]]) -> float:
        """Seconds to wait (0.0 = allowed) after applying the charges; never raises."""
        if self.redis_url and time.monotonic() >= self._redis_down_until:
            try:
                return await self._take_redis(charges)
            except Exception as exc:  # noqa: BLE001 - any Redis trouble: fail open to local buckets
                self._redis_down_until = time.monotonic() + REDIS_RETRY_S
                self._clients.pop(asyncio.get_running_loop(), None)
                now = time.monotonic()
                if now - self._last_warning >= WARN_EVERY_S:
                    self._last_warning = now
                    log.warning(
                        "rate limiter: Redis unavailable (%s: %s); using per-process buckets for now",
                        type(exc).__name__,
                        exc,
                    )
        return self.local.take(charges)

    async def _take_redis(self, charges: Sequence[tuple[str, float, float]]) -> float:
        client = self._client()
        keys = [REDIS_PREFIX + key for key, _, _ in charges]
        args: list[Any] = [self.rate, self.burst]
        for _, cost, need in charges:
            args += [cost, need]
        if self._script_sha is None:
            self._script_sha = await client.script_load(_LUA)
        try:
            out = await client.evalsha(self._script_sha, len(keys), *keys, *args)
        except Exception as exc:  # the script cache was flushed (NOSCRIPT): load it again once
            if "NOSCRIPT" not in str(exc):
                raise
            self._script_sha = await client.script_load(_LUA)
            out = await client.evalsha(self._script_sha, len(keys), *keys, *args)
        return float(out)

    async def aclose(self) -> None:
        for client in list(self._clients.values()):
            try:
                await client.aclose()
            except Exception:  # noqa: BLE001 - closing a client of another (finished) loop
                pass
        self._clients.clear()


def _header(scope: Scope, key: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == key:
            return value.decode("latin-1")
    return None


def caller_buckets(scope: Scope) -> tuple[str | None, str]:
    """(key bucket or None, client address) for a request; the secret is hashed, never kept."""
    secret = _header(scope, b"x-api-key")
    auth = _header(scope, b"authorization")
    if auth and auth.lower().startswith("bearer "):
        secret = auth[7:].strip()
    client = scope.get("client")
    ip = client[0] if client else "unknown"
    if secret:
        return "key:" + hashlib.sha256(secret.encode()).hexdigest()[:32], ip
    return None, ip


class RateLimitMiddleware:
    """ASGI middleware: 429 with ``Retry-After`` when the caller's bucket is empty (see the module doc)."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        key, ip = caller_buckets(scope)
        if key is not None:
            charges = [(key, 1.0, 1.0), (f"fail:{ip}", 0.0, 1.0)]
        else:
            charges = [(f"ip:{ip}", 1.0, 1.0)]
        wait = await self.limiter.take(charges)
        if wait > 0:
            await _too_many(send, wait, self.limiter)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if status == 401:
            await self.limiter.take([(f"fail:{ip}", 1.0, 0.0)])


async def _too_many(send: Send, wait: float, limiter: RateLimiter) -> None:
    retry = max(1, math.ceil(wait))
    body = json.dumps(
        {
            "detail": f"rate limit exceeded ({limiter.rate:g} requests/s, bursts of {limiter.burst}); "
            f"retry after {retry} s",
            "retry_after": retry,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
