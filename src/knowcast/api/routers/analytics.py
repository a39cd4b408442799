"""Analytics over HTTP (read scope): funnels, retention, attribution, revenue, creators, scores, advice.

Every report answers JSON, or CSV (its main table) with ``?format=csv``.
"""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from knowcast.api.deps import EngineDep, require_scope

#: Reports answer JSON, or CSV with ``?format=csv``; both are in the OpenAPI document.
CSV_OR_JSON: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}
router = APIRouter(
    prefix="/v1/analytics",
    tags=["analytics"],
    dependencies=[Depends(require_scope("read"))],
    responses=CSV_OR_JSON,
)
Format = Annotated[Literal["json", "csv"], Query(description="json (default) or csv")]
DAY_MS = 86_400_000


def _plain(obj: Any) -> Any:
    """DataFrames and NumPy values as JSON-able data."""
    if isinstance(obj, pd.DataFrame):
        return [{k: _plain(v) for k, v in r.items()} for r in obj.to_dict("records")]
    if isinstance(obj, pd.Series):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _respond(payload: Any, fmt: str, table: pd.DataFrame | None, name: str) -> Any:
    if fmt == "csv":
        if table is None:
            raise HTTPException(422, "query parameter 'format': this report has no single table; use json")
        buf = io.StringIO()
        table.to_csv(buf, index=False)
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return _plain(payload)


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(fn, *args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, str(exc)) from None


FUNNEL_EXAMPLE = {
    "steps": ["view", "click", "add_to_cart", {"type": "purchase", "item_kind": "course"}],
    "mode": "ordered",
    "window_days": 14,
    "breakdown": "channel",
}


@router.post("/funnel", summary="A funnel: conversion and drop-off per step, time to convert")
async def funnel(
    engine: EngineDep,
    spec: Annotated[dict[str, Any], Body(examples=[FUNNEL_EXAMPLE])],
    format: Format = "json",
) -> Any:
    from knowcast.analytics.funnel import FunnelSpec
    from knowcast.analytics.service import funnel as run

    allowed = {"steps", "mode", "window_days", "breakdown", "exclusions", "start_ms", "end_ms"}
    unknown = set(spec) - allowed
    if unknown:
        raise HTTPException(422, f"unknown field(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    try:
        days = float(spec.get("window_days", 14))
        fs = FunnelSpec(
            steps=tuple(spec.get("steps") or ()),
            mode=spec.get("mode", "ordered"),
            window_ms=int(days * DAY_MS),
            breakdown=spec.get("breakdown"),
            exclusions=tuple(spec.get("exclusions") or ()),
            start_ms=spec.get("start_ms"),
            end_ms=spec.get("end_ms"),
        )
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, str(exc)) from None
    result = await _call(run, engine, fs)
    return _respond(result.to_dict(), format, result.steps, "funnel")


