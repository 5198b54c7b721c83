"""Naming a visit after the fact: its crops become a person's samples; corrections; undo.

The one library under ``peephole visits``, the web page and Home Assistant's
commands. A naming judges each of the visit's stored crops with the
enrollment gate (the quality thresholds of the config as they are now, and
the enrollment's near-duplicate rule), embeds the ones that pass with the
running model, and stores them, tied to the visit by their source
(device/identity/namings.py), in **one gallery transaction** with the record
of the naming. Two namings of one visit at once are serialised by that
transaction: the second sees the first and is refused with a message (or, if
it asks for the same person, finds it done). A visit whose liveness verdict
was ``suspect`` is enrolled only with ``allow_suspect``: a photo held up to
the door must not become a household member by one click.

A correction (``reassign``) moves the visit's samples, and only those, to
another person; the person they leave is removed if the visit was all they
had. ``undo_last_naming`` takes the newest naming back (a correction's undo
moves the samples back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from device.config import EnrollConfig, QualityConfig
from device.errors import PeepholeError
from device.identity import namings
from device.identity.gallery import Gallery, Sample, name_key, normalise_name
from device.identity.visits import Visit, VisitCrop, VisitStore
from device.vision.embedder import FaceEmbedder
from device.vision.quality import judge

ACCEPTED = "accepted"
NEAR_DUPLICATE = "near-duplicate"


class NamingError(PeepholeError):
    """A naming, correction or undo was refused; nothing changed."""


@dataclass(frozen=True)
class CropVerdict:
    """What the enrollment gate said of one of the visit's crops."""

    rank: int
    verdict: str

    @property
    def accepted(self) -> bool:
        return self.verdict == ACCEPTED


@dataclass(frozen=True)
class NamingResult:
    """A naming as it stands: ``changed`` is False when it had been done already."""

    visit_id: str
    person: str
    samples: int
    created_person: bool
    changed: bool = True
    # For a correction: whom the samples were moved from.
    moved_from: str | None = None
    verdicts: tuple[CropVerdict, ...] = ()

    def summary(self) -> str:
        if not self.changed:
            return f"visit {self.visit_id} is already named as {self.person}"
        if self.moved_from is not None:
            return (
                f"visit {self.visit_id}: {self.samples} sample(s) moved from "
                f"{self.moved_from} to {self.person}"
            )
        who = f"new person {self.person}" if self.created_person else self.person
        return f"visit {self.visit_id} named as {who}: {self.samples} sample(s)"


@dataclass(frozen=True)
class UndoResult:
    visit_id: str
    person: str
    samples: int
    # Where a correction was undone, the person the samples went back to.
    restored_to: str | None = None

    def summary(self) -> str:
        if self.restored_to is not None:
            return (
                f"undone: visit {self.visit_id} is {self.restored_to}'s again "
                f"({self.samples} sample(s) back from {self.person})"
            )
        return f"undone: visit {self.visit_id} is no longer named as {self.person} ({self.samples} sample(s) removed)"


