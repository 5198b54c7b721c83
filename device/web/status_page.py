"""Status: what the running door's health report says, refreshed by the page every few seconds."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from device.service.health import read_status
from device.web.context import Web, web_of

router = APIRouter()

# The door rewrites status.json every few seconds; older than this, it is not running.
STALE_AFTER_S = 30.0


class LivenessOut(BaseModel):
    require: bool
    frames: int


class StatusOut(BaseModel):
    running: bool = Field(description="the door wrote its report within the last 30 s")
    report_age_s: float | None
    door: dict[str, Any] | None = Field(description="the door's health report, as MQTT has it")
    liveness: LivenessOut
    site: str


def current_status(web: Web) -> StatusOut:
    report = read_status(web.config.runtime.resolved_status())
    age = None
    if report is not None:
        written = datetime.fromisoformat(report.time.replace("Z", "+00:00")).timestamp()
        age = max(0.0, time.time() - written)
    return StatusOut(
        running=age is not None and age < STALE_AFTER_S,
        report_age_s=age,
        door=asdict(report) if report is not None else None,
        liveness=LivenessOut(
            require=web.config.liveness.require, frames=web.config.liveness.frames
        ),
        site=web.config.site.id,
    )


@router.get("/status", include_in_schema=False)
def status_page(request: Request) -> Response:
    web = web_of(request)
    return web.page(request, "status.html", title="Status", status=current_status(web))


@router.get("/api/status", tags=["status"])
def api_status(request: Request) -> StatusOut:
    """The running door's health: fps, last frame, model, people, broker, events waiting."""
    return current_status(web_of(request))
