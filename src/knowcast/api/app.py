"""The FastAPI application: ``create_app()`` (used by ``knowcast serve`` and ``uvicorn --factory``)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DataError, OperationalError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import knowcast
from knowcast.api.ratelimit import RateLimiter, RateLimitMiddleware
from knowcast.config import Settings, get_settings
from knowcast.store import Store

log = logging.getLogger("knowcast.api")

#: Routers in src/knowcast/api/routers, included when present (each area adds its own).
ROUTERS = (
    "ingest",
    "catalog",
    "privacy",
    "keys",
    "content",
    "profiles",
    "recommend",
    "live",
    "experiments",
    "analytics",
)


class BodySizeLimit:
    """413 for request bodies over the limit, whether or not the client sent Content-Length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._reject(send)
                return
        seen = 0
        rejected = started = False

        async def limited() -> Message:
            # Past the limit the app sees the client go away; whatever it answers is replaced by the 413.
            nonlocal seen, rejected
            if rejected:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    rejected = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded(message: Message) -> None:
            nonlocal started
            if rejected and not started:
                return
            started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not rejected or started:
                raise
        if rejected and not started:
            await self._reject(send)

    async def _reject(self, send: Send) -> None:
        body = (
            f'{{"detail":"request body is over the limit of {self.max_bytes} bytes; send smaller batches"}}'
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


#: The shape of every error body this API sends: FastAPI's default 422 schema (``detail`` as a list) is not
#: what our handlers return, so the OpenAPI document describes the real one (clients and fuzzers rely on it).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "description": "What went wrong, for a person: a message, or {message, errors} for invalid rows.",
            "anyOf": [{"type": "string"}, {"type": "object"}, {"type": "array"}],
        },
        "errors": {
            "type": "array",
            "items": {"type": "object"},
            "description": "One entry per invalid field ({field, message}).",
        },
        "retry_after": {"type": "integer", "description": "429 only: seconds to wait."},
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/HTTPValidationError"}
_ERROR_STATUSES = {
    "401": "Missing, invalid or revoked API key",
    "403": "The API key lacks the scope this route needs",
    "413": "Request body or batch over the limit",
    "429": "Rate limit exceeded; see the Retry-After header",
    "503": "Database unavailable; retry shortly",
}


def _document_errors(app: FastAPI) -> None:
    """Make ``app.openapi()`` describe the error bodies the API really sends, on every operation."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema and app.openapi_schema.get("x-errors-documented"):
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = ERROR_SCHEMA
        for item in schema.get("paths", {}).values():
            for op in item.values():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                wanted = ["503"]
                if op.get("security"):
                    wanted += ["401", "403", "429"]
                if "requestBody" in op:
                    wanted += ["413", "422"]
                for code in wanted:
                    desc = _ERROR_STATUSES.get(code, "Invalid request")
                    op["responses"].setdefault(
                        code, {"description": desc, "content": {"application/json": {"schema": _ERROR_REF}}}
                    )
        schema["x-errors-documented"] = True
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


#: glibc's mallopt parameter for the most malloc arenas (M_ARENA_MAX in malloc.h).
_M_ARENA_MAX = -8


def limit_malloc_arenas(n: int | None = None) -> bool:
    """Cap glibc's malloc arenas for this process (``KNOWCAST_MALLOC_ARENAS``, default 2; 0 leaves it).

    Why: each thread-pool thread that allocates gets an arena of its own (up to 8 per core), and a
    server's heap then grows by fragmentation across them (benchmarks/load.py: +22% heap in 5 minutes at
    80 requests/s with glibc's default, +7% in 3 minutes with 2). True when the cap was set (Linux, glibc)."""
    if n is None:
        n = int(os.environ.get("KNOWCAST_MALLOC_ARENAS", "2"))
    if n <= 0 or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, n))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    settings = settings or get_settings()
    limit_malloc_arenas()
    limiter = RateLimiter.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        if store is None:
            app.state.store = Store(settings.database_url).migrate()
        rewarmer = None
        if settings.rewarm_seconds > 0:
            try:
                from knowcast.web.rewarm import Rewarmer
            except ModuleNotFoundError:
                Rewarmer = None  # noqa: N806 - the dashboard is not installed
            if Rewarmer is not None:
                rewarmer = Rewarmer(app.state.store.engine, settings.rewarm_seconds).start()
        yield
        if rewarmer is not None:
            rewarmer.stop()
        live = getattr(app.state, "live_service", None)
        if live is not None:
            await live.close()
        if limiter is not None:
            await limiter.aclose()
        if store is None:
            app.state.store.dispose()

    app = FastAPI(
        title="knowcast",
        version=knowcast.__version__,
        description="Growth engine for knowledge-commerce: ingest, content, recommendations, live rooms, "
        "experiments and analytics. Authenticate with `Authorization: Bearer <API key>`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    if store is not None:
        app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            errors.append({"field": ".".join(loc), "message": e.get("msg", "")})
        return JSONResponse({"detail": "invalid request", "errors": errors}, status_code=422)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig)
        return JSONResponse(
            {"detail": "database unavailable; retry shortly"}, status_code=503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried (out of range, wrong type): the caller's fault.
        log.info("%s %s: database refused a value: %s", request.method, request.url.path, exc.orig)
        return JSONResponse({"detail": "a value in the request is out of range or of the wrong type"}, 422)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        log.info("%s %s: number out of range: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": "a number in the request is out of range"}, status_code=422)

    @app.get("/healthz", tags=["ops"], summary="Liveness and database check")
    def healthz() -> dict[str, Any]:
        with app.state.store.engine.connect() as c:
            c.execute(text("SELECT 1"))
        # worker: which process answered (several uvicorn workers share one port; see docs/operations.md)
        out = {
            "status": "ok",
            "version": knowcast.__version__,
            "database": app.state.store.dialect,
            "worker": os.getpid(),
        }
        live = getattr(app.state, "live_service", None)
        if live is not None:  # "redis", "inprocess", or "inprocess (redis unavailable)" after a fallback
            out["live_bus"] = live.bus.kind
        return out

    for name in ROUTERS:
        try:
            module = importlib.import_module(f"knowcast.api.routers.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"knowcast.api.routers.{name}":
                continue
            raise
        app.include_router(module.router)
    try:
        from knowcast.web.app import mount_web
    except ModuleNotFoundError:
        mount_web = None
    if mount_web is not None:
        mount_web(app)
    else:
        from fastapi.responses import HTMLResponse

        @app.get("/", include_in_schema=False)
        def index() -> HTMLResponse:
            return HTMLResponse("<h1>knowcast</h1><p>API docs at <a href='/docs'>/docs</a>.</p>")

    _document_errors(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.state.rate_limiter = limiter
    if limiter is not None:  # outermost: a flood is refused before anything else runs
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return app
