"""The web application: one FastAPI app over a Household, its sessions and its templates.

Every request passes one middleware that bounds the body, finds or starts the
session, turns away whoever is not logged in, and sets the headers every page
carries (no caching, a strict content security policy). The routers, one per
resource, check the CSRF token of every request that changes something
(``device.web.context.check_csrf``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import jinja2
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from device.config import Config
from device.errors import PeepholeError
from device.identity.visits import VisitError
from device.service.household import Household
from device.web import auth, people, status_page, visits
from device.web.context import UNSAFE_METHODS, Web, session_of, wants_json, web_of
from device.web.sessions import COOKIE, LoginLimiter, Session, Sessions

HERE = Path(__file__).parent
# Paths open without a login: the login itself and the stylesheet and script.
PUBLIC = ("/login", "/api/login", "/static/")
# Room for the form fields around an upload's bytes.
_FORM_OVERHEAD = 64 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every name is text, whatever it holds
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["localtime"] = local_time
    return Jinja2Templates(env=environment)


def local_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def create_app(
    config: Config, household: Household, on_shutdown: Callable[[], None] = lambda: None
) -> FastAPI:
    """The page over ``household``; ``on_shutdown`` runs when the server stops (SIGTERM
    included: uvicorn re-raises it once the shutdown is done, so nothing after it runs)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(on_shutdown)

    app = FastAPI(
        lifespan=lifespan,
        title="peephole",
        summary="The door's visits, people and health",
        version=_version(),
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.web = Web(
        config,
        household,
        Sessions(config.web.session_hours * 3600),
        LoginLimiter(config.web.login_attempts, config.web.login_window),
        templates(),
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (auth, visits, people, status_page):
        app.include_router(module.router)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        refused = _refuse_body(request, config.web.max_upload_bytes + _FORM_OVERHEAD)
        if refused is not None:
            return _headers(refused)
        web = web_of(request)
        session = web.sessions.get(request.cookies.get(COOKIE))
        fresh = session is None
        if session is None:
            session = web.sessions.new()
        request.state.session = session
        # Open (loopback, no password) is decided per request: a password set while the
        # page runs closes it at once, for sessions made before too.
        if not (web.open or session.logged_in) and not request.url.path.startswith(PUBLIC):
            response: Response = (
                JSONResponse({"detail": "log in first"}, status.HTTP_401_UNAUTHORIZED)
                if wants_json(request)
                else RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
            )
        else:
            response = await call_next(request)
        current = request.state.session  # a login replaces it
        if fresh or current is not session:
            set_cookie(response, current, secure=config.web.tls)
        return _headers(response)

    @app.exception_handler(PeepholeError)
    async def refused(request: Request, error: PeepholeError) -> Response:
        code = status.HTTP_404_NOT_FOUND if isinstance(error, VisitError) else 400
        if wants_json(request):
            return JSONResponse({"detail": str(error)}, code)
        session_of(request).flash("error", str(error))
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)

    return app


def set_cookie(response: Response, session: Session, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        session.token,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def _refuse_body(request: Request, limit: int) -> Response | None:
    """A request body over ``limit`` bytes, or of unknown length, is refused before it is read."""
    if request.method not in UNSAFE_METHODS:
        return None
    length = request.headers.get("content-length")
    if length is None:
        if "chunked" in request.headers.get("transfer-encoding", ""):
            return JSONResponse({"detail": "a request body needs a Content-Length"}, 411)
        return None
    if not length.isdigit() or int(length) > limit:
        return JSONResponse(
            {"detail": f"the request is larger than {limit // 1024} KiB; nothing was stored"},
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return None


def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("peephole")
    except PackageNotFoundError:
        return "0"
