"""Read endpoints: users, creators, items, events (paged, filterable)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy import and_, or_, select

from knowcast.api.deps import SessionDep, require_scope
from knowcast.domain import EVENT_TYPES
from knowcast.ingest.validate import parse_timestamps
from knowcast.store.models import Creator, Event, Item, LiveSession, Promotes, User

router = APIRouter(prefix="/v1", tags=["read"], dependencies=[Depends(require_scope("read"))])

Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt else None


def user_dict(u: User) -> dict[str, Any]:
    return {"user_id": u.id, "created_at": _iso(u.created_at), "attributes": u.attributes}


def creator_dict(c: Creator) -> dict[str, Any]:
    return {"creator_id": c.id, "name": c.name, "topics": c.topics, "created_at": _iso(c.created_at)}


def item_dict(i: Item) -> dict[str, Any]:
    return {
        "item_id": i.id,
        "kind": i.kind,
        "title": i.title,
        "description": i.description,
        "tags": i.tags,
        "creator_id": i.creator_id,
        "price": i.price,
        "currency": i.currency,
        "duration_s": i.duration_s,
        "created_at": _iso(i.created_at),
    }


def event_dict(e: Event) -> dict[str, Any]:
    return {
        "event_id": e.id,
        "type": e.type,
        "ts": e.ts,
        "time": datetime.utcfromtimestamp(e.ts / 1000).isoformat() + "Z",
        "user_id": e.user_id,
        "item_id": e.item_id,
        "watch_seconds": e.watch_seconds,
        "watch_ratio": e.watch_ratio,
        "amount": e.amount,
        "currency": e.currency,
        "channel": e.channel,
        "source": e.source,
        "experiment": e.experiment,
        "variant": e.variant,
        "device": e.device,
        "room_id": e.room_id,
        "props": json.loads(e.props) if e.props else None,
    }


@router.get("/users", summary="List users")
def list_users(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    rows = session.scalars(select(User).order_by(User.id).limit(limit).offset(offset)).all()
    return {"users": [user_dict(u) for u in rows], "limit": limit, "offset": offset}


@router.get("/users/{user_id}", summary="One user")
def get_user(user_id: str, session: SessionDep) -> dict[str, Any]:
    u = session.get(User, user_id)
    if u is None:
        raise HTTPException(404, f"unknown user_id {user_id!r}")
    return user_dict(u)


@router.get("/creators", summary="List creators")
def list_creators(session: SessionDep, limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
    rows = session.scalars(select(Creator).order_by(Creator.id).limit(limit).offset(offset)).all()
    return {"creators": [creator_dict(c) for c in rows], "limit": limit, "offset": offset}


@router.get("/creators/{creator_id}", summary="One creator")
def get_creator(creator_id: str, session: SessionDep) -> dict[str, Any]:
    c = session.get(Creator, creator_id)
    if c is None:
        raise HTTPException(404, f"unknown creator_id {creator_id!r}")
    return creator_dict(c)


@router.get("/items", summary="List items, filtered by kind, creator or title text")
def list_items(
    session: SessionDep,
    kind: str | None = None,
    creator_id: str | None = None,
    q: Annotated[str | None, Query(max_length=200, description="substring of the title")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    stmt = select(Item).order_by(Item.id)
    if kind:
        stmt = stmt.where(Item.kind == kind)
    if creator_id:
        stmt = stmt.where(Item.creator_id == creator_id)
    if q:
        stmt = stmt.where(Item.title.contains(q, autoescape=True))
    rows = session.scalars(stmt.limit(limit).offset(offset)).all()
    return {"items": [item_dict(i) for i in rows], "limit": limit, "offset": offset}


@router.get("/items/{item_id}", summary="One item, with what it promotes and what promotes it")
def get_item(item_id: str, session: SessionDep) -> dict[str, Any]:
    i = session.get(Item, item_id)
    if i is None:
        raise HTTPException(404, f"unknown item_id {item_id!r}")
    out = item_dict(i)
    out["promotes"] = list(session.scalars(select(Promotes.item_id).where(Promotes.promoter_id == item_id)))
    out["promoted_by"] = list(
        session.scalars(select(Promotes.promoter_id).where(Promotes.item_id == item_id))
    )
    if i.kind == "live":
        ls = session.get(LiveSession, item_id)
        if ls is not None:
            out["live"] = {
                "state": ls.state,
                "scheduled_start": _iso(ls.scheduled_start),
                "started_at": _iso(ls.started_at),
                "ended_at": _iso(ls.ended_at),
            }
    return out


def _ts_param(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    import pandas as pd

    ts, bad = parse_timestamps(pd.Series([value], dtype=object))
    if bad[0]:
        raise HTTPException(
            422, f"query parameter '{name}': expected ISO 8601 or epoch seconds/ms, got {value!r}"
        )
    return int(ts[0])


def _cursor_decode(cursor: str) -> tuple[int, str]:
    try:
        ts, eid = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        return int(ts), str(eid)
    except Exception:  # noqa: BLE001 - any garbage is the caller's mistake
        raise HTTPException(422, "query parameter 'cursor': not a cursor returned by this endpoint") from None


@router.get(
    "/events", summary="Events, newest first, filterable by time, type, user and item (keyset paging)"
)
def list_events(
    session: SessionDep,
    type: Annotated[str | None, Query(description="event type")] = None,
    user_id: str | None = None,
    item_id: str | None = None,
    since: Annotated[str | None, Query(description="ISO 8601 or epoch; inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 or epoch; exclusive")] = None,
    limit: Limit = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    stmt = select(Event)
    if type is not None:
        if type not in EVENT_TYPES:
            raise HTTPException(422, f"query parameter 'type': unknown event type {type!r}")
        stmt = stmt.where(Event.type == type)
    if user_id:
        stmt = stmt.where(Event.user_id == user_id)
    if item_id:
        stmt = stmt.where(Event.item_id == item_id)
    lo, hi = _ts_param(since, "since"), _ts_param(until, "until")
    if lo is not None:
        stmt = stmt.where(Event.ts >= lo)
    if hi is not None:
        stmt = stmt.where(Event.ts < hi)
    if cursor:
        cts, cid = _cursor_decode(cursor)
        stmt = stmt.where(or_(Event.ts < cts, and_(Event.ts == cts, Event.id < cid)))
    rows = session.scalars(stmt.order_by(Event.ts.desc(), Event.id.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = None
    if more and rows:
        last = rows[-1]
        nxt = base64.urlsafe_b64encode(json.dumps([last.ts, last.id]).encode()).decode()
    return {"events": [event_dict(e) for e in rows], "next_cursor": nxt}
