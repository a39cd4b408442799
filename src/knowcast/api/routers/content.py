"""Content features of items: ``GET /v1/items/{id}/features`` and ``GET /v1/items/{id}/similar``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from knowcast.api.deps import EngineDep, require_scope
from knowcast.content import service as svc

router = APIRouter(prefix="/v1", tags=["content"], dependencies=[Depends(require_scope("read"))])


def _errors(exc: Exception, field: str = "query") -> HTTPException:
    if isinstance(exc, svc.NotFound):
        return HTTPException(404, str(exc))
    return HTTPException(422, {"message": str(exc), "errors": [{"field": field, "message": str(exc)}]})


@router.get("/items/{item_id}/features", summary="What content understanding learnt about an item")
async def get_features(
    item_id: str,
    engine: EngineDep,
    embedding: Annotated[bool, Query(description="include the embedding vector")] = False,
) -> dict[str, Any]:
    """Keywords, category, topics (with their words), embedding size, video features and transcript.

    ``tagged`` is false until ``knowcast content tag`` has run over the catalog.
    """
    try:
        return await run_in_threadpool(svc.item_features, engine, item_id, embedding)
    except (svc.NotFound, svc.ContentError) as exc:
        raise _errors(exc) from None


@router.get("/items/{item_id}/similar", summary="Items most similar: co-engagement, else content")
async def get_similar(
    item_id: str,
    engine: EngineDep,
    n: Annotated[int, Query(ge=1, le=100, description="how many")] = 10,
    kind: Annotated[str | None, Query(max_length=16, description="only items of this kind")] = None,
) -> dict[str, Any]:
    """Collaborative neighbours from the active recommendation model when there is one and the item has
    interactions (``source: collaborative``, ``model`` names the version); otherwise a weighted cosine over
    text embedding, tags + category, topics, creator and video features.

    ``source`` is then ``content`` when the catalog was tagged (``knowcast content tag``), else ``tags``
    (catalog tags and creators only).
    """
    if kind is not None:
        from knowcast.domain import ItemKind

        kinds = sorted(k.value for k in ItemKind)
        if kind not in kinds:
            raise HTTPException(422, {"message": f"unknown kind {kind!r}", "errors": [
                {"field": "query.kind", "message": f"expected one of {kinds}"}]})
    from knowcast.recommend import service as rec

    collaborative = await run_in_threadpool(rec.similar, engine, item_id, n, kind)
    if collaborative is not None:
        return collaborative
    try:
        return await run_in_threadpool(svc.similar_items, engine, item_id, n, kind)
    except (svc.NotFound, svc.ContentError) as exc:
        raise _errors(exc, "query.n") from None
