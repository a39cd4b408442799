"""Batch ingestion: POST a JSON array of rows; the same validation as ``knowcast import``.

The body is parsed with orjson straight into Python lists and dicts, without a pydantic model per row:
the rows' own checks (types, ranges, references, each naming the row and field) are the importer's,
which run vectorised on the whole batch. Only the shape (an array of objects) is checked here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from knowcast.api.deps import EngineDep, SettingsDep, require_scope
from knowcast.ingest.service import ImportRejected, import_records

router = APIRouter(prefix="/v1", tags=["ingest"])

ROWS_EXAMPLE = [
    {
        "event_id": "e-1",
        "type": "view",
        "ts": "2026-11-01T10:00:00Z",
        "user_id": "u1",
        "item_id": "v1",
        "watch_seconds": 31.5,
        "watch_ratio": 0.7,
        "channel": "feed",
        "device": "ios",
    }
]


#: The request body as documented (what FastAPI would derive from ``list[dict[str, Any]]``).
BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {"type": "object", "additionalProperties": True},
                    "examples": [ROWS_EXAMPLE],
                    "title": "Rows",
                }
            }
        },
    }
}


def parse_rows(body: bytes) -> list[dict[str, Any]]:
    """The body as a list of JSON objects, or a 422 in the shape of FastAPI's own validation errors."""
    try:
        rows = orjson.loads(body) if body else None
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"loc": ("body", exc.pos), "msg": f"JSON decode error: {exc.msg}", "type": "json_invalid"}]
        ) from None
    if body and isinstance(rows, list):
        bad = next((i for i, r in enumerate(rows) if type(r) is not dict), None)
        if bad is None:
            return rows
        loc: tuple[Any, ...] = ("body", bad)
        msg = "Input should be a valid dictionary"
    else:
        loc, msg = ("body",), "Field required" if not body else "Input should be a valid list"
    raise RequestValidationError([{"loc": loc, "msg": msg, "type": "list_type" if body else "missing"}])


async def _ingest(
    kind: str,
    rows: list[dict[str, Any]],
    engine: Any,
    settings: Any,
    dry_run: bool,
    on_error: str,
    create_missing: bool,
    pseudonymize: bool,
) -> dict[str, Any]:
    if len(rows) > settings.max_batch_rows:
        raise HTTPException(
            413, f"batch of {len(rows)} rows is over the limit of {settings.max_batch_rows} rows; split it"
        )
    if pseudonymize and not settings.pseudonym_key:
        raise HTTPException(400, "pseudonymize=true needs KNOWCAST_PSEUDONYM_KEY set on the server")
    try:
        report = await run_in_threadpool(
            import_records,
            engine,
            kind,
            rows,
            dry_run=dry_run,
            on_error=on_error,  # type: ignore[arg-type]
            create_missing=create_missing,
            pseudonym_key=settings.pseudonym_key if pseudonymize else None,
        )
    except ImportRejected as exc:
        raise HTTPException(
            422,
            {
                "message": f"{exc.report.error_count} invalid row(s); nothing was written",
                "errors": [e.as_dict() for e in exc.report.errors],
            },
        ) from None
    return report.as_dict()


def _endpoint(kind: str):  # type: ignore[no-untyped-def]
    async def endpoint(
        request: Request,
        engine: EngineDep,
        settings: SettingsDep,
        dry_run: bool = False,
        on_error: Annotated[Literal["abort", "skip"], Query()] = "abort",
        create_missing: bool = False,
        pseudonymize: bool = False,
    ) -> dict[str, Any]:
        rows = parse_rows(await request.body())
        return await _ingest(kind, rows, engine, settings, dry_run, on_error, create_missing, pseudonymize)

    endpoint.__name__ = f"ingest_{kind}"
    endpoint.__doc__ = (
        f"Ingest a batch of {kind} (a JSON array). Invalid rows → 422 listing each row (1-based) and field; "
        "nothing is written unless on_error=skip. Re-sending the same rows stores nothing twice."
    )
    return endpoint


for _kind in ("events", "users", "items", "comments", "creators"):
    router.add_api_route(
        f"/{_kind}",
        _endpoint(_kind),
        methods=["POST"],
        dependencies=[Depends(require_scope("ingest"))],
        summary=f"Ingest {_kind}",
        openapi_extra=BODY_SCHEMA,
    )
