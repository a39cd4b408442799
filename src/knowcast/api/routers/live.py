"""Live rooms over HTTP and WebSocket: post comments and events, stream the console, read what was stored.

The :class:`~knowcast.live.service.RoomService` lives on ``app.state.live_service``; it is created on first
use (with a Redis bus when ``KNOWCAST_REDIS_URL`` is set), so the app factory needs no hook. Tests may put
their own service there before the first request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import select

from knowcast.api.deps import EngineDep, require_scope
from knowcast.api.security import Principal, verify_api_key
from knowcast.live.service import BadRows, RateLimited, RoomNotFound, RoomService
from knowcast.store.models import Comment, RoomMinute

router = APIRouter(prefix="/v1", tags=["live"])
_create_lock = threading.Lock()

#: How often a console gets a comments batch (coalesced) and a full snapshot, by default.
BATCH_MS = 100
SNAPSHOT_S = 1.0


def get_service(app: Any) -> RoomService:
    """The app's room service, made on first use."""
    svc = getattr(app.state, "live_service", None)
    if svc is None:
        with _create_lock:
            svc = getattr(app.state, "live_service", None)
            if svc is None:
                svc = RoomService.from_settings(app.state.store.engine, app.state.settings.redis_url)
                app.state.live_service = svc
    return svc


def _client_key(request: Request, principal: Principal) -> str:
    if principal.key_id is not None:
        return f"key:{principal.key_id}"
    host = request.client.host if request.client else "?"
    return f"ip:{host}"


def _error(exc: Exception) -> JSONResponse:
    if isinstance(exc, RoomNotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)
    if isinstance(exc, RateLimited):
        return JSONResponse(
            {"detail": str(exc), "retry_after_s": round(exc.retry_after, 3)},
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
        )
    if isinstance(exc, BadRows):
        return JSONResponse({"detail": str(exc), "errors": exc.errors[:1000]}, status_code=422)
    raise exc


async def _json_body(request: Request) -> Any:
    """The body as JSON; invalid UTF-8 bytes are dropped rather than refusing a whole chat batch."""
    raw = await request.body()
    try:
        return json.loads(raw.decode("utf-8", errors="replace").replace("\ufffd", ""))
    except ValueError as exc:
        raise BadRows([{"row": None, "field": "<body>", "message": f"not valid JSON: {exc}"}]) from None


@router.post(
    "/rooms/{room_id}/comments",
    summary="Post a batch of live comments",
    description="Body: a JSON array of `{text, comment_id?, user_id?, ts?}` objects (or bare strings). "
    "Each comment is moderated and analysed, pushed to the room's consoles and stored with its verdicts. "
    "Send `comment_id`s so a retried POST stores nothing twice. 404 for an unknown room, 422 naming the "
    "row and field of invalid comments (nothing is taken), 429 with Retry-After over the rate limit.",
)
async def post_comments(
    room_id: str, request: Request, principal: Annotated[Principal, Depends(require_scope("ingest"))]
) -> Any:
    svc = get_service(request.app)
    client = _client_key(request, principal)
    try:
        svc.limiter.precheck(client, room_id)
        await svc.room(room_id)
        rows = await _json_body(request)
        return await svc.post_comments(room_id, rows, client)
    except (RoomNotFound, RateLimited, BadRows) as exc:
        return _error(exc)


_EVENT_PATHS = {"events": None, "gifts": "gift", "purchases": "purchase", "joins": "join", "leaves": "leave"}


def _events_endpoint(path: str, default_type: str | None):  # type: ignore[no-untyped-def]
    async def endpoint(
        room_id: str, request: Request, principal: Annotated[Principal, Depends(require_scope("ingest"))]
    ) -> Any:
        svc = get_service(request.app)
        try:
            await svc.room(room_id)
            rows = await _json_body(request)
            if default_type and isinstance(rows, list):
                rows = [dict(r, type=r.get("type", default_type)) if isinstance(r, dict) else r for r in rows]
            return await svc.post_events(room_id, rows, _client_key(request, principal))
        except (RoomNotFound, RateLimited, BadRows) as exc:
            return _error(exc)

    endpoint.__name__ = f"post_room_{path}"
    what = "gifts, purchases, joins and leaves (`type` per row)" if default_type is None else path
    router.add_api_route(
        f"/rooms/{{room_id}}/{path}",
        endpoint,
        methods=["POST"],
        summary=f"Post room {path}",
        description=f"Body: a JSON array of {what}: `{{type, user_id, amount?, item_id?, event_id?, ts?}}`. "
        "Stored as tip / purchase / live_join / live_leave events (idempotent by event_id), then "
        "applied to the room's live metrics and pushed to its consoles.",
    )


