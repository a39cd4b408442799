"""The web dashboard: server-rendered pages mounted on the API app (``mount_web(app)``).

Pieces:
- a pure ASGI middleware reads the signed session cookie (itsdangerous) for HTTP *and* WebSocket requests
  and sets ``request.state.account`` and ``request.state.principal``, so the API's own dependencies accept a
  signed-in browser; unsafe API calls made with the cookie alone must carry the CSRF token (header
  ``X-CSRF-Token``), and every dashboard form carries it as a hidden field;
- anonymous visitors get a double-submit CSRF cookie (``kc_csrf``) for the sign-in form;
- pages live in ``pages.py`` and ``pages_ops.py``; SQL aggregates in ``queries.py``; charts in ``charts.py``.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import time
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from knowcast.web.accounts import AccountInfo, authenticate
from knowcast.web.i18n import LANGS, translate

HERE = Path(__file__).parent
SESSION_COOKIE = "kc_session"
CSRF_COOKIE = "kc_csrf"
SESSION_MAX_AGE = 12 * 3600
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=jinja2.select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["tojson_attr"] = lambda v: json.dumps(v, ensure_ascii=False)


def _fmt_num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f"{f:,.{digits}f}"


def _fmt_pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{float(v) * 100:.{digits}f}%"


_env.filters["num"] = _fmt_num
_env.filters["pct"] = _fmt_pct
_env.filters["urlq"] = lambda v: quote(str(v), safe="")


# ----------------------------------------------------------------------------- errors raised by pages
class LoginRequired(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class NotFound(Exception):
    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


# ----------------------------------------------------------------------------- secret and sessions
def _secret(app: Any) -> str:
    """The signing secret: KNOWCAST_SECRET_KEY, else one generated once and kept in the store's kv table
    (so several workers and restarts agree)."""
    cached = getattr(app.state, "web_secret", None)
    if cached:
        return cached
    secret = os.environ.get("KNOWCAST_SECRET_KEY")
    if not secret:
        from knowcast.store.models import KeyValue

        with app.state.store.sessions() as s:
            row = s.get(KeyValue, "web.secret")
            if row is None:
                row = KeyValue(key="web.secret", value={"secret": secrets.token_urlsafe(32)})
                s.add(row)
                try:
                    s.commit()
                except Exception:  # another worker won the race: read theirs
                    s.rollback()
                    row = s.get(KeyValue, "web.secret")
            secret = row.value["secret"]  # type: ignore[union-attr]
    app.state.web_secret = secret
    return secret


def _serializer(app: Any) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(app), salt="knowcast.web.session")


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:
                continue
    return {k: m.value for k, m in jar.items()}


def _header(scope: Scope, key: bytes) -> str | None:
    for name, value in scope.get("headers", []):
        if name == key:
            return value.decode("latin-1")
    return None


def _is_https(scope: Scope) -> bool:
    proto = _header(scope, b"x-forwarded-proto")
    return scope.get("scheme") in ("https", "wss") or proto == "https"


def cookie_header(
    name: str, value: str, scope: Scope, max_age: int | None = None, http_only: bool = True
) -> str:
    parts = [f"{name}={value}", "Path=/", "SameSite=Lax"]
    if http_only:
        parts.append("HttpOnly")
    if _is_https(scope):
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


class ServerTimingMiddleware:
    """A ``Server-Timing`` header on dashboard pages: ``app`` (wall ms inside the app) and ``cpu`` (process
    CPU ms over the same span; with one request at a time, this request's CPU, which stays meaningful on a
    loaded machine). Plain ASGI, and API and static paths pass straight through: a ``BaseHTTPMiddleware``
    costs every API request a task and a stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(("/static", "/v1")):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        cpu0 = time.process_time()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                timing = (
                    f"app;dur={(time.perf_counter() - t0) * 1000:.1f}, "
                    f"cpu;dur={(time.process_time() - cpu0) * 1000:.1f}"
                )
                message["headers"] = [*message.get("headers", []), (b"server-timing", timing.encode())]
            await send(message)

        await self.app(scope, receive, send_timed)


class WebSessionMiddleware:
    """Signed-cookie sessions for HTTP and WebSocket requests (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        state = scope.setdefault("state", {})
        account: AccountInfo | None = None
        csrf = None
        raw = cookies.get(SESSION_COOKIE)
        if raw:
            try:
                data = _serializer(scope["app"]).loads(raw, max_age=SESSION_MAX_AGE)
                account = AccountInfo(data["u"], data["r"], data.get("c"))
                csrf = data["x"]
            except (BadSignature, KeyError, TypeError, ValueError):
                account = None
        new_anon = None
        if account is None:
            csrf = cookies.get(CSRF_COOKIE)
            if (not csrf or len(csrf) < 20) and not scope.get("path", "").startswith("/v1/"):
                # Only pages need the sign-in form's token; API calls by key get no cookie to carry.
                csrf = new_anon = secrets.token_urlsafe(24)
        state["account"] = account
        state["csrf"] = csrf
        if account is not None:
            from knowcast.api.security import Principal

            state["principal"] = Principal(
                key_id=None,
                name=f"web:{account.username}",
                scopes=frozenset({"admin"} if account.is_admin else {"read"}),
                creator_id=account.creator_id,
            )
            # API writes authorised only by the cookie must prove they come from our pages.
            path = scope.get("path", "")
            if (
                scope["type"] == "http"
                and scope.get("method") in _UNSAFE
                and path.startswith("/v1/")
                and not _header(scope, b"authorization")
                and not _header(scope, b"x-api-key")
            ):
                sent = _header(scope, b"x-csrf-token") or ""
                if not hmac.compare_digest(sent, csrf or ""):
                    await _send_json(
                        send, 403, {"detail": "missing or wrong X-CSRF-Token for a cookie session"}
                    )
                    return
        if new_anon is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        set_cookie = cookie_header(CSRF_COOKIE, new_anon, scope).encode()

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"set-cookie", set_cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


# ----------------------------------------------------------------------------- helpers for pages
def account_of(request: Request) -> AccountInfo | None:
    return getattr(request.state, "account", None)


def require(request: Request, *roles: str) -> AccountInfo:
    """The signed-in account, or a redirect to sign in; 403 unless its role is in ``roles`` (any if none)."""
    acct = account_of(request)
    if acct is None:
        raise LoginRequired()
    if roles and acct.role not in roles:
        raise Forbidden(f"this page needs the {' or '.join(roles)} role; you are signed in as {acct.role}")
    return acct


def own_creator(acct: AccountInfo, creator_id: str | None) -> None:
    """403 when a creator account looks at another creator's data."""
    if acct.is_creator and creator_id != acct.creator_id:
        raise Forbidden("a creator account can only open its own items, rooms and revenue")


