"""Visits: who came, newest first; naming a visitor, forgetting a visit, undoing a naming."""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from device.identity.gallery import name_key
from device.identity.naming import NamingResult
from device.identity.visits import VisitFilter
from device.service.household import Household, VisitView
from device.web.context import attempt, check_csrf, web_of

router = APIRouter(dependencies=[Depends(check_csrf)])

# A visit id as the door makes them (hex); nothing else reaches the library.
VisitId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Rank = Annotated[int, Path(ge=0, le=99)]
PAGE_SIZE = 50


class VisitOut(BaseModel):
    visit_id: str
    door: str
    first_seen: float
    last_seen: float
    person: str | None = Field(description="whom the door recognised, if anyone")
    known: bool
    named_as: str | None = Field(description="whom a household member named the visit as")
    who: str = Field(description="who it was, for a person to read")
    similarity: float | None
    margin: float | None
    liveness: str | None
    reason: str | None
    outcome: str
    frames: int
    crops: int

    @classmethod
    def of(cls, view: VisitView) -> VisitOut:
        visit = view.visit
        return cls(
            visit_id=visit.id,
            door=visit.door,
            first_seen=visit.first_seen,
            last_seen=visit.last_seen,
            person=visit.person,
            known=visit.known,
            named_as=view.named_as,
            who=view.label,
            similarity=visit.similarity,
            margin=visit.margin,
            liveness=visit.liveness,
            reason=visit.reason,
            outcome=visit.outcome,
            frames=visit.frames,
            crops=visit.crop_count or len(visit.crops),
        )


class CropOut(BaseModel):
    rank: int
    quality: float
    verdict: str = Field(description="what the enrollment gate says of the face")


class VisitDetail(VisitOut):
    faces: list[CropOut]


