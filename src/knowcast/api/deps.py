"""Shared FastAPI dependencies: settings, the store, a DB session per request, and scope checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from knowcast.api.security import Principal, verify_api_key
from knowcast.config import Settings
from knowcast.store import Store

ANONYMOUS_ADMIN = Principal(key_id=None, name="local (auth off)", scopes=frozenset({"admin"}))


# The cheap dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in the thread pool, a
# hand-off that costs more than the attribute read itself, on every request.


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_engine(request: Request) -> Engine:
    return request.app.state.store.engine


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, committed when the handler returns, rolled back on error."""
    session = request.app.state.store.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# Declared as security schemes (not plain headers) so the OpenAPI document lists them under
# securitySchemes, /docs offers "Authorize", and fuzzers know these are credentials.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <API key>`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the API key itself")


async def get_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    x_api_key: Annotated[str | None, Security(_api_key_header)] = None,
) -> Principal:
    settings: Settings = request.app.state.settings
    secret = x_api_key
    if bearer is not None and bearer.scheme.lower() == "bearer":
        secret = bearer.credentials.strip()
    if not secret:
        # Dashboard sessions carry their principal in the signed cookie (set by the web layer).
        web = getattr(request.state, "principal", None)
        if web is not None:
            return web
        if not settings.auth_enabled:
            return ANONYMOUS_ADMIN
        raise HTTPException(
            401,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await run_in_threadpool(_principal_for_key, request.app.state.store, secret)  # a DB read
    if principal is None:
        raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    request.state.principal = principal
    return principal


def _principal_for_key(store: Store, secret: str) -> Principal | None:
    with store.sessions() as session:
        row = verify_api_key(session, secret)
        if row is None:
            return None
        return Principal(key_id=row.id, name=row.name, scopes=frozenset(row.scopes))


def require_scope(scope: str) -> Callable[..., Principal]:
    """Dependency factory: 403 unless the caller's key has ``scope`` (or admin).

    A creator's dashboard session is refused on every API route: the /v1 API answers for the whole catalog,
    and a creator may only see their own items, rooms and revenue, which the dashboard pages filter for them.
    """

    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.creator_id is not None:
            raise HTTPException(
                403, "creator accounts see their own data in the dashboard; the /v1 API needs an API key"
            )
        if not principal.allows(scope):
            raise HTTPException(403, f"this API key lacks the '{scope}' scope")
        return principal

    check.required_scope = scope  # type: ignore[attr-defined]  # read by the authorization-matrix tests
    return check


SessionDep = Annotated[Session, Depends(get_session)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ReadScope = Depends(require_scope("read"))
IngestScope = Depends(require_scope("ingest"))
AdminScope = Depends(require_scope("admin"))
