"""Serving live rooms: one RoomState per room per process, the bus, and the store.

What happens to a batch of posted comments (:meth:`RoomService.post_comments`):

1. the rows are checked (errors name the row and the field; the whole batch is refused, nothing is kept);
2. comment ids the room already took are skipped (a retried POST is not analysed or shown twice);
3. in a worker thread, each comment runs through the stateless pipeline (moderation, sentiment, question,
   keywords) *outside* the room lock, then, under the room lock, is stamped with the room clock (server
   time, so the room's windows stay in time order), checked by the room's flood guard and added to the
   room state (questions, trending words, sentiment, highlights, metrics);
4. the analysed comments are published on the bus (consoles see them now);
5. they are stored, with their verdicts, in ``comments`` and the room's per-minute counters in
   ``room_minutes``; writes of concurrent requests are grouped into one transaction (group commit) and
   the POST answers only once its rows are committed, so an acknowledged comment is never lost.

Gifts, purchases, joins and leaves (:meth:`RoomService.post_events`) are stored first, as ``tip`` /
``purchase`` / ``live_join`` / ``live_leave`` events through the ordinary ingest path, then applied and
published.

With a Redis bus, each process keeps its own room state: comments analysed by another process arrive
with their verdicts and tokens and are added to the local state without being analysed again. Counters
in ``room_minutes`` are written as increments by the process that took the comment or event, so several
processes add up instead of overwriting each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from sqlalchemy import Engine, func, select, text, update

from knowcast.ingest.service import ImportRejected, import_records
from knowcast.live.bus import InProcessBus, Message, make_bus
from knowcast.live.pipeline import MAX_COMMENT_CHARS, AnalyzedComment, CommentPipeline, RoomState
from knowcast.store.bulk import existing_ids, insert_ignore
from knowcast.store.models import Item, LiveSession, Promotes
from knowcast.text.moderation import FloodGuard, Verdict
from knowcast.text.sentiment import Sentiment

log = logging.getLogger("knowcast.live")

MAX_ID_CHARS = 128
ANONYMOUS = "anonymous"
#: Event kinds a room takes, and the stored event type of each.
EVENT_TYPES = {
    "gift": "tip",
    "tip": "tip",
    "purchase": "purchase",
    "refund": "refund",
    "join": "live_join",
    "live_join": "live_join",
    "leave": "live_leave",
    "live_leave": "live_leave",
}


# ---------------------------------------------------------------------------------------------- errors
class RoomNotFound(LookupError):
    """The id is not an item of kind ``live``."""

    def __init__(self, room_id: str) -> None:
        super().__init__(f"room {room_id!r} does not exist (no item of kind 'live' with that id)")
        self.room_id = room_id


class RateLimited(Exception):
    """The client is over its comment rate for this room; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float, limit: float) -> None:
        super().__init__(f"over the limit of {limit:g} comments/s for this room; retry in {retry_after:.2f}s")
        self.retry_after = retry_after
        self.limit = limit


