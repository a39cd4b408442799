"""Users' data rights (PIPL / GDPR style): export everything about a user, erase it, expire old events.

Models are trained from the store, so what is erased here is gone from every model at its next training.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from sqlalchemy import Engine, delete, func, select

from knowcast.store.models import (
    AuditLog,
    Comment,
    Event,
    Exposure,
    SegmentMember,
    User,
    UserProfile,
)


class UnknownUser(LookupError):
    pass


def _rows(conn: Any, stmt: Any) -> list[dict[str, Any]]:
    out = []
    for row in conn.execute(stmt).mappings():
        out.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()})
    return out


def export_user(engine: Engine, user_id: str) -> dict[str, Any]:
    """Everything knowcast holds about one user, as JSON-able data."""
    with engine.connect() as conn:
        user = _rows(conn, select(User.__table__).where(User.id == user_id))
        if not user:
            raise UnknownUser(f"unknown user_id {user_id!r}")
        events = _rows(conn, select(Event.__table__).where(Event.user_id == user_id).order_by(Event.ts))
        for e in events:
            e["props"] = json.loads(e["props"]) if e.get("props") else None
        return {
            "user": user[0],
            "events": events,
            "comments": _rows(conn, select(Comment.__table__).where(Comment.user_id == user_id)),
            "exposures": _rows(conn, select(Exposure.__table__).where(Exposure.user_id == user_id)),
            "profile": (
                _rows(conn, select(UserProfile.__table__).where(UserProfile.user_id == user_id)) or [None]
            )[0],
            "segments": [
                r["segment_id"]
                for r in _rows(conn, select(SegmentMember.__table__).where(SegmentMember.user_id == user_id))
            ],
        }


def erase_user(engine: Engine, user_id: str, actor: str = "") -> dict[str, int]:
    """Delete a user and all their events, comments, exposures, profile and segment memberships, in one
    transaction, and leave an audit entry (with a hash of the id, not the id)."""
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        if conn.execute(select(func.count()).select_from(User).where(User.id == user_id)).scalar() == 0:
            raise UnknownUser(f"unknown user_id {user_id!r}")
        for name, model, col in (
            ("events", Event, Event.user_id),
            ("comments", Comment, Comment.user_id),
            ("exposures", Exposure, Exposure.user_id),
            ("profile", UserProfile, UserProfile.user_id),
            ("segment_memberships", SegmentMember, SegmentMember.user_id),
            ("user", User, User.id),
        ):
            counts[name] = conn.execute(delete(model).where(col == user_id)).rowcount or 0
        conn.execute(
            AuditLog.__table__.insert().values(
                actor=actor,
                action="user.erase",
                target=hashlib.sha256(user_id.encode()).hexdigest()[:16],
                detail=counts,
            )
        )
    return counts


def prune_events(engine: Engine, older_than_days: int, actor: str = "") -> int:
    """Delete raw events older than the retention period; returns how many were deleted."""
    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    cutoff = int(time.time() * 1000) - older_than_days * 86_400_000
    with engine.begin() as conn:
        n = conn.execute(delete(Event).where(Event.ts < cutoff)).rowcount or 0
        conn.execute(
            AuditLog.__table__.insert().values(
                actor=actor,
                action="events.prune",
                target="events",
                detail={"older_than_days": older_than_days, "deleted": n},
            )
        )
    return n