def check_csrf(request: Request, token: str | None) -> None:
    expected = getattr(request.state, "csrf", None) or ""
    sent = token or request.headers.get("x-csrf-token") or ""
    if not expected or not hmac.compare_digest(sent, expected):
        raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")


def lang_of(request: Request) -> str:
    lang = request.cookies.get("kc_lang")
    if lang in LANGS:
        return lang
    accept = request.headers.get("accept-language", "")
    return "zh" if accept.lower().startswith("zh") else "en"


def tz_offset_min(request: Request) -> int:
    """The viewer's UTC offset in minutes (set by app.js from the browser), 0 until the browser tells us."""
    try:
        v = int(request.cookies.get("kc_tz", "0"))
    except ValueError:
        return 0
    return v if -14 * 60 <= v <= 14 * 60 else 0


NAV = [
    ("/", "Overview", None),
    ("/content", "Content", None),
    ("/users", "Users", ("admin", "analyst")),
    ("/recommend", "Recommendations", ("admin", "analyst")),
    ("/live", "Live", None),
    ("/experiments", "Experiments", ("admin", "analyst")),
    ("/analytics/funnel", "Analytics", None),
    ("/creators", "Creators", None),
    ("/data", "Data", ("admin", "analyst")),
]


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    t0 = getattr(request.state, "t0", None)
    lang = lang_of(request)
    acct = account_of(request)
    nav = [(h, n) for h, n, roles in NAV if acct is not None and (roles is None or acct.role in roles)]
    off = tz_offset_min(request)
    html = _env.get_template(template).render(
        request=request,
        path=request.url.path,
        account=acct,
        csrf=getattr(request.state, "csrf", ""),
        lang=lang,
        t=lambda s, **kw: translate(s, lang, **kw),
        nav=nav,
        tz_label=(
            "UTC" if off == 0 else f"UTC{'+' if off > 0 else '-'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
        ),
        server_ms=(time.perf_counter() - t0) * 1000 if t0 else None,
        **ctx,
    )
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(nxt: str | None) -> str:
    return nxt if nxt and nxt.startswith("/") and not nxt.startswith("//") else "/"


# ----------------------------------------------------------------------------- mount
def plotly_js_path() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def mount_web(app: FastAPI) -> None:
    """Add the dashboard to ``app``: static files, sign-in, pages and the session middleware."""
    from knowcast.web import pages, pages_ops

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="web-static")

    app.add_middleware(ServerTimingMiddleware)

    @app.get("/static-plotly/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(
            plotly_js_path(), media_type="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", next=_safe_next(next), error=None)

    @app.post("/login", include_in_schema=False)
    def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        csrf: str = Form(""),
        next: str = Form("/"),
    ) -> Response:
        check_csrf(request, csrf)
        with request.app.state.store.sessions() as s:
            acct = authenticate(s, username, password)
        if acct is None:
            return render(
                request, "login.html", status=401, next=_safe_next(next), error="Wrong username or password."
            )
        token = secrets.token_urlsafe(24)
        value = _serializer(request.app).dumps({**acct.to_dict(), "x": token})
        resp = redirect(_safe_next(next))
        resp.headers.append(
            "set-cookie", cookie_header(SESSION_COOKIE, value, request.scope, SESSION_MAX_AGE)
        )
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: str = Form("")) -> Response:
        check_csrf(request, csrf)
        resp = redirect("/login")
        resp.headers.append("set-cookie", cookie_header(SESSION_COOKIE, "", request.scope, 0))
        return resp

    @app.get("/lang/{code}", include_in_schema=False)
    def set_lang(request: Request, code: str, next: str = "/") -> Response:
        resp = redirect(_safe_next(next))
        if code in LANGS:
            resp.set_cookie("kc_lang", code, max_age=365 * 86400, samesite="lax", path="/")
        return resp

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/login?next={quote(nxt, safe='')}")

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "error.html", status=403, code=403, message=exc.message)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> Response:
        return render(request, "error.html", status=404, code=404, message=exc.message)

    app.include_router(pages.router)
    app.include_router(pages_ops.router)
    app.add_middleware(WebSessionMiddleware)
