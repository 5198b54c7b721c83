"""What a household does with a door's stored data: its visits, naming them, its people.

One library under every entry point that changes the gallery or the visits
(``peephole visits``, the web page, Home Assistant's commands), so they
behave the same and none has SQL or model code of its own. Each call opens
the gallery and the visits database for its own thread and closes them; the
running door sees a change at its next gallery refresh (WAL: readers and
one writer at a time). The model runs one call at a time (a TFLite
interpreter is not thread-safe).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.config import Config
from device.identity import namings
from device.identity.frame_outcome import FrameOutcome
from device.identity.gallery import Gallery, PersonSummary, StoredCrop
from device.identity.naming import CropVerdict, Namer, NamingResult, UndoResult
from device.identity.visits import Visit, VisitFilter, VisitStore
from device.site.model_choice import ModelChoice

if TYPE_CHECKING:
    from device.vision.pipeline import FacePipeline


@dataclass(frozen=True)
class VisitView:
    """A visit with what the household made of it: whom it was named as, if anyone."""

    visit: Visit
    named_as: str | None = None

    @property
    def who(self) -> str | None:
        """The person the visit is now taken to be: as named, else as recognised, else None."""
        return self.named_as or (self.visit.person if self.visit.known else None)

    @property
    def label(self) -> str:
        """Who it was, for a person to read: ``Lin (named)``, ``unknown (not seen well)``."""
        visit = self.visit
        if self.named_as is not None:
            return f"{self.named_as} (named)"
        if visit.known and visit.person is not None:
            return visit.person
        if visit.reason == "liveness" and visit.person is not None:
            return f"unknown (looked like {visit.person}; not live)"
        if visit.reason == "frames":
            return "unknown (close to someone enrolled; too few of its faces agreed)"
        return {
            "not_seen_well": "unknown (not seen well)",
            "nobody_enrolled": "unknown (nobody enrolled)",
        }.get(visit.outcome, "unknown")


class Household:
    """A door's gallery and visits, for one household's operations."""

    def __init__(
        self, config: Config, models: ModelChoice, pipeline: FacePipeline | None = None
    ) -> None:
        self.config = config
        self.models = models
        self._pipeline = pipeline
        self._model_lock = threading.Lock()

    @property
    def gallery_path(self) -> Path:
        return self.config.gallery.resolved_path()

    @property
    def visits_path(self) -> Path:
        return self.config.visits.resolved_path(self.gallery_path)

    @contextlib.contextmanager
    def _gallery(self) -> Iterator[Gallery]:
        with Gallery.open(self.gallery_path, create=True) as gallery:
            yield gallery

    @contextlib.contextmanager
    def _visits(self) -> Iterator[VisitStore]:
        with VisitStore.open(self.visits_path, create=True) as store:
            yield store

    @contextlib.contextmanager
    def _namer(self) -> Iterator[Namer]:
        with self._model_lock, self._gallery() as gallery, self._visits() as store:
            yield Namer(
                gallery,
                store,
                self.models.embedder(),
                self.config.quality,
                self.config.enroll,
                store_crops=self.config.gallery.store_crops,
            )

    # Visits ----------------------------------------------------------------

    def visits(self, where: VisitFilter | None = None) -> list[VisitView]:
        """Visits newest first, each with whom it was named as."""
        with self._visits() as store:
            found = store.find(where)
        return self._views(found)

    def visit(self, visit_id: str) -> VisitView:
        """One visit with its crops and context image; VisitError if there is none."""
        with self._visits() as store:
            found = store.get(visit_id)
        return self._views([found])[0]

    def _views(self, visits: list[Visit]) -> list[VisitView]:
        if not visits:
            return []
        with self._gallery() as gallery:
            named = gallery.namings_for([v.id for v in visits])
            holders = {
                visit_id: gallery.samples_holder(namings.source_pattern(visit_id))
                for visit_id in named
            }
        return [
            VisitView(v, (holders[v.id] or (0, named[v.id].person))[1] if v.id in named else None)
            for v in visits
        ]

    def visit_crop(self, visit_id: str, rank: int) -> bytes:
        with self._visits() as store:
            return store.crop(visit_id, rank)

    def visit_context(self, visit_id: str) -> bytes:
        with self._visits() as store:
            return store.context(visit_id)

    def verdicts(self, visit_id: str) -> list[CropVerdict]:
        """What the enrollment gate says of each of the visit's crops (before naming it)."""
        with self._namer() as namer:
            return namer.judge(namer.visits.get(visit_id))[0]

    def name_visit(
        self,
        visit_id: str,
        name: str,
        *,
        append: bool = False,
        reassign: bool = False,
        allow_suspect: bool = False,
    ) -> NamingResult:
        with self._namer() as namer:
            return namer.name(
                visit_id, name, append=append, reassign=reassign, allow_suspect=allow_suspect
            )

    def undo_last_naming(self, expect_visit: str | None = None) -> UndoResult:
        with self._namer() as namer:
            return namer.undo_last(expect_visit)

    def last_unknown_visit(self, within: int = 50) -> VisitView | None:
        """The newest visit of someone the door did not know that kept a face to name
        (named since or not), among the last ``within`` unknown visits."""
        for view in self.visits(VisitFilter(unknown_only=True, limit=within)):
            if view.visit.crop_count:
                return view
        return None

    def forget_visit(self, visit_id: str) -> None:
        """Delete a visit and its images (samples it gave a person stay theirs)."""
        with self._visits() as store:
            store.forget(visit_id)

    def forget_visits(self, where: VisitFilter | None = None) -> int:
        """Delete every visit the filter shows; returns how many."""
        with self._visits() as store:
            return store.forget_all(where)

    # People ----------------------------------------------------------------

    def people(self) -> list[PersonSummary]:
        with self._gallery() as gallery:
            return gallery.summaries(self.models.embedding_key_without_loading())

    def person_crops(self, name: str) -> list[StoredCrop]:
        with self._gallery() as gallery:
            return gallery.person_crops(name)

    def sample_png(self, crop_id: int) -> bytes:
        with self._gallery() as gallery:
            return gallery.crop_png(crop_id)

    def enroll_photo(
        self, name: str, data: bytes, *, append: bool, source: str = "upload"
    ) -> FrameOutcome:
        """Offer one uploaded photo of ``name``; stored only if the gate accepts it."""
        # Imported here, with the detector's OpenCV: the web page's own process lists and
        # shows without them, and runs this in its model worker (device.web.model_worker).
        from device.identity.enroll import Enrollment
        from device.vision.imageio import decode_image

        image = decode_image(data, source)
        with self._model_lock, self._gallery() as gallery:
            embedder = self.models.embedder()
            existing = None
            if gallery.person_id(name) is not None:
                existing = gallery.person_embeddings(name, embedder.embedding_key)
            enrollment = Enrollment(
                self._face_pipeline(),
                self.config.enroll,
                existing,
                store_crops=self.config.gallery.store_crops,
            )
            outcome = enrollment.offer(source, image)
            if outcome.accepted:
                gallery.add_person_samples(
                    name, enrollment.samples, embedder.embedding_key, append=append
                )
        return outcome

    def remove_sample(self, name: str, crop_id: int) -> None:
        with self._gallery() as gallery:
            gallery.remove_sample(name, crop_id)

    def rename_person(self, old: str, new: str) -> tuple[str, str]:
        with self._gallery() as gallery:
            return gallery.rename_person(old, new)

    def remove_person(self, name: str) -> str:
        with self._gallery() as gallery:
            return gallery.remove_person(name)

    def _face_pipeline(self) -> FacePipeline:
        from device.vision.pipeline import FacePipeline

        if self._pipeline is None:
            self._pipeline = FacePipeline.from_config(self.config, self.models.embedder())
        elif self._pipeline.embedder is None:
            self._pipeline.embedder = self.models.embedder()
        return self._pipeline
