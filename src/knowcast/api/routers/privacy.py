"""Users' data rights over HTTP (admin): export a user's data, erase a user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.concurrency import run_in_threadpool

from knowcast.api.deps import EngineDep, require_scope
from knowcast.api.security import Principal
from knowcast.services.privacy import UnknownUser, erase_user, export_user

router = APIRouter(prefix="/v1/users", tags=["privacy"])


@router.get("/{user_id}/export", summary="Everything stored about a user (data access request)")
async def export(
    user_id: str, engine: EngineDep, _: Principal = Depends(require_scope("admin"))
) -> dict[str, Any]:
    try:
        return await run_in_threadpool(export_user, engine, user_id)
    except UnknownUser as exc:
        raise HTTPException(404, str(exc)) from None


@router.delete("/{user_id}", summary="Erase a user and all their events, comments, exposures and profile")
async def erase(
    user_id: str, engine: EngineDep, who: Principal = Depends(require_scope("admin"))
) -> dict[str, Any]:
    try:
        counts = await run_in_threadpool(erase_user, engine, user_id, who.name)
    except UnknownUser as exc:
        raise HTTPException(404, str(exc)) from None
    return {"user_id": user_id, "erased": counts}