@dataclass
class Namer:
    """Names visits of ``visits`` into ``gallery`` with ``embedder`` and the config's gates."""

    gallery: Gallery
    visits: VisitStore
    embedder: FaceEmbedder
    quality: QualityConfig
    enroll: EnrollConfig
    store_crops: bool = True

    def judge(self, visit: Visit) -> tuple[list[CropVerdict], list[Sample]]:
        """Each crop's verdict, and the samples of those that pass (embedded, near-duplicates
        of each other dropped)."""
        # Imported here, with its OpenCV: the web page's process imports this module for its
        # records and runs the model work in its worker (device.web.model_worker).
        from device.identity.enroll import decode_crop

        verdicts: list[CropVerdict] = []
        samples: list[Sample] = []
        for rank, crop in enumerate(visit.crops):
            report = judge(crop.report, self.quality)
            if not report.accepted:
                verdicts.append(CropVerdict(rank, report.verdict))
                continue
            embedding = self.embedder.embed(decode_crop(crop.png))
            if self._near_duplicate(embedding, [s.embedding for s in samples]):
                verdicts.append(CropVerdict(rank, NEAR_DUPLICATE))
                continue
            verdicts.append(CropVerdict(rank, ACCEPTED))
            samples.append(self._sample(visit.id, rank, crop, embedding))
        return verdicts, samples

    def name(
        self,
        visit_id: str,
        name: str,
        *,
        append: bool = False,
        reassign: bool = False,
        allow_suspect: bool = False,
    ) -> NamingResult:
        """Name the visit as ``name`` (a new person, or with ``append`` an enrolled one)."""
        display = normalise_name(name)
        visit = self.visits.get(visit_id)
        if visit.liveness == "suspect" and not allow_suspect:
            raise NamingError(
                f"visit {visit_id} looked like a photo or a screen held up to the door "
                "(liveness: suspect), so it is not enrolled; if it really was this person, "
                "name it with --allow-suspect"
            )
        verdicts, samples = self.judge(visit)
        with self.gallery.transaction():
            current = namings.active_for_visit(self.gallery.db, visit_id)
            if current is not None:
                return self._renamed(visit, current, display, append, reassign, verdicts)
            if not samples:
                raise NamingError(_nothing_passes(visit, verdicts))
            person_id, stored, created = self.gallery.person_to_fill(
                display,
                append=append,
                hint="use --append to add the visit's faces to them, or choose another name",
            )
            existing = self.gallery.person_embeddings(stored, self.embedder.embedding_key)
            kept = [s for s in samples if not self._near_duplicate(s.embedding, list(existing))]
            if not kept:
                raise NamingError(
                    f"every face of visit {visit_id} is a near-duplicate of a sample "
                    f"{stored} already has; nothing was stored"
                )
            verdicts = _mark_duplicates(visit_id, verdicts, samples, kept)
            self.gallery.add_samples(person_id, kept, self.embedder.embedding_key)
            namings.add(self.gallery.db, visit_id, stored, created, time.time())
        return NamingResult(visit_id, stored, len(kept), created, verdicts=tuple(verdicts))

    def _renamed(
        self,
        visit: Visit,
        current: namings.NamingRow,
        display: str,
        append: bool,
        reassign: bool,
        verdicts: list[CropVerdict],
    ) -> NamingResult:
        """The visit is named already: the same person is done; another needs ``reassign``."""
        pattern = namings.source_pattern(visit.id)
        holder = self.gallery.samples_holder(pattern)
        holder_name = holder[1] if holder else current.person
        if name_key(holder_name) == name_key(display):
            return NamingResult(visit.id, holder_name, 0, False, changed=False)
        if not reassign:
            raise NamingError(
                f"visit {visit.id} is already named as {holder_name}; to correct it, "
                f"name it as {display} with --reassign"
            )
        if holder is None:
            raise NamingError(
                f"the samples visit {visit.id} gave {current.person} are gone "
                "(the person was removed); name the visit again after 'undo' or forget it"
            )
        person_id, stored, created = self.gallery.person_to_fill(
            display,
            append=append,
            hint="use --append to move the visit's faces to them, or choose another name",
        )
        moved = self.gallery.move_samples(pattern, person_id)
        emptied = self.gallery.remove_if_empty(holder[0])
        previous = namings.NamingRow(
            current.id, visit.id, holder_name, emptied, None, False, current.at, False
        )
        namings.mark_undone(self.gallery.db, current.id)
        namings.add(self.gallery.db, visit.id, stored, created, time.time(), previous)
        return NamingResult(
            visit.id, stored, moved, created, moved_from=holder_name, verdicts=tuple(verdicts)
        )

    def undo_last(self, expect_visit: str | None = None) -> UndoResult:
        """Take the newest naming back; NamingError if there is none, or if ``expect_visit``
        is given and the newest naming is of another visit (so a command sent twice undoes
        one naming, not two)."""
        db = self.gallery.db
        with self.gallery.transaction():
            last = namings.latest_active(db)
            if last is None:
                raise NamingError("there is no naming to undo")
            if expect_visit is not None and last.visit_id != expect_visit:
                raise NamingError(
                    f"the last naming is of visit {last.visit_id}, not {expect_visit}; "
                    "nothing was undone"
                )
            pattern = namings.source_pattern(last.visit_id)
            holder = self.gallery.samples_holder(pattern)
            namings.mark_undone(db, last.id)
            if holder is None:
                return UndoResult(last.visit_id, last.person, 0)
            if last.previous_person is None:
                removed = self.gallery.remove_samples(pattern)
                if last.created_person:
                    self.gallery.remove_if_empty(holder[0])
                return UndoResult(last.visit_id, holder[1], removed)
            # A correction: the samples go back to whom they were moved from.
            back_id, back_name, _ = self.gallery.person_to_fill(
                last.previous_person, append=True, hint=""
            )
            moved = self.gallery.move_samples(pattern, back_id)
            if last.created_person:
                self.gallery.remove_if_empty(holder[0])
            superseded = namings.superseded_by(db, last)
            if superseded is not None:
                namings.mark_undone(db, superseded.id, undone=False)
            return UndoResult(last.visit_id, holder[1], moved, restored_to=back_name)

    def _near_duplicate(self, embedding: np.ndarray, taken: list[np.ndarray]) -> bool:
        if not taken:
            return False
        return float(np.max(np.stack(taken) @ embedding)) >= self.enroll.duplicate_similarity

    def _sample(self, visit_id: str, rank: int, crop: VisitCrop, embedding: np.ndarray) -> Sample:
        return Sample(
            embedding=embedding,
            quality=crop.quality,
            source=namings.source_of(visit_id, rank),
            crop_png=crop.png if self.store_crops else None,
        )


def _nothing_passes(visit: Visit, verdicts: list[CropVerdict]) -> str:
    if not visit.crops:
        return f"visit {visit.id} kept no face good enough to look at; nothing was stored"
    reasons: dict[str, int] = {}
    for verdict in verdicts:
        reasons[verdict.verdict] = reasons.get(verdict.verdict, 0) + 1
    listed = ", ".join(f"{count} {reason}" for reason, count in reasons.items())
    return (
        f"none of the {len(visit.crops)} face(s) of visit {visit.id} passes the enrollment "
        f"gate ({listed}); nothing was stored"
    )


def _mark_duplicates(
    visit_id: str, verdicts: list[CropVerdict], samples: list[Sample], kept: list[Sample]
) -> list[CropVerdict]:
    """The verdicts, with the samples dropped against the person's own marked near-duplicate."""
    dropped = {s.source for s in samples} - {s.source for s in kept}
    return [
        CropVerdict(v.rank, NEAR_DUPLICATE)
        if v.accepted and namings.source_of(visit_id, v.rank) in dropped
        else v
        for v in verdicts
    ]
