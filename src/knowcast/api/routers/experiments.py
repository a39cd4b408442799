"""Experiments: define (JSON or YAML), start / ramp / stop with an audit trail, assign users, read results."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import yaml
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from knowcast.api.deps import EngineDep, require_scope
from knowcast.api.security import Principal
from knowcast.experiments import service as svc
from knowcast.experiments.assignment import Assignment

router = APIRouter(prefix="/v1/experiments", tags=["experiments"])

Admin = Annotated[Principal, Depends(require_scope("admin"))]
Read = Annotated[Principal, Depends(require_scope("read"))]
T = TypeVar("T")

#: Query parameters of the assignment endpoint that are not user attributes.
_ASSIGN_PARAMS = frozenset({"user_id", "log_exposure"})
_SPEC_EXAMPLE = {
    "key": "cover_image_v2",
    "name": "Bold course cover",
    "layer": "course_page",
    "variants": [{"key": "control", "weight": 0.5}, {"key": "bold_title", "weight": 0.5}],
    "eligibility": {"channel": ["feed", "search"], "new_user": True},
    "decision_metric": "conversion",
    "guardrails": ["refund_rate"],
    "coverage": 0.1,
}


def _actor(p: Principal) -> str:
    return p.name if p.key_id is None else f"{p.name or 'key'} (key {p.key_id})"


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service call, turning its errors into 404 / 409 / 422 (naming the field)."""
    try:
        return fn(*args, **kwargs)
    except svc.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except svc.Conflict as exc:
        raise HTTPException(409, str(exc)) from None
    except svc.SpecError as exc:
        raise HTTPException(
            422, {"message": str(exc), "errors": [{"field": exc.field or "body", "message": str(exc)}]}
        ) from None


def _assignment(a: Assignment) -> dict[str, Any]:
    return {"experiment": a.experiment, "user_id": a.user_id, "variant": a.variant,
            "in_experiment": a.variant is not None, "reason": a.reason, "bucket": a.bucket}


@router.post(
    "",
    summary="Create an experiment (draft) from a JSON or YAML spec",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": _SPEC_EXAMPLE},
                "application/yaml": {"schema": {"type": "string"}},
            },
        }
    },
)
async def create(request: Request, principal: Admin, engine: EngineDep) -> dict[str, Any]:
    raw = await request.body()
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
            body: Any = yaml.safe_load(raw.decode("utf-8"))
        else:
            body = json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise HTTPException(
            422, {"message": f"body does not parse as {ctype}: {exc}", "errors": [{"field": "body",
                                                                                 "message": str(exc)}]}
        ) from None
    if not isinstance(body, dict):
        raise HTTPException(422, {"message": "the spec must be an object",
                                  "errors": [{"field": "body", "message": "expected an object"}]})
    spec = await run_in_threadpool(_call, svc.create_experiment, engine, body, _actor(principal))
    return spec.to_dict(audit=False)


@router.get("", summary="List experiments")
def list_(
    _: Read,
    engine: EngineDep,
    state: Annotated[Literal["draft", "running", "stopped"] | None, Query()] = None,
) -> dict[str, Any]:
    return {"experiments": _call(svc.list_experiments, engine, state)}


@router.get("/{key}", summary="One experiment's spec and state")
def get(key: str, _: Read, engine: EngineDep) -> dict[str, Any]:
    return _call(svc.experiment_dict, engine, key)


class UpdateRequest(BaseModel):
    changes: dict[str, Any] = Field(description="spec fields to change (frozen ones refused while running)")


@router.patch("/{key}", summary="Change fields of a draft (or unfrozen fields of a running experiment)")
def update(key: str, body: UpdateRequest, principal: Admin, engine: EngineDep) -> dict[str, Any]:
    return _call(svc.update_experiment, engine, key, body.changes, _actor(principal)).to_dict(audit=False)


@router.post("/{key}/start", summary="draft -> running")
def start(key: str, principal: Admin, engine: EngineDep) -> dict[str, Any]:
    return _call(svc.start_experiment, engine, key, _actor(principal)).to_dict(audit=False)


@router.post("/{key}/stop", summary="draft or running -> stopped")
def stop(key: str, principal: Admin, engine: EngineDep) -> dict[str, Any]:
    return _call(svc.stop_experiment, engine, key, _actor(principal)).to_dict(audit=False)


class RampRequest(BaseModel):
    coverage: float = Field(ge=0.0, le=1.0, description="share of eligible traffic in the experiment")


@router.post("/{key}/ramp", summary="Change coverage (only upwards while running: nobody moves)")
def ramp(
    key: str, principal: Admin, engine: EngineDep, body: Annotated[RampRequest, Body()]
) -> dict[str, Any]:
    return _call(svc.ramp_experiment, engine, key, body.coverage, _actor(principal)).to_dict(audit=False)


@router.get("/{key}/audit", summary="Every change: who, when, what")
def audit(key: str, _: Read, engine: EngineDep) -> dict[str, Any]:
    return {"experiment": key, "audit": _call(svc.audit_trail, engine, key)}


@router.get(
    "/{key}/assignment",
    summary="The variant a user sees (sticky); other query parameters are user attributes",
    description="Extra query parameters (channel=feed&country=CN&device=ios&new_user=true) are the user's "
    "attributes for eligibility; stored attributes and segments fill in what is not sent. "
    "log_exposure=true also logs the exposure event and needs the ingest scope.",
)
def assignment(
    key: str,
    request: Request,
    principal: Read,
    engine: EngineDep,
    user_id: Annotated[str, Query(min_length=1, max_length=128)],
    log_exposure: bool = False,
) -> dict[str, Any]:
    if log_exposure and not principal.allows("ingest"):
        raise HTTPException(403, "log_exposure=true writes an event: this API key lacks the 'ingest' scope")
    attrs = {k: svc.parse_attribute(v) for k, v in request.query_params.items() if k not in _ASSIGN_PARAMS}
    a = _call(svc.assign, engine, key, user_id, attrs, log=log_exposure)
    return {**_assignment(a), "logged": bool(log_exposure and a.variant is not None)}


@router.get("/{key}/results", summary="The report: effects, CIs, p-values, CUPED, SRM, guardrails, verdict")
def results(
    key: str,
    _: Read,
    engine: EngineDep,
    format: Annotated[Literal["json", "csv"], Query(description="json (default) or csv")] = "json",
    engine_name: Annotated[
        Literal["frequentist", "bayesian", "sequential"], Query(alias="engine")
    ] = "frequentist",
    alpha: Annotated[float, Query(gt=0, lt=0.5)] = 0.05,
    relative: Annotated[bool, Query(description="relative (default) or absolute effects")] = True,
    mde: Annotated[float, Query(gt=0, lt=10, description="relative minimum detectable effect")] = 0.05,
    cuped_days: Annotated[float, Query(ge=0, le=365, description="pre-period for CUPED; 0 = off")] = 14.0,
) -> Any:
    report = _call(svc.results, engine, key, engine_name=engine_name, alpha=alpha, relative=relative,
                   mde=mde, cuped_days=cuped_days)
    if format == "csv":
        return PlainTextResponse(
            svc.report_csv(report), media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{key}-results.csv"'},
        )
    return JSONResponse(report)
