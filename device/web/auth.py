"""Logging in and out: the login page, and ``/api/login`` for scripts."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from device.web.context import check_csrf, session_of, web_of

router = APIRouter()
CSRF = [Depends(check_csrf)]

# A wrong password is answered only after this long, whoever asks.
WRONG_PASSWORD_DELAY_S = 1.0


class Login(BaseModel):
    password: str


class LoggedIn(BaseModel):
    """The session cookie comes with the response; send this token as ``X-CSRF-Token``."""

    csrf: str


async def log_in(request: Request, password: str) -> None:
    """Start a logged-in session, or raise 401 (after a delay) or 429 (too many tries)."""
    web = web_of(request)
    client = request.client.host if request.client else "?"
    wait = web.limiter.retry_after(client)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins; try again in {math.ceil(wait)} s",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    stored = web.password()
    right = stored is not None and await run_in_threadpool(stored.matches, password)
    if not right:
        web.limiter.failed(client)
        await asyncio.sleep(WRONG_PASSWORD_DELAY_S)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong password")
    web.limiter.succeeded(client)
    web.sessions.end(session_of(request))
    request.state.session = web.sessions.new(logged_in=True)


@router.get("/login", include_in_schema=False)
def login_page(request: Request) -> Response:
    web = web_of(request)
    if web.open or session_of(request).logged_in:
        return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    return web.page(request, "login.html", title="Log in")


@router.post("/login", include_in_schema=False, dependencies=CSRF)
async def login_form(request: Request, password: Annotated[str, Form()]) -> Response:
    web = web_of(request)
    try:
        await log_in(request, password)
    except HTTPException as refusal:
        session_of(request).flash("error", str(refusal.detail))
        page = web.page(request, "login.html", title="Log in")
        page.status_code = refusal.status_code
        return page
    return RedirectResponse("/", status.HTTP_303_SEE_OTHER)


@router.post("/logout", include_in_schema=False, dependencies=CSRF)
def logout_form(request: Request) -> Response:
    web = web_of(request)
    web.sessions.end(session_of(request))
    request.state.session = web.sessions.new()
    return RedirectResponse("/login", status.HTTP_303_SEE_OTHER)


@router.post("/api/login", tags=["auth"])
async def api_login(request: Request, body: Login) -> LoggedIn:
    """Log in with the page's password; the CSRF token comes back, the session as a cookie.

    The one change without a CSRF token: a JSON body, which no other site's form can send.
    """
    await log_in(request, body.password)
    return LoggedIn(csrf=session_of(request).csrf)


@router.get("/api/session", tags=["auth"])
def api_session(request: Request) -> LoggedIn:
    """The CSRF token of the current session (for a script that already has the cookie)."""
    return LoggedIn(csrf=session_of(request).csrf)


@router.post("/api/logout", tags=["auth"], dependencies=CSRF, status_code=204)
def api_logout(request: Request) -> None:
    web_of(request).sessions.end(session_of(request))