class BadRows(ValueError):
    """Some rows of a batch are invalid; ``errors`` lists ``{row, field, message}`` (row is 0-based)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0] if errors else {}
        super().__init__(
            f"{len(errors)} invalid row(s); nothing was taken. First: row {first.get('row')} "
            f"field '{first.get('field')}': {first.get('message')}"
        )
        self.errors = errors


# ---------------------------------------------------------------------------------------------- config
def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


@dataclass
class LiveConfig:
    """Limits of the live service (environment: ``KNOWCAST_LIVE_*``)."""

    #: Comments per second one client (API key or IP) may post to one room, and the bucket size.
    rate_per_s: float = 3000.0
    burst: float = 6000.0
    #: Largest batch one POST may carry.
    max_batch: int = 5000
    #: Comment ids remembered per room to skip retried comments without a store round trip.
    recent_ids: int = 200_000
    #: Threads analysing comments at once (the GIL makes more than a few pointless).
    analysis_threads: int = 4

    @classmethod
    def from_env(cls) -> LiveConfig:
        return cls(
            rate_per_s=_env_float("KNOWCAST_LIVE_RATE", cls.rate_per_s),
            burst=_env_float("KNOWCAST_LIVE_BURST", cls.burst),
            max_batch=int(_env_float("KNOWCAST_LIVE_MAX_BATCH", cls.max_batch)),
        )


# ---------------------------------------------------------------------------------------- rate limiting
class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; ``take(n)`` returns 0 when granted, else the wait."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate and capacity must be > 0, got {rate}, {capacity}")
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def take(self, n: float, now: float) -> float:
        self._refill(now)
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        need = min(n, self.capacity) - self.tokens
        return max(need / self.rate, 1e-3)

    def peek(self, now: float) -> float:
        self._refill(now)
        return self.tokens


class RateLimiter:
    """Token buckets per (client, room); idle buckets are forgotten once they would be full again."""

    def __init__(self, rate: float, burst: float, clock: Any = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()
        self._last_sweep = 0.0

    def _bucket(self, key: tuple[str, str], now: float) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None:
            if now - self._last_sweep > 60:
                self._sweep(now)
            b = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return b

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        full_after = self.burst / self.rate
        for k in [k for k, b in self._buckets.items() if now - b.updated > full_after]:
            del self._buckets[k]

    def check(self, client: str, room_id: str, n: int = 1) -> None:
        """Take ``n`` tokens or raise :class:`RateLimited` (nothing is taken then)."""
        with self._lock:
            now = self.clock()
            wait = self._bucket((client, room_id), now).take(n, now)
        if wait > 0:
            raise RateLimited(wait, self.rate)

    def precheck(self, client: str, room_id: str) -> None:
        """Cheap refusal before the body is even read: the bucket is empty."""
        with self._lock:
            now = self.clock()
            tokens = self._bucket((client, room_id), now).peek(now)
        if tokens < 1:
            raise RateLimited((1 - tokens) / self.rate, self.rate)


# ---------------------------------------------------------------------------------------- input checks
def clean_text(value: str | bytes) -> str:
    """Text safe for every store: invalid UTF-8 and lone surrogates dropped, NUL removed."""
    if isinstance(value, (bytes, bytearray)):
        s = bytes(value).decode("utf-8", errors="replace")
    else:
        s = value
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            s = s.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return s.replace("\ufffd", "").replace("\x00", "")


def _ts_ms(v: Any) -> int | None:
    """Epoch ms from epoch seconds/ms or ISO 8601; None when it is not a time."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        if not math.isfinite(v) or v <= 0:
            return None
        return int(round(v * 1000 if abs(v) < 1e11 else v))
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip().replace("Z", "+00:00"))
        except ValueError:
            try:
                return _ts_ms(float(v))
            except ValueError:
                return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp() * 1000)
    return None


def _id(v: Any, name: str, row: int, errors: list[dict[str, Any]], default: str | None) -> str | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return default
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        errors.append({"row": row, "field": name, "message": "must be a string"})
        return None
    s = clean_text(str(v)).strip()
    if len(s) > MAX_ID_CHARS:
        errors.append({"row": row, "field": name, "message": f"must be at most {MAX_ID_CHARS} characters"})
        return None
    return s


@dataclass(slots=True)
class CommentIn:
    comment_id: str
    text: str
    user_id: str
    client_ts_ms: int | None


def check_comments(rows: Sequence[Any], now_ms: int, max_batch: int = 5000) -> list[CommentIn]:
    """Posted rows → comments; a row is an object (``text``, optional ``comment_id``, ``user_id``, ``ts``)
    or a bare string. Raises :class:`BadRows` listing every invalid row."""
    if not isinstance(rows, list):
        raise BadRows([{"row": None, "field": "<body>", "message": "expected a JSON array of comments"}])
    if len(rows) > max_batch:
        raise BadRows(
            [
                {
                    "row": None,
                    "field": "<body>",
                    "message": f"{len(rows)} comments is over the {max_batch} limit",
                }
            ]
        )
    errors: list[dict[str, Any]] = []
    out: list[CommentIn] = []
    for i, r in enumerate(rows):
        if isinstance(r, str):
            r = {"text": r}
        if not isinstance(r, dict):
            errors.append({"row": i, "field": "<row>", "message": "expected an object or a string"})
            continue
        t = r.get("text")
        if t is None:
            errors.append({"row": i, "field": "text", "message": "is required"})
            continue
        if not isinstance(t, str):
            errors.append({"row": i, "field": "text", "message": f"must be a string, got {type(t).__name__}"})
            continue
        t = clean_text(t)
        if not t.strip():
            errors.append({"row": i, "field": "text", "message": "is empty"})
            continue
        if len(t) > MAX_COMMENT_CHARS:
            errors.append(
                {"row": i, "field": "text", "message": f"must be at most {MAX_COMMENT_CHARS} characters"}
            )
            continue
        cid = _id(r.get("comment_id"), "comment_id", i, errors, None)
        uid = _id(r.get("user_id"), "user_id", i, errors, ANONYMOUS)
        ts = None
        if r.get("ts") is not None:
            ts = _ts_ms(r["ts"])
            if ts is None:
                errors.append({"row": i, "field": "ts", "message": "expected epoch seconds/ms or ISO 8601"})
                continue
            if ts > now_ms + 24 * 3600 * 1000:
                errors.append({"row": i, "field": "ts", "message": "is more than a day in the future"})
                continue
        if uid is None or (r.get("comment_id") is not None and cid is None):
            continue
        out.append(CommentIn(cid or uuid.uuid4().hex, t, uid, ts))
    if errors:
        raise BadRows(errors)
    return out


