"""API key administration (admin scope): create (secret shown once), list, revoke."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field
from sqlalchemy import select

from knowcast.api.deps import SessionDep, require_scope
from knowcast.api.security import create_api_key, revoke_api_key
from knowcast.store.models import ApiKey

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(require_scope("admin"))])


class KeyRequest(BaseModel):
    name: str = Field(default="", max_length=128)
    scopes: list[str] = Field(min_length=1, max_length=3)


def key_dict(k: ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "scopes": k.scopes,
        "created_at": k.created_at.isoformat() if k.created_at else None,
        "revoked": k.revoked_at is not None,
    }


@router.post("", summary="Create an API key; the secret is in this response only")
def create_key(body: KeyRequest, session: SessionDep) -> dict[str, Any]:
    try:
        row, secret = create_api_key(session, body.name, body.scopes)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return {**key_dict(row), "key": secret}


@router.get("", summary="List API keys (never their secrets)")
def list_keys(session: SessionDep) -> dict[str, Any]:
    return {"keys": [key_dict(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.id))]}


@router.delete("/{key_id}", summary="Revoke an API key")
def delete_key(key_id: Annotated[int, Path(ge=1, le=2**63 - 1)], session: SessionDep) -> dict[str, Any]:
    if not revoke_api_key(session, key_id):
        raise HTTPException(404, f"unknown key id {key_id}")
    return {"id": key_id, "revoked": True}
