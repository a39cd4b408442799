"""User profiles and segments: ``/v1/users/{id}/profile``, ``/v1/segments`` (list, one, members, create)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from knowcast.api.deps import EngineDep, require_scope
from knowcast.profiles import service as svc

router = APIRouter(prefix="/v1", tags=["profiles"])
Read = Depends(require_scope("read"))
Admin = Depends(require_scope("admin"))

_RULE_EXAMPLE = {
    "all": [
        {"event": "purchase", "item_kind": "course", "within_days": 30},
        {"event": "live_join"},
    ]
}


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, examples=["course buyers who watch lives"])
    rule: dict[str, Any] = Field(examples=[_RULE_EXAMPLE])
    description: str = Field(default="", max_length=2000)
    replace: bool = Field(default=False, description="replace a rule segment of the same name")


async def _call(fn, *args: Any) -> Any:  # type: ignore[no-untyped-def]
    """Service errors as HTTP: 404 unknown, 409 name taken, 422 naming the field."""
    try:
        return await run_in_threadpool(fn, *args)
    except svc.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except svc.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except svc.RuleError as exc:
        field = f"body.{exc.field}"
        detail = {"message": str(exc), "errors": [{"field": field, "message": str(exc)}]}
        raise HTTPException(422, detail) from None


@router.get("/users/{user_id}/profile", summary="A user's profile (applies the user's newest events first)",
            dependencies=[Read])
async def get_profile(
    user_id: str, engine: EngineDep, top: Annotated[int, Query(ge=1, le=100)] = 10
) -> dict[str, Any]:
    """Interests (top tags with weights, decayed to now), activity, RFM, channels, hours, device, segment.

    Events ingested since the profile was last written are applied first (no rebuild), so the answer
    reflects what the user did a moment ago; ``applied_events`` says how many.
    """
    return await _call(svc.get_profile, engine, user_id, top)


@router.post("/profiles/update", summary="Apply all events newer than the watermark", dependencies=[Admin])
async def update_profiles(engine: EngineDep) -> dict[str, Any]:
    rep = await _call(svc.update_profiles, engine)
    return rep.__dict__


@router.get("/segments", summary="Segments with sizes and descriptions", dependencies=[Read])
async def list_segments(engine: EngineDep) -> dict[str, Any]:
    segs = await _call(svc.list_segments, engine)
    return {"segments": segs, "count": len(segs)}


@router.get("/segments/{segment_id}", summary="A segment and the profile of its members", dependencies=[Read])
async def get_segment(segment_id: str, engine: EngineDep) -> dict[str, Any]:
    return await _call(svc.get_segment, engine, segment_id)


@router.get("/segments/{segment_id}/members", summary="Members of a segment (paged)", dependencies=[Read])
async def segment_members(
    segment_id: str,
    engine: EngineDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    return await _call(svc.segment_members, engine, segment_id, limit, offset)


@router.post("/segments", status_code=201, summary="Create a rule segment (materialised now)",
             dependencies=[Admin])
async def create_segment(body: SegmentIn, engine: EngineDep) -> dict[str, Any]:
    """Rule conditions: ``event`` (type or list; ``within_days``, ``item_kind``, ``channel``, ``min_count``)
    and ``profile`` (``column``, ``op``, ``value``), combined with ``all`` / ``any`` / ``not``. Example::

        {"name": "course buyers who watch lives",
         "rule": {"all": [{"event": "purchase", "item_kind": "course", "within_days": 30},
                          {"event": "live_join"}]}}
    """
    return await _call(svc.create_rule_segment, engine, body.name, body.rule, body.description, body.replace)