@dataclass(slots=True)
class EventIn:
    event_id: str
    kind: str  # the stored event type (tip, purchase, refund, live_join, live_leave)
    user_id: str
    amount: float
    item_id: str | None
    client_ts_ms: int | None
    currency: str | None


def check_events(rows: Sequence[Any], now_ms: int, max_batch: int = 5000) -> list[EventIn]:
    if not isinstance(rows, list):
        raise BadRows([{"row": None, "field": "<body>", "message": "expected a JSON array of events"}])
    if len(rows) > max_batch:
        raise BadRows(
            [{"row": None, "field": "<body>", "message": f"{len(rows)} events is over the {max_batch} limit"}]
        )
    errors: list[dict[str, Any]] = []
    out: list[EventIn] = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            errors.append({"row": i, "field": "<row>", "message": "expected an object"})
            continue
        kind = str(r.get("type") or "").lower()
        if kind not in EVENT_TYPES:
            errors.append(
                {"row": i, "field": "type", "message": "expected one of " + ", ".join(sorted(EVENT_TYPES))}
            )
            continue
        stored = EVENT_TYPES[kind]
        uid = _id(r.get("user_id"), "user_id", i, errors, None)
        if uid is None:
            if not any(e["row"] == i for e in errors):
                errors.append({"row": i, "field": "user_id", "message": "is required"})
            continue
        amount = r.get("amount", 0.0 if stored in ("live_join", "live_leave") else None)
        if stored in ("tip", "purchase", "refund"):
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
                errors.append({"row": i, "field": "amount", "message": "is required (a number)"})
                continue
            if amount < 0:
                errors.append({"row": i, "field": "amount", "message": "must not be negative"})
                continue
        item = _id(r.get("item_id"), "item_id", i, errors, None)
        if stored in ("purchase", "refund") and item is None:
            errors.append(
                {"row": i, "field": "item_id", "message": "is required for a purchase (what was bought)"}
            )
            continue
        ts = None
        if r.get("ts") is not None:
            ts = _ts_ms(r["ts"])
            if ts is None or ts > now_ms + 24 * 3600 * 1000:
                errors.append({"row": i, "field": "ts", "message": "expected a time no later than tomorrow"})
                continue
        eid = _id(r.get("event_id"), "event_id", i, errors, None)
        out.append(
            EventIn(
                eid or uuid.uuid4().hex,
                stored,
                uid,
                float(amount or 0.0),
                item,
                ts,
                r.get("currency") if isinstance(r.get("currency"), str) else None,
            )
        )
    if errors:
        raise BadRows(errors)
    return out


# ------------------------------------------------------------------------------------------ room state
class _Precomputed:
    """A stand-in pipeline that hands ``RoomState.add_comment`` an analysis made elsewhere.

    Why: the costly analysis runs outside the room lock (or in another process); the room only needs its
    own stateful steps. ``flood``: the room's flood guard still sees every comment; its verdict replaces a
    weaker one exactly as ``CommentPipeline.analyze`` does, unless the comment came from another process
    (whose guard already decided).
    """

    def __init__(self) -> None:
        self.next: AnalyzedComment | None = None
        self.decide_flood = True

    def analyze(
        self,
        text: str | bytes,
        ts: float = 0.0,
        user_id: str | None = None,
        comment_id: str | None = None,
        flood: FloodGuard | None = None,
    ) -> AnalyzedComment:
        a = self.next
        assert a is not None, "_Precomputed.analyze called without a comment"
        self.next = None
        a.ts = ts
        if flood is not None:
            fv = flood.check(a.text, user_id, ts)
            v = a.verdict
            if (
                self.decide_flood
                and fv.flagged
                and (not v.flagged or (v.action == "review" and fv.action == "block"))
            ):
                a.verdict = fv
        return a


@dataclass
class _Minute:
    comments: int = 0
    blocked: int = 0
    questions: int = 0
    gifts: int = 0
    gift_amount: float = 0.0
    purchases: int = 0
    gmv: float = 0.0
    joins: int = 0
    leaves: int = 0
    viewers: int = 0