@router.get("/retention", summary="Cohort retention table (first-time or recurring, by day or week)")
async def retention(
    engine: EngineDep,
    period: Literal["day", "week"] = "day",
    kind: Literal["first_time", "recurring"] = "first_time",
    max_offset: Annotated[int | None, Query(ge=1, le=365)] = None,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import retention as run

    result = await _call(run, engine, period=period, kind=kind, max_offset=max_offset)
    rates = result.rates.reset_index()
    rates.columns = [str(c) for c in rates.columns]
    return _respond({"kind": kind, **result.to_dict()}, format, rates, "retention")


@router.get("/stickiness", summary="Daily and monthly active users and DAU/MAU")
async def stickiness(engine: EngineDep, format: Format = "json") -> Any:
    from knowcast.analytics.service import stickiness as run

    table = await _call(run, engine)
    return _respond({"days": table}, format, table, "stickiness")


@router.get(
    "/attribution",
    summary="Channel attribution: first/last touch, linear, time decay, position, Markov, Shapley",
)
async def attribution(
    engine: EngineDep,
    lookback_days: Annotated[float, Query(gt=0, le=365)] = 30.0,
    half_life_days: Annotated[float, Query(gt=0, le=365)] = 7.0,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import channel_attribution as run

    out = await _call(run, engine, lookback_days=lookback_days, half_life_days=half_life_days)
    return _respond(out, format, out["channels"], "attribution")


@router.get(
    "/content-attribution", summary="Revenue and conversion credited to the videos and lives that promoted"
)
async def content_attribution(
    engine: EngineDep,
    lookback_days: Annotated[float, Query(gt=0, le=365)] = 14.0,
    model: Literal["linear", "last_touch", "first_touch"] = "linear",
    creator_id: str | None = None,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import content_attribution as run

    table = await _call(run, engine, lookback_days=lookback_days, model=model, creator_id=creator_id)
    return _respond({"promoters": table}, format, table, "content_attribution")


@router.get(
    "/revenue", summary="Revenue by stream (or creator, item, channel, day), refunds netted, ARPU/ARPPU"
)
async def revenue(
    engine: EngineDep,
    by: Literal["stream", "creator", "item", "channel", "day"] = "stream",
    cpm: Annotated[float, Query(ge=0, le=10_000)] = 10.0,
    creator_share: Annotated[float, Query(ge=0, le=1)] = 0.5,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import revenue as run

    out = await _call(run, engine, cpm=cpm, creator_share=creator_share, by=by)
    table = next((v for v in out.values() if isinstance(v, pd.DataFrame)), None)
    return _respond(out, format, table, "revenue")


@router.get("/subscriptions", summary="MRR, new, churned, churn rate, LTV from a survival estimate")
async def subscriptions(engine: EngineDep, format: Format = "json") -> Any:
    from knowcast.analytics.service import subscriptions as run

    out = await _call(run, engine)
    return _respond(out, format, out["months"], "subscriptions")


@router.get("/rfm", summary="RFM: recency, frequency, monetary, 1-5 scores and segment per customer")
async def rfm(engine: EngineDep, format: Format = "json") -> Any:
    from knowcast.analytics.service import rfm as run

    table = await _call(run, engine)
    return _respond({"customers": table}, format, table, "rfm")


@router.get("/cohort-revenue", summary="Revenue per first-purchase cohort and period since")
async def cohort_revenue(
    engine: EngineDep, period_days: Annotated[int, Query(ge=1, le=365)] = 30, format: Format = "json"
) -> Any:
    from knowcast.analytics.service import cohort_revenue as run

    table = await _call(run, engine, period_days=period_days)
    return _respond({"cohorts": table}, format, table, "cohort_revenue")


CreatorQ = Annotated[str | None, Query(max_length=128, description="one creator (default: all)")]


@router.get("/creators", summary="Per creator: views, reach, engagement, completion, followers, revenue, RPM")
async def creators(
    engine: EngineDep,
    creator_id: CreatorQ = None,
    lookback_days: Annotated[float, Query(gt=0, le=365)] = 14.0,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import creators as run

    table = await _call(run, engine, creator_id=creator_id, lookback_days=lookback_days)
    return _respond({"creators": table}, format, table, "creators")


@router.get(
    "/creators/pillars", summary="Content pillars: per creator and tag, items, views, engagement, revenue"
)
async def pillars(engine: EngineDep, creator_id: CreatorQ = None, format: Format = "json") -> Any:
    from knowcast.analytics.service import content_pillars as run

    table = await _call(run, engine, creator_id=creator_id)
    return _respond({"pillars": table}, format, table, "pillars")


@router.get("/creators/best-hours", summary="Best hours to post short videos and to go live")
async def best_hours(
    engine: EngineDep,
    creator_id: CreatorQ = None,
    top: Annotated[int, Query(ge=1, le=24)] = 3,
    offset_hours: Annotated[int, Query(ge=-12, le=14, description="8 = Beijing time")] = 8,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import best_hours as run

    table = await _call(run, engine, creator_id=creator_id, top=top, offset_hours=offset_hours)
    return _respond({"hours": table}, format, table, "best_hours")


@router.get(
    "/creators/sentiment", summary="Brand sentiment from comments over time, purchase-intent comments"
)
async def sentiment(
    engine: EngineDep,
    creator_id: CreatorQ = None,
    period_days: Annotated[int, Query(ge=1, le=365)] = 1,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import brand_sentiment as run

    table = await _call(run, engine, creator_id=creator_id, period_days=period_days)
    return _respond({"periods": table}, format, table, "sentiment")


@router.get("/creators/share-of-voice", summary="Each creator's share of the views of a topic's content")
async def share_of_voice(
    engine: EngineDep, topic: Annotated[str | None, Query(max_length=128)] = None, format: Format = "json"
) -> Any:
    from knowcast.analytics.service import share_of_voice as run

    table = await _call(run, engine, topic=topic)
    return _respond({"topics": table}, format, table, "share_of_voice")


@router.get("/creators/{creator_id}/audience", summary="A creator's audience: segments and interests")
async def audience(
    engine: EngineDep,
    creator_id: str,
    key: Annotated[str, Query(max_length=64, description="user attribute for the segments")] = "city_tier",
    part: Annotated[
        Literal["segments", "interests"], Query(description="the table CSV returns")
    ] = "segments",
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import audience as run

    out = await _call(run, engine, creator_id, key=key)
    return _respond(out, format, out[part], f"audience_{part}")


@router.get(
    "/commercial-value",
    summary="Commercial-value score per video and live from first-hour signals; AUC/Brier on a time split",
)
async def commercial_value(
    engine: EngineDep,
    creator_id: CreatorQ = None,
    window_minutes: Annotated[int, Query(ge=1, le=1440)] = 60,
    horizon_days: Annotated[float, Query(gt=0, le=90)] = 3.0,
    test_fraction: Annotated[float, Query(gt=0, lt=1)] = 0.3,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import commercial_value as run

    out = await _call(
        run, engine, creator_id=creator_id, window_minutes=window_minutes, horizon_days=horizon_days,
        lookback_days=horizon_days, test_fraction=test_fraction,
    )  # fmt: skip
    payload = {
        "evaluation": out["report"].to_dict(),
        "scorers": out["report"].summary(),
        "items": out["items"],
    }
    return _respond(payload, format, out["items"], "commercial_value")


@router.get(
    "/user-scores",
    summary="Churn or buy-propensity model (AUC/Brier on a time split) and the top-scored users as a segment",
)
async def user_scores(
    engine: EngineDep,
    target: Literal["churn", "buy"] = "churn",
    horizon_days: Annotated[int, Query(ge=1, le=90)] = 7,
    history_days: Annotated[int, Query(ge=1, le=365)] = 30,
    top: Annotated[int, Query(ge=1, le=100_000)] = 500,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import user_scores as run

    out = await _call(
        run, engine, target=target, horizon_days=horizon_days, history_days=history_days, top=top
    )
    payload = {
        "evaluation": out["report"].to_dict(),
        "scorers": out["report"].summary(),
        "segment": out["segment"],
    }
    return _respond(payload, format, out["segment"], f"{target}_segment")


@router.get("/advice/next-topics", summary="What to make next: topics with rising demand and little supply")
async def next_topics(
    engine: EngineDep,
    creator_id: CreatorQ = None,
    window_days: Annotated[int, Query(ge=1, le=180)] = 7,
    top: Annotated[int, Query(ge=1, le=200)] = 10,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import next_topics as run

    table = await _call(run, engine, creator_id=creator_id, window_days=window_days, top=top)
    return _respond({"topics": table}, format, table, "next_topics")


@router.get("/advice/promote-next", summary="The paid items to promote in the next live")
async def promote_next(
    engine: EngineDep,
    creator_id: CreatorQ = None,
    window_days: Annotated[int, Query(ge=1, le=180)] = 14,
    top: Annotated[int, Query(ge=1, le=200)] = 5,
    format: Format = "json",
) -> Any:
    from knowcast.analytics.service import promote_next as run

    table = await _call(run, engine, creator_id=creator_id, window_days=window_days, top=top)
    return _respond({"items": table}, format, table, "promote_next")
