"""People: each enrolled person with their samples; photos added by upload, a sample
removed, a person renamed or removed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Request, UploadFile, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from device.errors import GalleryError, ImageError, PeepholeError
from device.identity.frame_outcome import FrameOutcome
from device.identity.gallery import name_key
from device.service.household import Household
from device.vision.image_header import header_size
from device.web.context import Web, attempt, check_csrf, session_of, web_of

router = APIRouter(dependencies=[Depends(check_csrf)])

CropId = Annotated[int, Path(ge=1)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class UploadRefused(ImageError):
    """An upload that is too large, too many pixels or no image; nothing was stored."""


class SampleOut(BaseModel):
    id: int
    quality: float
    source: str
    created: float


class PersonOut(BaseModel):
    name: str
    samples: int = Field(description="samples for the model the door runs")
    other_model_samples: int
    crops: int
    last_seen: float | None
    status: str


class PersonDetail(PersonOut):
    sample_crops: list[SampleOut]


class PhotoOut(BaseModel):
    name: str
    accepted: bool
    reason: str | None = Field(description="why the photo gave no sample: no face, blurry, ...")
    summary: str


class Rename(BaseModel):
    name: Name
    new_name: Name


class Removal(BaseModel):
    name: Name


class SampleRemoval(BaseModel):
    name: Name
    crop_id: int = Field(ge=1)


class Done(BaseModel):
    summary: str


async def read_upload(web: Web, upload: UploadFile) -> bytes:
    """The upload's bytes, refused in one line over the byte or pixel limits (the pixels
    read from the image's header: a decompression bomb is never decoded) or if no image."""
    limits = web.config.web
    data = await upload.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise UploadRefused(
            f"the photo is larger than {limits.max_upload_bytes // 1024} KiB; nothing was stored"
        )
    size = header_size(data)
    if size is None:
        raise UploadRefused(
            "the upload is not an image (PNG, JPEG, GIF, BMP or WebP); nothing was stored"
        )
    width, height = size
    if width * height > limits.max_upload_pixels:
        raise UploadRefused(
            f"the photo is {width}x{height}, more than "
            f"{limits.max_upload_pixels / 1e6:g} megapixels; nothing was stored"
        )
    return data


def enroll_photo(house: Household, name: str, data: bytes) -> FrameOutcome:
    enrolled = {name_key(p.name) for p in house.people()}
    return house.enroll_photo(name, data, append=name_key(name.strip()) in enrolled)


def photo_summary(name: str, outcome: FrameOutcome) -> str:
    if outcome.accepted:
        return f"photo taken: one more sample of {name.strip()}"
    return f"photo not taken: {outcome.reason}; nothing was stored"


def _rename(house: Household, name: str, new_name: str) -> str:
    before, after = house.rename_person(name, new_name)
    return f"renamed {before} to {after}"


def _remove(house: Household, name: str) -> str:
    return f"removed {house.remove_person(name)} and every sample of theirs"


def _remove_sample(house: Household, name: str, crop_id: int) -> str:
    house.remove_sample(name, crop_id)
    return f"removed one sample of {name}"


# Pages --------------------------------------------------------------------


@router.get("/people", include_in_schema=False)
def people_page(request: Request) -> Response:
    web = web_of(request)
    house = web.household
    people = [(p, house.person_crops(p.name)) for p in house.people()]
    return web.page(request, "people.html", title="People", people=people)


@router.post("/people/photos", include_in_schema=False)
async def photo_form(
    request: Request, name: Annotated[str, Form(max_length=200)], photo: UploadFile
) -> Response:
    web = web_of(request)
    session = session_of(request)
    try:
        data = await read_upload(web, photo)
        outcome = await run_in_threadpool(enroll_photo, web.household, name, data)
        session.flash("done" if outcome.accepted else "error", photo_summary(name, outcome))
    except PeepholeError as error:
        session.flash("error", str(error))
    return RedirectResponse("/people", status.HTTP_303_SEE_OTHER)


@router.post("/people/rename", include_in_schema=False)
def rename_form(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    new_name: Annotated[str, Form(max_length=200)],
) -> Response:
    house = web_of(request).household
    return attempt(request, "/people", lambda: _rename(house, name, new_name))


@router.post("/people/remove", include_in_schema=False)
def remove_form(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    confirm: Annotated[bool, Form()] = False,
) -> Response:
    house = web_of(request).household

    def remove() -> str:
        if not confirm:
            raise GalleryError(f"tick the box to confirm removing {name}")
        return _remove(house, name)

    return attempt(request, "/people", remove)


@router.post("/people/samples/remove", include_in_schema=False)
def remove_sample_form(
    request: Request, name: Annotated[str, Form(max_length=200)], crop_id: Annotated[int, Form()]
) -> Response:
    house = web_of(request).household
    return attempt(request, "/people", lambda: _remove_sample(house, name, crop_id))


@router.get("/people/samples/{crop_id}.png", include_in_schema=False)
def sample_image(request: Request, crop_id: CropId) -> Response:
    return Response(web_of(request).household.sample_png(crop_id), media_type="image/png")


# API ----------------------------------------------------------------------


def _person(house: Household, name: str) -> PersonDetail:
    summary = next((p for p in house.people() if name_key(p.name) == name_key(name)), None)
    crops = house.person_crops(name)  # GalleryError when nobody has that name
    assert summary is not None
    return PersonDetail(
        name=summary.name,
        samples=summary.samples,
        other_model_samples=summary.other_model_samples,
        crops=summary.crops,
        last_seen=summary.last_seen,
        status=summary.status,
        sample_crops=[
            SampleOut(id=c.id, quality=c.quality, source=c.source, created=c.created) for c in crops
        ],
    )


@router.get("/api/people", tags=["people"])
def api_people(request: Request) -> list[PersonOut]:
    """Everyone enrolled, with their sample counts for the model the door runs."""
    return [
        PersonOut(
            name=p.name,
            samples=p.samples,
            other_model_samples=p.other_model_samples,
            crops=p.crops,
            last_seen=p.last_seen,
            status=p.status,
        )
        for p in web_of(request).household.people()
    ]


@router.get("/api/people/detail", tags=["people"])
def api_person(request: Request, name: str) -> PersonDetail:
    """One person with their stored samples (ids for removing one)."""
    return _person(web_of(request).household, name)


@router.post("/api/people/photos", tags=["people"])
async def api_photo(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    photo: Annotated[UploadFile, File(description="one photo: PNG, JPEG, GIF, BMP or WebP")],
) -> PhotoOut:
    """Offer a photo of NAME (a new person or an enrolled one); kept only if the gate takes it."""
    web = web_of(request)
    data = await read_upload(web, photo)
    outcome = await run_in_threadpool(enroll_photo, web.household, name, data)
    return PhotoOut(
        name=name.strip(),
        accepted=outcome.accepted,
        reason=outcome.reason,
        summary=photo_summary(name, outcome),
    )


@router.post("/api/people/rename", tags=["people"])
def api_rename(request: Request, body: Rename) -> Done:
    return Done(summary=_rename(web_of(request).household, body.name, body.new_name))


@router.post("/api/people/remove", tags=["people"])
def api_remove(request: Request, body: Removal) -> Done:
    """Remove the person and everything stored about them."""
    return Done(summary=_remove(web_of(request).household, body.name))


@router.post("/api/people/remove-sample", tags=["people"])
def api_remove_sample(request: Request, body: SampleRemoval) -> Done:
    """Remove one of the person's samples (not their last: remove the person instead)."""
    return Done(summary=_remove_sample(web_of(request).household, body.name, body.crop_id))