for _path, _type in _EVENT_PATHS.items():
    _events_endpoint(_path, _type)


@router.get(
    "/rooms/{room_id}", summary="A room's live snapshot", dependencies=[Depends(require_scope("read"))]
)
async def room_snapshot(room_id: str, request: Request, n: int = Query(10, ge=1, le=100)) -> Any:
    try:
        return await get_service(request.app).snapshot(room_id, n)
    except RoomNotFound as exc:
        return _error(exc)


@router.post(
    "/rooms/{room_id}/end",
    summary="End a live room",
    description="Marks the live session ended, writes pending per-minute metrics and returns the room's "
    "record as this process saw it (how many comments, verdict counts, metrics per minute, highlights); "
    "the comments themselves, with their verdicts, are in `/rooms/{room_id}/stored/comments`.",
)
async def end_room(
    room_id: str, request: Request, principal: Annotated[Principal, Depends(require_scope("ingest"))]
) -> Any:
    try:
        rec = await get_service(request.app).end_room(room_id)
    except RoomNotFound as exc:
        return _error(exc)
    # the server keeps no comment list in memory (the store has them all): count them from the verdicts
    n = sum(int(v) for v in rec["verdicts"].values())
    return {k: v for k, v in rec.items() if k != "comments"} | {"comments": n}


@router.get(
    "/rooms/{room_id}/stored/comments",
    summary="Stored comments of a room, with verdicts",
    dependencies=[Depends(require_scope("read"))],
)
async def stored_comments(
    room_id: str,
    engine: EngineDep,
    after_ts: int | None = None,
    moderation: str | None = Query(None, pattern="^(pass|review|block)$"),
    limit: int = Query(1000, ge=1, le=10_000),
) -> dict[str, Any]:
    def q() -> list[dict[str, Any]]:
        stmt = select(Comment).where(Comment.room_id == room_id)
        if after_ts is not None:
            stmt = stmt.where(Comment.ts > after_ts)
        if moderation is not None:
            stmt = stmt.where(Comment.moderation == moderation)
        stmt = stmt.order_by(Comment.ts, Comment.id).limit(limit)
        from sqlalchemy.orm import Session

        with Session(engine) as s:
            return [
                {
                    "comment_id": c.id,
                    "ts": c.ts,
                    "user_id": c.user_id,
                    "text": c.text,
                    "offset_s": c.offset_s,
                    "moderation": c.moderation,
                    "category": c.category,
                    "matched": c.matched,
                    "sentiment": c.sentiment,
                    "sentiment_score": c.sentiment_score,
                    "is_question": c.is_question,
                    "keywords": c.keywords,
                }
                for c in s.scalars(stmt)
            ]

    rows = await run_in_threadpool(q)
    return {"room_id": room_id, "count": len(rows), "items": rows}


@router.get(
    "/rooms/{room_id}/stored/minutes",
    summary="Stored per-minute metrics of a room",
    dependencies=[Depends(require_scope("read"))],
)
async def stored_minutes(room_id: str, request: Request, engine: EngineDep) -> dict[str, Any]:
    svc = get_service(request.app)
    if room_id in svc.rooms:
        await svc.flush()
    cols = [c.name for c in RoomMinute.__table__.columns]

    def q() -> list[dict[str, Any]]:
        with engine.connect() as conn:
            res = conn.execute(
                select(RoomMinute.__table__)
                .where(RoomMinute.room_id == room_id)
                .order_by(RoomMinute.minute_ts)
            )
            return [dict(zip(cols, r, strict=True)) for r in res]

    rows = await run_in_threadpool(q)
    return {"room_id": room_id, "items": rows}


# ---------------------------------------------------------------------------------------------- stream
def _room_belongs_to(engine: Any, room_id: str, creator_id: str) -> bool:
    from sqlalchemy import select

    from knowcast.store.models import Item

    with engine.connect() as conn:
        owner = conn.execute(select(Item.creator_id).where(Item.id == room_id)).scalar()
    return owner == creator_id


