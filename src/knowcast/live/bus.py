"""The room bus: how what one API process learns about a room reaches every console of that room.

Two implementations with one interface:

* :class:`InProcessBus` (default): a dict of subscriber queues in this process. Nothing leaves the process,
  so one API process must serve all the consoles of a room.
* :class:`RedisBus` (``KNOWCAST_REDIS_URL`` set): local subscribers are served directly (no round trip, so
  the local latency is the in-process one), and every message is also published on the Redis pub/sub
  channel ``knowcast:room:<room_id>``; one listener per process (``PSUBSCRIBE knowcast:room:*``) hands the
  messages of *other* processes to this process's subscribers and to the ``on_remote`` hook, which the
  room service uses to keep its own room state in step.

Messages are JSON-able dicts. A subscriber whose queue is full loses its *oldest* message (a console that
cannot keep up sees gaps, it never blocks the room); ``Subscription.dropped`` counts them. The store, not
the bus, is the record of what the room saw.

When Redis cannot be reached (at start, on a publish, or when the listener loses its connection), the
:class:`RedisBus` falls back to serving this process's consoles in process: publishing never fails because
of Redis, so a posted comment is still stored and still reaches the consoles connected to *this* worker.
It logs a warning once per outage and reports ``kind == "inprocess (redis unavailable)"`` (shown in room
snapshots and ``/healthz``). Every ``REDIS_RETRY_S`` it tries Redis again and goes back to ``"redis"``
once it answers. While it is down, consoles connected to *other* workers miss this worker's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("knowcast.live.bus")

Message = dict[str, Any]
RemoteHook = Callable[[str, Message], Awaitable[None] | None]
CHANNEL_PREFIX = "knowcast:room:"
#: While Redis is unreachable, try it again this often (seconds); in between the bus is in process only.
REDIS_RETRY_S = 5.0
#: What ``RedisBus.kind`` says while it has fallen back.
FALLBACK_KIND = "inprocess (redis unavailable)"


class Subscription:
    """One subscriber's queue of messages for one room (async-iterable)."""

    def __init__(self, bus: InProcessBus, room_id: str, maxsize: int) -> None:
        self.bus = bus
        self.room_id = room_id
        self.queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def put(self, message: Message) -> None:
        if self.closed:
            return
        while True:
            try:
                self.queue.put_nowait(message)
                return
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    self.queue.get_nowait()
                    self.dropped += 1

    async def get(self, timeout: float | None = None) -> Message | None:
        """The next message, or None after ``timeout`` seconds without one."""
        if timeout is None:
            return await self.queue.get()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def get_nowait(self) -> Message | None:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bus._unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        return await self.queue.get()


class InProcessBus:
    """Publish/subscribe of room messages inside one process (must be used from the event loop)."""

    kind = "inprocess"

    def __init__(self, queue_size: int = 10_000) -> None:
        self.queue_size = queue_size
        self._subs: dict[str, set[Subscription]] = {}
        self.on_remote: RemoteHook | None = None
        self.published = 0

    def subscribe(self, room_id: str) -> Subscription:
        sub = Subscription(self, room_id, self.queue_size)
        self._subs.setdefault(room_id, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.room_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.room_id]

    def subscribers(self, room_id: str) -> int:
        return len(self._subs.get(room_id, ()))

    def deliver_local(self, room_id: str, message: Message) -> None:
        for sub in list(self._subs.get(room_id, ())):
            sub.put(message)

    async def publish(self, room_id: str, message: Message) -> None:
        self.published += 1
        self.deliver_local(room_id, message)

    async def start(self) -> None:
        """Nothing to start in process; kept so callers treat both buses alike."""

    async def close(self) -> None:
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()


