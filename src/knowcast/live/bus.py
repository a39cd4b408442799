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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("knowcast.live.bus")

Message = dict[str, Any]
RemoteHook = Callable[[str, Message], Awaitable[None] | None]
CHANNEL_PREFIX = "knowcast:room:"


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
    """

    kind = "redis"

    def __init__(self, url: str, queue_size: int = 10_000) -> None:
        super().__init__(queue_size)
        self.url = url
        self.origin = uuid.uuid4().hex
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self.remote_received = 0

    async def start(self) -> None:
        await self.ensure_started()

    async def ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._listener is not None and not self._listener.done():
            return
        import redis.asyncio as aioredis

        self._loop = loop
        # Bounded: a dead Redis must not hang publishers; the listener polls with get_message(timeout=1).
        self._redis = aioredis.from_url(
            self.url, decode_responses=False, socket_timeout=5.0, socket_connect_timeout=2.0
        )
        await self._redis.ping()  # fail fast with the real error when Redis is down
        self._ready = asyncio.Event()
        self._listener = loop.create_task(self._listen(), name="knowcast-redis-bus")
        await asyncio.wait_for(self._ready.wait(), 5)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(CHANNEL_PREFIX + "*")
        assert self._ready is not None
        self._ready.set()
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
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def publish(self, room_id: str, message: Message) -> None:
        await self.ensure_started()
        self.published += 1
        self.deliver_local(room_id, message)
        payload = json.dumps(
            {"origin": self.origin, "room_id": room_id, "message": message}, ensure_ascii=False
        )
        await self._redis.publish(CHANNEL_PREFIX + room_id, payload)

    async def close(self) -> None:
        await super().close()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None


def make_bus(redis_url: str | None = None, queue_size: int = 10_000) -> InProcessBus:
    """A Redis bus when ``redis_url`` is given, else the in-process one."""
    return RedisBus(redis_url, queue_size) if redis_url else InProcessBus(queue_size)


__all__ = ["CHANNEL_PREFIX", "InProcessBus", "RedisBus", "Subscription", "make_bus"]