class Naming(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    allow_suspect: bool = Field(
        False, description="enroll a visit whose liveness was suspect (a photo held up?)"
    )


class NamingOut(BaseModel):
    visit_id: str
    person: str
    samples: int
    created_person: bool
    changed: bool
    moved_from: str | None
    summary: str
    faces_not_taken: dict[int, str]

    @classmethod
    def of(cls, result: NamingResult) -> NamingOut:
        return cls(
            visit_id=result.visit_id,
            person=result.person,
            samples=result.samples,
            created_person=result.created_person,
            changed=result.changed,
            moved_from=result.moved_from,
            summary=result.summary(),
            faces_not_taken={v.rank: v.verdict for v in result.verdicts if not v.accepted},
        )


class Done(BaseModel):
    summary: str


def visit_filter(
    unknown: bool = False, person: str | None = None, day: str | None = None, limit: int = 50
) -> VisitFilter:
    since = until = None
    if day:
        try:
            start = datetime.datetime.fromisoformat(day)
        except ValueError:
            start = None
        if start is not None:
            since = start.timestamp()
            until = (start + datetime.timedelta(days=1)).timestamp()
    return VisitFilter(
        unknown_only=unknown, person=person or None, since=since, until=until, limit=limit
    )


def name_visit(house: Household, visit_id: str, name: str, allow_suspect: bool) -> NamingResult:
    """Name a visit as a household means it: an enrolled name gets the faces added, and a
    visit named already is corrected."""
    view = house.visit(visit_id)
    enrolled = {name_key(p.name) for p in house.people()}
    return house.name_visit(
        visit_id,
        name,
        append=name_key(name.strip()) in enrolled,
        reassign=view.named_as is not None,
        allow_suspect=allow_suspect,
    )


def _forget(house: Household, visit_id: str) -> str:
    house.forget_visit(visit_id)
    return f"forgot visit {visit_id}"


# Pages --------------------------------------------------------------------


@router.get("/", include_in_schema=False)
def home() -> Response:
    return RedirectResponse("/visits", status.HTTP_303_SEE_OTHER)


@router.get("/visits", include_in_schema=False)
def visits_page(
    request: Request,
    unknown: bool = False,
    person: str = "",
    day: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = PAGE_SIZE,
) -> Response:
    web = web_of(request)
    house = web.household
    views = house.visits(visit_filter(unknown, person, day, limit))
    return web.page(
        request,
        "visits.html",
        title="Visits",
        views=views,
        people=[p.name for p in house.people()],
        unknown=unknown,
        person=person,
        day=day,
        limit=limit,
    )


@router.get("/visits/{visit_id}", include_in_schema=False)
def visit_page(request: Request, visit_id: VisitId) -> Response:
    web = web_of(request)
    house = web.household
    view = house.visit(visit_id)
    verdicts = house.verdicts(visit_id) if view.visit.crops else []
    return web.page(
        request,
        "visit.html",
        title=f"Visit {visit_id}",
        view=view,
        faces=list(zip(view.visit.crops, verdicts, strict=True)),
        people=[p.name for p in house.people()],
    )


@router.post("/visits/undo", include_in_schema=False)
def undo_form(request: Request) -> Response:
    house = web_of(request).household
    return attempt(request, "/visits", lambda: house.undo_last_naming().summary())


@router.post("/visits/{visit_id}/name", include_in_schema=False)
def name_form(
    request: Request,
    visit_id: VisitId,
    name: Annotated[str, Form(max_length=200)],
    allow_suspect: Annotated[bool, Form()] = False,
) -> Response:
    house = web_of(request).household
    return attempt(
        request,
        f"/visits/{visit_id}",
        lambda: name_visit(house, visit_id, name, allow_suspect).summary(),
    )


@router.post("/visits/{visit_id}/forget", include_in_schema=False)
def forget_form(request: Request, visit_id: VisitId) -> Response:
    house = web_of(request).household
    return attempt(request, "/visits", lambda: _forget(house, visit_id))


@router.get("/visits/{visit_id}/crops/{rank}.png", include_in_schema=False)
def crop_image(request: Request, visit_id: VisitId, rank: Rank) -> Response:
    return Response(web_of(request).household.visit_crop(visit_id, rank), media_type="image/png")


@router.get("/visits/{visit_id}/doorstep.jpg", include_in_schema=False)
def doorstep_image(request: Request, visit_id: VisitId) -> Response:
    jpeg = web_of(request).household.visit_context(visit_id)
    return Response(jpeg, media_type="image/jpeg")


# API ----------------------------------------------------------------------


@router.get("/api/visits", tags=["visits"])
def api_visits(
    request: Request,
    unknown: bool = False,
    person: str | None = None,
    day: Annotated[str | None, Query(description="a local date, 2026-12-07")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = PAGE_SIZE,
) -> list[VisitOut]:
    """Visits newest first: unknown visitors only, one person's, or one day's."""
    house = web_of(request).household
    return [VisitOut.of(v) for v in house.visits(visit_filter(unknown, person, day, limit))]


@router.get("/api/visits/{visit_id}", tags=["visits"])
def api_visit(request: Request, visit_id: VisitId) -> VisitDetail:
    """One visit, with what the enrollment gate says of each of its faces."""
    house = web_of(request).household
    view = house.visit(visit_id)
    verdicts = house.verdicts(visit_id) if view.visit.crops else []
    faces = [
        CropOut(rank=v.rank, quality=c.quality, verdict=v.verdict)
        for c, v in zip(view.visit.crops, verdicts, strict=True)
    ]
    return VisitDetail(**VisitOut.of(view).model_dump(), faces=faces)


@router.post("/api/visits/{visit_id}/name", tags=["visits"])
def api_name(request: Request, visit_id: VisitId, body: Naming) -> NamingOut:
    """Name the visitor: a new person, an enrolled one (faces added), or a correction."""
    house = web_of(request).household
    return NamingOut.of(name_visit(house, visit_id, body.name, body.allow_suspect))


@router.post("/api/visits/undo", tags=["visits"])
def api_undo(request: Request) -> Done:
    """Take the last naming back."""
    return Done(summary=web_of(request).household.undo_last_naming().summary())


@router.delete("/api/visits/{visit_id}", tags=["visits"])
def api_forget(request: Request, visit_id: VisitId) -> Done:
    """Forget the visit and its images (faces it gave a person stay theirs)."""
    return Done(summary=_forget(web_of(request).household, visit_id))