class RedisBus(InProcessBus):
    """Rooms shared by several API processes through Redis pub/sub (redis-py asyncio).

    Each process tags what it publishes with its own ``origin`` id and ignores its own messages when they
    come back from Redis (its local subscribers already have them). ``start()`` must run inside the event
    loop that will use the bus; :meth:`ensure_started` restarts the listener if the loop changed (tests).
    Redis errors never reach the caller: the bus falls back to in-process delivery (see the module doc).
    """

    def __init__(self, url: str, queue_size: int = 10_000) -> None:
        super().__init__(queue_size)
        self.url = url
        self.origin = uuid.uuid4().hex
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self.remote_received = 0
        #: Epoch seconds since when Redis is unavailable (None while it works), and how many outages.
        self.unavailable_since: float | None = None
        self.fallbacks = 0
        self._retry_at = 0.0
        self._reconnector: asyncio.Task[None] | None = None

    @property
    def kind(self) -> str:  # type: ignore[override]
        return "redis" if self.unavailable_since is None else FALLBACK_KIND

    async def start(self) -> None:
        await self.ensure_started()

    def _settled(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Nothing to do: listening in this loop, or Redis failed here less than REDIS_RETRY_S ago."""
        if self._loop is not loop:
            return False
        if self.unavailable_since is not None:
            return time.monotonic() < self._retry_at
        return self._listener is not None and not self._listener.done()

    async def ensure_started(self) -> None:
        """Connect and listen (or fall back, see the module doc) unless that is already settled."""
        loop = asyncio.get_running_loop()
        if self._settled(loop):
            return
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            if self._settled(loop):
                return
            try:
                await self._connect(loop)
            except (RedisError, OSError) as exc:
                self._fall_back(exc)
                return
            if self.unavailable_since is not None:
                log.warning("Redis at %s is back: live rooms are shared between workers again", self._where())
                self.unavailable_since = None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> None:
        import redis.asyncio as aioredis

        await self._disconnect()
        self._loop = loop
        # Bounded: a dead Redis must not hang publishers; the listener polls with get_message(timeout=1).
        self._redis = aioredis.from_url(
            self.url, decode_responses=False, socket_timeout=5.0, socket_connect_timeout=2.0
        )
        await self._redis.ping()
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe(CHANNEL_PREFIX + "*")
        # Wait for the server's confirmation, so a message published right after start() is not missed.
        t_end = time.monotonic() + 5.0
        while True:
            msg = await pubsub.get_message(timeout=max(0.01, t_end - time.monotonic()))
            if msg is not None and msg.get("type") == "psubscribe":
                break
            if time.monotonic() >= t_end:
                await pubsub.aclose()
                raise TimeoutError("Redis did not confirm the subscription within 5 s")
        self._listener = loop.create_task(self._listen(pubsub), name="knowcast-redis-bus")

    def _where(self) -> str:
        return re.sub(r"//[^@/]*@", "//***@", self.url)  # no password in logs

    def _fall_back(self, exc: BaseException) -> None:
        """Serve in process from now on; a background task tries Redis again every REDIS_RETRY_S."""
        self._retry_at = time.monotonic() + REDIS_RETRY_S
        if self.unavailable_since is None:
            self.unavailable_since = time.time()
            self.fallbacks += 1
            log.warning(
                "Redis at %s is unavailable (%s: %s): live rooms fall back to the in-process bus in this "
                "worker (consoles on other workers miss its messages); retrying every %g s",
                self._where(), type(exc).__name__, exc, REDIS_RETRY_S,
            )  # fmt: skip
        if self._loop is not None and (self._reconnector is None or self._reconnector.done()):
            # Not only publishers: a worker that only has consoles must rejoin Redis by itself too.
            self._reconnector = self._loop.create_task(self._reconnect(), name="knowcast-redis-bus-retry")

    async def _reconnect(self) -> None:
        while self.unavailable_since is not None:
            await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))
            await self.ensure_started()

    async def _listen(self, pubsub: Any) -> None:
        try:
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is None or msg.get("type") != "pmessage":
                    continue
                try:
                    envelope = json.loads(msg["data"])
                except (ValueError, TypeError):
                    log.warning("ignoring a malformed bus message on %r", msg.get("channel"))
                    continue
                if envelope.get("origin") == self.origin:
                    continue
                room_id = str(envelope.get("room_id"))
                message = envelope.get("message") or {}
                self.remote_received += 1
                if self.on_remote is not None:
                    try:
                        res = self.on_remote(room_id, message)
                        if asyncio.iscoroutine(res):
                            await res
                    except Exception:  # noqa: BLE001 - one bad message must not stop the listener
                        log.exception("on_remote hook failed for room %s", room_id)
                self.deliver_local(room_id, message)
        except asyncio.CancelledError:
            raise
        except (RedisError, OSError) as exc:
            self._fall_back(exc)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def publish(self, room_id: str, message: Message) -> None:
        self.published += 1
        self.deliver_local(room_id, message)  # this worker's consoles first, whatever Redis does
        await self.ensure_started()
        if self.unavailable_since is not None:
            return
        payload = json.dumps(
            {"origin": self.origin, "room_id": room_id, "message": message}, ensure_ascii=False
        )
        try:
            await self._redis.publish(CHANNEL_PREFIX + room_id, payload)
        except (RedisError, OSError) as exc:
            self._fall_back(exc)

    async def _disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None

    async def close(self) -> None:
        await super().close()
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reconnector
            self._reconnector = None
        await self._disconnect()


def make_bus(redis_url: str | None = None, queue_size: int = 10_000) -> InProcessBus:
    """A Redis bus when ``redis_url`` is given, else the in-process one."""
    return RedisBus(redis_url, queue_size) if redis_url else InProcessBus(queue_size)


__all__ = ["CHANNEL_PREFIX", "FALLBACK_KIND", "InProcessBus", "RedisBus", "Subscription", "make_bus"]
