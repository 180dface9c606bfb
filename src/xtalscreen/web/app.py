"""The FastAPI application: factory, sessions, request-size limit, error pages.

:func:`create_app` builds the app over an initialised drop database; the routes live in
:mod:`xtalscreen.web.routes` and the queries in :mod:`xtalscreen.web.views`. Every error a user
can cause is an HTML page with the status code and one sentence (never a traceback).
"""

from __future__ import annotations

import logging
import secrets
import tempfile
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from xtalscreen.web.auth import SESSION_MAX_AGE_S, WebSession, csrf_token, dump_session, load_session

log = logging.getLogger("xtalscreen.web")

HERE = Path(__file__).parent
COOKIE = "xts_session"
#: Largest request body accepted (bytes); larger uploads get 413 with a message.
MAX_UPLOAD_BYTES = 1 << 20


class LoginRequired(Exception):
    """Raised by routes when no user is logged in (answered with a redirect to /login)."""


class BodyLimit:
    """ASGI middleware: reject request bodies over ``max_bytes`` with 413 and a clear message.

    Checks ``Content-Length`` up front and counts streamed (chunked) bodies as they arrive.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, int(max_bytes)

    def _message(self, size: int | None) -> bytes:
        got = f" ({size:,} bytes)" if size is not None else ""
        text = (f"Upload too large{got}: the limit is {self.max_bytes:,} bytes "
                f"({self.max_bytes / 2 ** 20:.3g} MiB). Send a smaller file.")
        return (f"<!doctype html><html><head><title>413 Upload too large</title></head><body>"
                f"<h1>413 Upload too large</h1><p>{text}</p></body></html>").encode()

    async def _reject(self, send, size):
        body = self._message(size)
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    size = int(v)
                except ValueError:
                    size = None
                if size is not None and size > self.max_bytes:
                    return await self._reject(send, size)
        seen = 0
        exceeded = rejected = False

        async def counted():
            # Past the limit the app sees the client disconnect (so it acts on no partial body),
            # and whatever it answers is replaced by the 413 page.
            nonlocal seen, exceeded
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return msg

        async def guarded(msg):
            nonlocal rejected
            if not exceeded:
                return await send(msg)
            if msg["type"] == "http.response.start" and not rejected:
                rejected = True
                await self._reject(send, None)

        await self.app(scope, counted, guarded)


def _default_cache(engine) -> Path:
    db = engine.url.database or ""
    if engine.url.get_backend_name() == "sqlite" and db and db != ":memory:":
        return Path(db + ".thumbs")
    return Path(tempfile.mkdtemp(prefix="xtalscreen-thumbs-"))


def create_app(db_url, *, secret_key: str | bytes | None = None, thumb_cache: str | Path | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, cookie_secure: bool = False,
               session_max_age: float = SESSION_MAX_AGE_S) -> FastAPI:
    """Build the web app over the drop database ``db_url``.

    Parameters
    ----------
    db_url : str, Path, URL or Engine
        An initialised drop database (``xtalscreen drops init``).
    secret_key : str or bytes, optional
        Signs session cookies and CSRF tokens; keep it secret and the same across restarts
        and workers. Default: a random key (everyone is logged out when the server restarts).
    thumb_cache : str or Path, optional
        Folder of cached thumbnails. Default: ``<database file>.thumbs/`` for SQLite, else a
        new temporary folder.
    max_upload_bytes : int
        Largest request body accepted (default 1 MiB).
    cookie_secure : bool
        Mark the session cookie Secure (set when served over HTTPS).
    session_max_age : float
        Seconds a login lasts.
    """
    from sqlalchemy.engine import Engine

    from xtalscreen.drops.db import connect, require_schema
    from xtalscreen.web import routes

    engine = db_url if isinstance(db_url, Engine) else connect(db_url, must_exist=True)
    require_schema(engine)
    if secret_key is None:
        log.warning("no secret key given (--secret-key-file or $XTALSCREEN_SECRET_KEY): using a "
                    "random one, so everyone is logged out when the server stops")
        secret_key = secrets.token_bytes(32)
    secret = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
    if len(secret) < 16:
        from xtalscreen.errors import ParameterError

        raise ParameterError("secret_key must have at least 16 bytes (e.g. 'openssl rand -hex 32')")
    cache = Path(thumb_cache) if thumb_cache is not None else _default_cache(engine)
    cache.mkdir(parents=True, exist_ok=True)

    app = FastAPI(title="xtalscreen drops", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.secret, app.state.thumb_cache = engine, secret, cache
    app.state.cookie_secure, app.state.session_max_age = cookie_secure, session_max_age
    app.state.max_upload_hint = int(max_upload_bytes)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.trim_blocks = templates.env.lstrip_blocks = True
    templates.env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M") if t else ""
    templates.env.filters["pct"] = lambda p: f"{100 * float(p):.1f} %"
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(routes.router)

    @app.middleware("http")
    async def session_cookie(request: Request, call_next):
        sess = load_session(request.cookies.get(COOKIE), secret, max_age=session_max_age)
        request.state.session_changed = sess is None
        request.state.session = sess or WebSession.new()
        response = await call_next(request)
        if request.state.session_changed:
            response.set_cookie(COOKIE, dump_session(request.state.session, secret),
                                max_age=int(session_max_age), httponly=True, samesite="lax",
                                secure=cookie_secure, path="/")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def page(request: Request, status: int, title: str, message: str):
        return templates.TemplateResponse(
            request, "error.html", {"title": title, "message": message, "status": status,
                                    "user": getattr(request.state, "user", None),
                                    "csrf": csrf_token(request.state.session, secret)},
            status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        titles = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
                  413: "Upload too large"}
        detail = exc.detail if isinstance(exc.detail, str) else ""
        if exc.status_code == 404 and detail in ("", "Not Found"):
            detail = f"There is no page at {request.url.path}."
        return page(request, exc.status_code, titles.get(exc.status_code, "Error"), detail)

    @app.exception_handler(RequestValidationError)
    async def bad_params(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        where = [e.get("loc", ("?",)) for e in errs]
        if any(loc and loc[0] == "path" for loc in where):
            return page(request, 404, "Not found", f"There is no page at {request.url.path}.")
        names = ", ".join(str(loc[-1]) for loc in where)
        return page(request, 400, "Bad request", f"Missing or invalid form/query field(s): {names}.")

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        from urllib.parse import quote

        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(nxt)}", status_code=303)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        log.exception("error serving %s", request.url.path)
        return page(request, 500, "Server error",
                    "Something went wrong on the server; the error was logged. Try again later.")

    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes)  # outermost: before any parsing
    return app