@dataclass
class Room:
    """One room in this process: its state, its lock, and what is not yet written."""

    room_id: str
    title: str
    state: RoomState
    started_ms: int
    live_state: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    stub: _Precomputed = field(default_factory=_Precomputed)
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    minutes: dict[int, _Minute] = field(default_factory=dict)
    taken: int = 0

    def minute(self, now_s: float) -> _Minute:
        m = int(now_s * 1000) // 60_000 * 60_000
        row = self.minutes.get(m)
        if row is None:
            row = self.minutes[m] = _Minute()
        return row


def _now_s() -> float:
    return time.time()


def _dt_ms(v: datetime | None) -> int | None:
    if v is None:
        return None
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    return int(v.timestamp() * 1000)


def comment_from_dict(d: dict[str, Any], tokens: list[str] | None = None) -> AnalyzedComment:
    """Rebuild an analysed comment from its ``to_dict()`` (what another process published)."""
    m = d.get("moderation") or {}
    s = d.get("sentiment") or {}
    span = m.get("span")
    verdict = Verdict(
        m.get("action", "pass"),
        m.get("category"),
        (int(span[0]), int(span[1])) if span else None,
        m.get("matched"),
        m.get("reason", ""),
    )
    senti = Sentiment(s.get("label", "neutral"), float(s.get("score", 0.0)), float(s.get("p_positive", 0.5)))
    return AnalyzedComment(
        text=d.get("text", ""),
        normalized=d.get("normalized", ""),
        ts=float(d.get("ts") or 0.0),
        user_id=d.get("user_id"),
        verdict=verdict,
        sentiment=senti,
        is_question=bool(d.get("is_question")),
        keywords=list(d.get("keywords") or []),
        tokens=list(tokens or []),
        question_id=None,
        comment_id=d.get("comment_id"),
    )


# ---------------------------------------------------------------------------------------- the service
MINUTES_UPSERT = text(
    """
    INSERT INTO room_minutes (room_id, minute_ts, comments, blocked, questions, gifts, gift_amount,
                              purchases, gmv, joins, leaves, viewers, sentiment)
    VALUES (:room_id, :minute_ts, :comments, :blocked, :questions, :gifts, :gift_amount,
            :purchases, :gmv, :joins, :leaves, :viewers, :sentiment)
    ON CONFLICT (room_id, minute_ts) DO UPDATE SET
        sentiment = CASE
            WHEN (room_minutes.comments - room_minutes.blocked) + (excluded.comments - excluded.blocked) > 0
            THEN (COALESCE(room_minutes.sentiment, 0) * (room_minutes.comments - room_minutes.blocked)
                  + COALESCE(excluded.sentiment, 0) * (excluded.comments - excluded.blocked))
                 / ((room_minutes.comments - room_minutes.blocked) + (excluded.comments - excluded.blocked))
            ELSE room_minutes.sentiment END,
        comments = room_minutes.comments + excluded.comments,
        blocked = room_minutes.blocked + excluded.blocked,
        questions = room_minutes.questions + excluded.questions,
        gifts = room_minutes.gifts + excluded.gifts,
        gift_amount = room_minutes.gift_amount + excluded.gift_amount,
        purchases = room_minutes.purchases + excluded.purchases,
        gmv = room_minutes.gmv + excluded.gmv,
        joins = room_minutes.joins + excluded.joins,
        leaves = room_minutes.leaves + excluded.leaves,
        viewers = CASE WHEN excluded.viewers > room_minutes.viewers
                       THEN excluded.viewers ELSE room_minutes.viewers END
    """
)

COMMENT_COLUMNS = [
    "id", "ts", "user_id", "item_id", "room_id", "text", "offset_s", "moderation", "category", "matched",
    "sentiment", "sentiment_score", "is_question", "keywords",
]  # fmt: skip


