"""Recommendations: ``GET /v1/users/{id}/recommendations``, model versions, rollback and the blocked list.

Thin: parse, call :mod:`knowcast.recommend.service` in the thread pool, render. ``/v1/items/{id}/similar``
lives in the content router, which asks the active model for collaborative neighbours first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from knowcast.api.deps import EngineDep, require_scope
from knowcast.recommend import service as svc

router = APIRouter(prefix="/v1", tags=["recommend"])
Read = Depends(require_scope("read"))
Admin = Depends(require_scope("admin"))

NameQuery = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


async def _call(fn, *args: Any, **kwargs: Any) -> Any:  # type: ignore[no-untyped-def]
    """Service errors as HTTP: 404 unknown, 409 no model yet, 422 naming the field."""
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except svc.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except svc.ModelUnavailable as exc:
        raise HTTPException(409, str(exc)) from None
    except svc.RecommendError as exc:
        detail = {"message": str(exc), "errors": [{"field": f"query.{exc.field}", "message": str(exc)}]}
        raise HTTPException(422, detail) from None


@router.get(
    "/users/{user_id}/recommendations",
    summary="What this user should see next (feed, live rooms or the next course), with reasons",
    dependencies=[Read],
    response_model=None,
    response_class=JSONResponse,
)
async def get_recommendations(
    user_id: str,
    engine: EngineDep,
    n: Annotated[int, Query(ge=1, le=100, description="how many items")] = 10,
    surface: Annotated[
        Literal["feed", "live", "next_course"], Query(description="feed, live or next_course")
    ] = "feed",
    model: NameQuery = "default",
) -> Response:
    """Scored by the active model from the user's events so far (an item watched a moment ago is gone from
    the feed, a course bought is never offered), then ranked by the surface's rules: kinds, blocked items
    and creators, live rooms boosted, paid cards spaced, MMR diversity, a cap per creator. Every item has
    a ``reason`` (and a stable ``reason_code``). A user with no events gets the cold-start list
    (``cold_start: true``): onboarding interests, their segment's popular items or what is popular now.
    409 when no model has been trained yet (``knowcast train``).
    """
    # the service returns plain JSON types: skip FastAPI's generic encoder on the hot path, and let orjson
    # write the bytes (several times faster than the standard library for a page of items)
    page = await _call(svc.recommend, engine, user_id, n, surface, model)
    return Response(orjson.dumps(page), media_type="application/json")


@router.get("/recommend/models", summary="Stored model versions and which one is served", dependencies=[Read])
async def list_models(
    engine: EngineDep, name: Annotated[str | None, Query(max_length=64)] = None
) -> dict[str, Any]:
    models = await _call(svc.list_models, engine, name)
    return {"models": models, "count": len(models)}


class TrainIn(BaseModel):
    algorithm: str = Field(
        min_length=1, max_length=32, examples=["auto"], description="auto, als, ease, item_knn, ..."
    )
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"factors": 64}])
    name: str = Field(default="default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    validate_holdout: bool = Field(default=True, description="measure on a 10% hold-out first")


@router.post(
    "/recommend/train", status_code=201, summary="Train and activate a new version", dependencies=[Admin]
)
async def train(body: TrainIn, engine: EngineDep) -> dict[str, Any]:
    """Runs in the request (seconds for the demo, about a minute for a million interactions); every API
    process serves the new version within a few seconds, without a restart."""
    report = await _call(
        svc.train, engine, body.algorithm, body.params, body.name, validate=body.validate_holdout
    )
    return report.as_dict()


class ActivateIn(BaseModel):
    version: int = Field(ge=1, description="the version to serve")


@router.post("/recommend/models/{name}/activate", summary="Serve a given version", dependencies=[Admin])
async def activate(name: str, body: ActivateIn, engine: EngineDep) -> dict[str, Any]:
    return await _call(svc.activate, engine, name, body.version)


@router.post(
    "/recommend/models/{name}/rollback",
    summary="Serve the version before the active one",
    dependencies=[Admin],
)
async def rollback(name: str, engine: EngineDep) -> dict[str, Any]:
    return await _call(svc.rollback, engine, name)


class BlockedIn(BaseModel):
    items: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)
    creators: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list)
    unblock: bool = Field(default=False, description="remove these instead of adding them")
    replace: bool = Field(default=False, description="replace the whole list with these")


@router.get("/recommend/blocked", summary="Items and creators never recommended", dependencies=[Admin])
async def get_blocked(engine: EngineDep) -> dict[str, Any]:
    return await _call(svc.get_blocked, engine)


@router.post("/recommend/blocked", summary="Block (or unblock) items and creators", dependencies=[Admin])
async def set_blocked(body: BlockedIn, engine: EngineDep) -> dict[str, Any]:
    """Takes effect in this process at once and in every other API process within a few seconds."""
    if not body.items and not body.creators and not body.replace:
        raise HTTPException(
            422,
            {"message": "give items or creators", "errors": [{"field": "body.items", "message": "empty"}]},
        )
    return await _call(
        svc.set_blocked, engine, body.items, body.creators, unblock=body.unblock, replace=body.replace
    )