def _ws_principal(ws: WebSocket, api_key: str | None) -> Principal | None:
    settings = ws.app.state.settings
    secret = api_key or ws.headers.get("x-api-key")
    auth = ws.headers.get("authorization")
    if not secret and auth and auth.lower().startswith("bearer "):
        secret = auth[7:].strip()
    if secret:
        with ws.app.state.store.sessions() as session:
            row = verify_api_key(session, secret)
            if row is None:
                return None
            return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes))
    web = getattr(ws.state, "principal", None)
    if web is not None:
        return web
    if not settings.auth_enabled:
        return Principal(key_id=None, name="local (auth off)", scopes=frozenset({"admin"}))
    return None


@router.websocket("/rooms/{room_id}/stream")
async def stream(
    ws: WebSocket,
    room_id: str,
    api_key: str | None = None,
    batch_ms: int = BATCH_MS,
    snapshot_s: float = SNAPSHOT_S,
) -> None:
    """The console stream: a snapshot on connect, coalesced comment batches, snapshots about once a second.

    Messages (JSON text): ``{"type": "snapshot", ...}``, ``{"type": "comments", "items": [...]}``,
    ``{"type": "events", "items": [...]}``, ``{"type": "ended"}``; see docs/live.md, "Serving rooms".
    """
    principal = await run_in_threadpool(_ws_principal, ws, api_key)
    await ws.accept()
    if principal is None or not principal.allows("read"):
        await ws.send_json(
            {"type": "error", "status": 401, "detail": "an API key with the read scope is needed"}
        )
        await ws.close(code=1008)
        return
    svc = get_service(ws.app)
    try:
        room = await svc.room(room_id)
    except RoomNotFound as exc:
        await ws.send_json({"type": "error", "status": 404, "detail": str(exc)})
        await ws.close(code=4404)
        return
    if principal.creator_id is not None and not await run_in_threadpool(
        _room_belongs_to, ws.app.state.store.engine, room_id, principal.creator_id
    ):
        # A creator's session sees only that creator's rooms (same rule as the dashboard pages).
        await ws.send_json({"type": "error", "status": 403, "detail": "this room belongs to another creator"})
        await ws.close(code=4403)
        return
    # Build the shared pipeline (lexicons, sentiment model) before the console goes live, so the first
    # comment after a restart is not the one that pays seconds of loading.
    await svc.warm_up()
    batch_s = min(max(batch_ms, 10), 1000) / 1000.0
    snapshot_s = min(max(snapshot_s, 0.2), 60.0)
    sub = svc.bus.subscribe(room_id)
    closed = asyncio.Event()

    async def reader() -> None:
        # Clients may send pings; we only need to notice when they go away.
        try:
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            closed.set()

    reader_task = asyncio.create_task(reader())
    try:
        await svc.bus.start()
        await ws.send_text(_dumps({"type": "snapshot", **svc.snapshot_sync(room)}))
        next_snap = time.monotonic() + snapshot_s
        while not closed.is_set():
            timeout = max(0.0, next_snap - time.monotonic())
            msg = await sub.get(timeout=min(timeout, 0.5))
            if msg is not None:
                comments: list[Any] = []
                events: list[Any] = []
                extra: list[dict[str, Any]] = []
                deadline = time.monotonic() + batch_s
                while True:
                    _collect(msg, comments, events, extra)
                    left = deadline - time.monotonic()
                    if left <= 0 or len(comments) >= 2000:
                        break
                    msg = await sub.get(timeout=left)
                    if msg is None:
                        break
                if comments:
                    await ws.send_text(_dumps({"type": "comments", "items": comments}))
                if events:
                    await ws.send_text(_dumps({"type": "events", "items": events}))
                for m in extra:
                    await ws.send_text(_dumps(m))
            if time.monotonic() >= next_snap:
                await ws.send_text(_dumps({"type": "snapshot", **svc.snapshot_sync(room)}))
                next_snap = time.monotonic() + snapshot_s
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()
        reader_task.cancel()
        with contextlib.suppress(BaseException):
            await reader_task
        with contextlib.suppress(Exception):
            await ws.close()


def _collect(
    msg: dict[str, Any], comments: list[Any], events: list[Any], extra: list[dict[str, Any]]
) -> None:
    kind = msg.get("type")
    if kind == "comments":
        comments.extend(msg.get("items") or [])
    elif kind == "events":
        events.extend(msg.get("items") or [])
    else:
        extra.append({k: v for k, v in msg.items() if k != "tokens"})


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)


__all__ = ["get_service", "router"]