def _merge_comment_minutes(
    minutes: list[dict[str, Any]], rows: list[tuple[Any, ...]], ncol: int
) -> list[dict[str, Any]]:
    """Add the counts of newly stored comment rows to the drained per-minute rows."""
    by_key = {(m["room_id"], m["minute_ts"]): dict(m) for m in minutes}
    senti: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        room_id, minute_ts, blocked, question, score = r[4], r[ncol], r[ncol + 1], r[ncol + 2], r[ncol + 3]
        key = (room_id, minute_ts)
        m = by_key.get(key)
        if m is None:
            m = by_key[key] = {
                "room_id": room_id, "minute_ts": minute_ts, "comments": 0, "blocked": 0, "questions": 0,
                "gifts": 0, "gift_amount": 0.0, "purchases": 0, "gmv": 0.0, "joins": 0, "leaves": 0,
                "viewers": 0, "sentiment": None,
            }  # fmt: skip
        m["comments"] += 1
        m["blocked"] += int(blocked)
        m["questions"] += int(question)
        if score is not None:
            senti.setdefault(key, []).append(score)
    for key, scores in senti.items():
        m = by_key[key]
        m["sentiment"] = round(sum(scores) / len(scores), 4)
    return sorted(by_key.values(), key=lambda m: (m["room_id"], m["minute_ts"]))


