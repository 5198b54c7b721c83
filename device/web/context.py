"""What every route of the page shares: the Web object, the session, the CSRF check."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from device.config import Config
from device.errors import PeepholeError
from device.service.household import Household
from device.web.passwords import PasswordHash, load_password
from device.web.sessions import LoginLimiter, Session, Sessions

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Web:
    """What every route shares: the config, the household, sessions and templates."""

    config: Config
    household: Household
    sessions: Sessions
    limiter: LoginLimiter
    templates: Jinja2Templates

    @property
    def password_file(self) -> Path:
        return self.config.web.resolved_password_file()

    def password(self) -> PasswordHash | None:
        """Read each time, so ``peephole web set-password`` takes effect without a restart."""
        return load_password(self.password_file)

    @property
    def open(self) -> bool:
        """No login needed: loopback and no password set (docs/web.md)."""
        return self.config.web.loopback and not self.password_file.exists()

    def page(self, request: Request, template: str, **values: Any) -> Response:
        session = session_of(request)
        return self.templates.TemplateResponse(
            request,
            template,
            {
                "csrf": session.csrf,
                "flashes": session.take_flashes(),
                "logged_in": session.logged_in,
                **values,
            },
        )


def web_of(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def session_of(request: Request) -> Session:
    session: Session = request.state.session
    return session


async def check_csrf(request: Request) -> None:
    """Refuse a request that changes something without the session's CSRF token
    (``X-CSRF-Token`` header for the API, a ``csrf`` form field for pages)."""
    if request.method not in UNSAFE_METHODS:
        return
    expected = session_of(request).csrf
    given = request.headers.get("x-csrf-token")
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get("csrf")
        given = field if isinstance(field, str) else None
    if not given or not secrets.compare_digest(given, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


def wants_json(request: Request) -> bool:
    """An API call or an image: answered with a status and one line, never a redirect."""
    path = request.url.path
    return path.startswith("/api/") or path.endswith((".png", ".jpg"))


def attempt(request: Request, back: str, action: Callable[[], str]) -> Response:
    """Run a form's action; its one-line result (or refusal) is shown on the page ``back``."""
    session = session_of(request)
    try:
        session.flash("done", action())
    except PeepholeError as error:
        session.flash("error", str(error))
    return RedirectResponse(back, status.HTTP_303_SEE_OTHER)