class RoomService:
    """All live rooms of this process. Use from one event loop; heavy work goes to worker threads."""

    def __init__(
        self,
        engine: Engine,
        bus: InProcessBus | None = None,
        config: LiveConfig | None = None,
        pipeline: CommentPipeline | None = None,
    ) -> None:
        self.engine = engine
        self.bus = bus if bus is not None else InProcessBus()
        self.bus.on_remote = self.apply_remote
        self.config = config if config is not None else LiveConfig.from_env()
        self._pipeline = pipeline
        self._pipeline_lock = threading.Lock()
        self._warmed = False  # warm_up ran to the end in this process
        self.rooms: dict[str, Room] = {}
        self._rooms_lock = threading.Lock()
        self.limiter = RateLimiter(self.config.rate_per_s, self.config.burst)
        self._limiter_threads = anyio.CapacityLimiter(self.config.analysis_threads)
        self._pending: list[tuple[list[tuple[Any, ...]], dict[str, list[_Minute | int]], asyncio.Future]] = []
        self._flushing = False
        self.stats = {"comments": 0, "duplicates": 0, "events": 0, "writes": 0}

    @classmethod
    def from_settings(cls, engine: Engine, redis_url: str | None) -> RoomService:
        return cls(engine, make_bus(redis_url))

    @property
    def pipeline(self) -> CommentPipeline:
        """The shared pipeline, built on first use (loading the lexicons takes seconds)."""
        if self._pipeline is None:
            with self._pipeline_lock:
                if self._pipeline is None:
                    self._pipeline = CommentPipeline()
        return self._pipeline

    async def warm_up(self) -> None:
        """Build the shared pipeline before a console goes live (once per process; later consoles skip it)."""
        if self._warmed:
            return
        await anyio.to_thread.run_sync(lambda: self.pipeline.analyze("warm up 预热"))
        # a batch large enough for the vectorised moderation pass builds its tables now, not on a POST
        warm = [(f"warm up 预热 {i}", 0.0, None, None) for i in range(40)]
        await anyio.to_thread.run_sync(lambda: self.pipeline.analyze_batch(warm))
        self._warmed = True

    # ------------------------------------------------------------------ rooms
    def _load_room(self, room_id: str) -> Room:
        with self._rooms_lock:
            room = self.rooms.get(room_id)
            if room is not None:
                return room
        with self.engine.begin() as conn:
            item = conn.execute(select(Item.kind, Item.title).where(Item.id == room_id)).first()
            if item is None or item.kind != "live":
                raise RoomNotFound(room_id)
            sess = conn.execute(
                select(LiveSession.state, LiveSession.started_at).where(LiveSession.item_id == room_id)
            ).first()
            now = datetime.now(UTC)
            if sess is None:
                conn.execute(
                    text("INSERT INTO live_sessions (item_id, state, started_at) VALUES (:i, 'live', :t)"),
                    {"i": room_id, "t": now},
                )
                state, started = "live", now
            elif sess.state == "scheduled":
                conn.execute(
                    update(LiveSession)
                    .where(LiveSession.item_id == room_id, LiveSession.state == "scheduled")
                    .values(state="live", started_at=func.coalesce(LiveSession.started_at, now))
                )
                state, started = "live", sess.started_at or now
            else:
                state, started = sess.state, sess.started_at or now
            promoted = conn.execute(
                select(Item.id, Item.title, Item.price)
                .join(Promotes, Promotes.item_id == Item.id)
                .where(Promotes.promoter_id == room_id)
            ).all()
        # keep_record off: the store keeps every comment; a list here would grow for the room's whole life
        rs = RoomState(room_id, pipeline=self.pipeline, keep_record=False)
        for p in promoted:
            rs.metrics.promote(p.id, p.title, p.price)
        room = Room(room_id, item.title or "", rs, _dt_ms(started) or int(_now_s() * 1000), state)
        rs.pipeline = room.stub  # type: ignore[assignment]
        with self._rooms_lock:
            return self.rooms.setdefault(room_id, room)

    async def room(self, room_id: str) -> Room:
        """The room, loaded on first use; :class:`RoomNotFound` unless ``room_id`` is a live item."""
        room = self.rooms.get(room_id)
        if room is not None:
            return room
        return await anyio.to_thread.run_sync(self._load_room, room_id)

    def snapshot_sync(self, room: Room, n: int = 10) -> dict[str, Any]:
        with room.lock:
            snap = room.state.snapshot(n)
        snap["room"] = {
            "title": room.title,
            "state": room.live_state,
            "started_ms": room.started_ms,
            "bus": self.bus.kind,
        }
        return snap

    async def snapshot(self, room_id: str, n: int = 10) -> dict[str, Any]:
        room = await self.room(room_id)
        return self.snapshot_sync(room, n)

    # ------------------------------------------------------------------ comments
    def _analyze_and_apply(
        self, room: Room, items: list[CommentIn]
    ) -> tuple[list[dict], list[list[str]], list]:
        # one batch: moderation of all comments at once, each distinct text analysed once
        analyzed = self.pipeline.analyze_batch([(c.text, 0.0, c.user_id, c.comment_id) for c in items])
        dicts: list[dict[str, Any]] = []
        tokens: list[list[str]] = []
        rows: list[tuple[Any, ...]] = []
        with room.lock:
            for c, a in zip(items, analyzed, strict=True):
                now = max(_now_s(), room.state.now)
                room.stub.next = a
                room.stub.decide_flood = True
                room.state.add_comment(c.text, now, c.user_id, c.comment_id)
                self._count_comment(room, a, now)
                dicts.append(a.to_dict())
                tokens.append(a.tokens)
                v = a.verdict
                now_ms = int(now * 1000)
                rows.append(
                    (
                        c.comment_id,
                        c.client_ts_ms if c.client_ts_ms is not None else now_ms,
                        c.user_id,
                        room.room_id,
                        room.room_id,
                        c.text,
                        round((now_ms - room.started_ms) / 1000.0, 3),
                        v.action,
                        v.category,
                        v.matched,
                        a.sentiment.label,
                        round(float(a.sentiment.score), 4),
                        bool(a.is_question),
                        json.dumps(a.keywords, ensure_ascii=False),
                        # not stored as such: what the per-minute counters need
                        now_ms // 60_000 * 60_000,
                        v.action == "block",
                        v.action != "block" and bool(a.is_question),
                        None if v.action == "block" else float(a.sentiment.score),
                    )
                )
            room.taken += len(items)
        return dicts, tokens, rows

    @staticmethod
    def _count_comment(room: Room, a: AnalyzedComment, now: float) -> None:
        # Comment counts go to room_minutes when the row is stored as new (see _write); here only viewers.
        m = room.minute(now)
        m.viewers = max(m.viewers, room.state.metrics.concurrent)

    async def post_comments(
        self, room_id: str, rows: Sequence[Any], client: str = "anonymous", *, store: bool = True
    ) -> dict[str, Any]:
        """Check, analyse, publish and store a batch of comments; returns what was taken."""
        room = await self.room(room_id)
        items = check_comments(rows, int(_now_s() * 1000), self.config.max_batch)
        self.limiter.check(client, room_id, max(1, len(items)))
        fresh: list[CommentIn] = []
        dup = 0
        batch_ids: set[str] = set()
        for c in items:
            if c.comment_id in room.seen or c.comment_id in batch_ids:
                dup += 1
            else:
                batch_ids.add(c.comment_id)
                fresh.append(c)
        if not fresh:
            self.stats["duplicates"] += dup
            return {"room_id": room_id, "accepted": 0, "duplicates": dup, "comments": []}
        dicts, tokens, db_rows = await anyio.to_thread.run_sync(
            self._analyze_and_apply, room, fresh, limiter=self._limiter_threads
        )
        await self.bus.publish(
            room_id, {"type": "comments", "room_id": room_id, "items": dicts, "tokens": tokens}
        )
        if store:
            await self._persist(room, db_rows)
        for c in fresh:
            room.seen[c.comment_id] = None
        while len(room.seen) > self.config.recent_ids:
            room.seen.popitem(last=False)
        self.stats["comments"] += len(fresh)
        self.stats["duplicates"] += dup
        return {
            "room_id": room_id,
            "accepted": len(fresh),
            "duplicates": dup,
            "comments": [
                {
                    "comment_id": d["comment_id"],
                    "moderation": d["moderation"]["action"],  # type: ignore[index]
                    "category": d["moderation"]["category"],  # type: ignore[index]
                }
                for d in dicts
            ],
        }

    # ------------------------------------------------------------------ events
    def _store_events(self, room: Room, events: list[EventIn]) -> set[str]:
        """Store the events; returns the ids that were not stored before (a retry adds nothing)."""
        now_ms = int(_now_s() * 1000)
        rows = [
            {
                "event_id": e.event_id,
                "type": e.kind,
                "ts": e.client_ts_ms or now_ms,
                "user_id": e.user_id,
                "item_id": e.item_id if e.kind in ("purchase", "refund") else room.room_id,
                "amount": e.amount if e.kind in ("tip", "purchase", "refund") else None,
                "currency": e.currency,
                "channel": "live",
                "room_id": room.room_id,
            }
            for e in events
        ]
        ids = [e.event_id for e in events]
        with self.engine.connect() as conn:
            before = existing_ids(conn, "events", "id", ids)
        import_records(self.engine, "events", rows, create_missing=True, source=f"live:{room.room_id}")
        return set(ids) - before

    def _apply_events(self, room: Room, events: list[dict[str, Any]], count: bool) -> None:
        with room.lock:
            for e in events:
                now = max(_now_s(), room.state.now)
                room.state.add_event(
                    e["type"], now, e["user_id"], float(e.get("amount") or 0.0), e.get("item_id")
                )
                e["ts"] = now
                if not count:
                    continue
                m = room.minute(now)
                k = e["type"]
                if k == "tip":
                    m.gifts += 1
                    m.gift_amount += float(e.get("amount") or 0.0)
                elif k == "purchase":
                    m.purchases += 1
                    m.gmv += float(e.get("amount") or 0.0)
                elif k == "refund":
                    m.gmv -= float(e.get("amount") or 0.0)
                elif k == "live_join":
                    m.joins += 1
                elif k == "live_leave":
                    m.leaves += 1
                m.viewers = max(m.viewers, room.state.metrics.concurrent)

    async def post_events(
        self, room_id: str, rows: Sequence[Any], client: str = "anonymous"
    ) -> dict[str, Any]:
        """Store, apply and publish gifts, purchases, joins and leaves."""
        room = await self.room(room_id)
        events = check_events(rows, int(_now_s() * 1000), self.config.max_batch)
        try:
            new_ids = await anyio.to_thread.run_sync(self._store_events, room, events)
        except ImportRejected as exc:
            raise BadRows(
                [{"row": e.line - 1, "field": e.field, "message": e.message} for e in exc.report.errors]
            ) from None
        plain = [
            {
                "event_id": e.event_id,
                "type": e.kind,
                "user_id": e.user_id,
                "amount": e.amount,
                "item_id": e.item_id,
            }
            for e in events
            if e.event_id in new_ids
        ]
        if plain:
            await anyio.to_thread.run_sync(self._apply_events, room, plain, True)
            await self.bus.publish(room_id, {"type": "events", "room_id": room_id, "items": plain})
            await self._persist(room, [])
        self.stats["events"] += len(plain)
        return {"room_id": room_id, "accepted": len(plain), "duplicates": len(events) - len(plain)}

    # ------------------------------------------------------------------ remote (other processes)
    async def apply_remote(self, room_id: str, message: Message) -> None:
        """A message another process published: keep this process's room state in step."""
        room = self.rooms.get(room_id)
        if room is None:
            return  # nobody here watches that room; it loads fresh when someone does
        kind = message.get("type")
        if kind == "comments":
            items = message.get("items") or []
            toks = message.get("tokens") or [[] for _ in items]
            await anyio.to_thread.run_sync(self._apply_remote_comments, room, items, toks)
        elif kind == "events":
            await anyio.to_thread.run_sync(
                self._apply_events, room, [dict(e) for e in message.get("items", [])], False
            )

    def _apply_remote_comments(self, room: Room, items: list[dict], tokens: list[list[str]]) -> None:
        with room.lock:
            for d, t in zip(items, tokens, strict=False):
                a = comment_from_dict(d, t)
                if a.comment_id is not None:
                    room.seen[a.comment_id] = None
                now = max(a.ts, room.state.now)
                room.stub.next = a
                room.stub.decide_flood = False
                room.state.add_comment(a.text, now, a.user_id, a.comment_id)

    # ------------------------------------------------------------------ storage (group commit)
    def _drain_minutes(self, room: Room) -> list[dict[str, Any]]:
        with room.lock:
            minutes, room.minutes = room.minutes, {}
        return [
            {
                "room_id": room.room_id,
                "minute_ts": ts,
                "comments": m.comments,
                "blocked": m.blocked,
                "questions": m.questions,
                "gifts": m.gifts,
                "gift_amount": round(m.gift_amount, 2),
                "purchases": m.purchases,
                "gmv": round(m.gmv, 2),
                "joins": m.joins,
                "leaves": m.leaves,
                "viewers": m.viewers,
                "sentiment": None,
            }
            for ts, m in sorted(minutes.items())
        ]

    async def _persist(self, room: Room, rows: list[tuple[Any, ...]]) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._pending.append((rows, {room.room_id: []}, fut))  # type: ignore[arg-type]
        if not self._flushing:
            self._flushing = True
            loop.create_task(self._flush_loop())
        await fut

    async def _flush_loop(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                rows = [r for b in batch for r in b[0]]
                rooms = {rid for b in batch for rid in b[1]}
                try:
                    await anyio.to_thread.run_sync(self._write, rows, sorted(rooms))
                except BaseException as exc:  # noqa: BLE001 - every waiter gets the error
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        finally:
            self._flushing = False

    def _write(self, rows: list[tuple[Any, ...]], room_ids: list[str]) -> None:
        minutes: list[dict[str, Any]] = []
        drained: list[tuple[Room, list[dict[str, Any]]]] = []
        for rid in room_ids:
            room = self.rooms.get(rid)
            if room is not None:
                m = self._drain_minutes(room)
                drained.append((room, m))
                minutes.extend(m)
        ncol = len(COMMENT_COLUMNS)
        try:
            with self.engine.begin() as conn:
                if rows:
                    # Only rows not stored before count in room_minutes (a retry in another process).
                    stored = existing_ids(conn, "comments", "id", [r[0] for r in rows])
                    new = [r for r in rows if r[0] not in stored]
                    users = sorted({r[2] for r in new})
                    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
                    insert_ignore(
                        conn,
                        "users",
                        ["id"],
                        ["id", "created_at", "attributes"],
                        [(u, now, "{}") for u in users],
                    )
                    insert_ignore(conn, "comments", ["id"], COMMENT_COLUMNS, [r[:ncol] for r in new])
                    minutes = _merge_comment_minutes(minutes, new, ncol)
                if minutes:
                    conn.execute(MINUTES_UPSERT, minutes)
        except BaseException:
            for room, m in drained:  # put the counts back so the next write carries them
                self._restore_minutes(room, m)
            raise
        self.stats["writes"] += 1

    @staticmethod
    def _restore_minutes(room: Room, rows: list[dict[str, Any]]) -> None:
        with room.lock:
            for r in rows:
                m = room.minutes.setdefault(r["minute_ts"], _Minute())
                for k in ("comments", "blocked", "questions", "gifts", "purchases", "joins", "leaves"):
                    setattr(m, k, getattr(m, k) + r[k])
                m.gift_amount += r["gift_amount"]
                m.gmv += r["gmv"]
                m.viewers = max(m.viewers, r["viewers"])

    async def flush(self) -> None:
        """Write every room's pending per-minute counters now."""
        for room in list(self.rooms.values()):
            await self._persist(room, [])

    # ------------------------------------------------------------------ end and close
    async def end_room(self, room_id: str) -> dict[str, Any]:
        """Mark the room ended, write what is pending and return its record (verdict counts, metrics per
        minute, highlights) as this process saw it; the comments themselves are in the store."""
        room = await self.room(room_id)
        await self._persist(room, [])

        def _end() -> dict[str, Any]:
            with self.engine.begin() as conn:
                conn.execute(
                    update(LiveSession)
                    .where(LiveSession.item_id == room_id)
                    .values(state="ended", ended_at=datetime.now(UTC))
                )
            with room.lock:
                room.live_state = "ended"
                rec = room.state.finish()
            return rec

        rec = await anyio.to_thread.run_sync(_end)
        await self.bus.publish(room_id, {"type": "ended", "room_id": room_id})
        return rec

    async def close(self) -> None:
        if self._pending:
            await asyncio.sleep(0)
        await self.bus.close()


__all__ = [
    "BadRows",
    "EVENT_TYPES",
    "LiveConfig",
    "RateLimited",
    "RateLimiter",
    "Room",
    "RoomNotFound",
    "RoomService",
    "TokenBucket",
    "check_comments",
    "check_events",
    "clean_text",
    "comment_from_dict",
]
