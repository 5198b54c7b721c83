"""The visits database: every announced visit, known or not, with a few of its best faces.

One SQLite file beside the gallery (``[visits] path``, default
``visits.db`` in the state directory), with the gallery's discipline
(device/identity/database.py: mode 0600, WAL, migrations and writes all or
nothing). Tables:

- ``visits``: one row per visit: its id (the ``visit_id`` of its events), the
  door, first and last sighting (seconds since the epoch), the decision
  (person or none, known, similarity, margin, liveness verdict, reason,
  frames used, mean quality), the embedding key of the model that decided it,
  and the bytes its images take.
- ``visit_crops``: up to ``[visits] crops`` aligned 112x112 faces of the visit
  as PNG, each with the quality gate's measures (so a later naming can judge
  them again with the enrollment gate).
- ``visit_context``: one JPEG of the best face's surroundings.

Who a visit was *named as* is not stored here but in the gallery
(device/identity/namings.py), whose samples it became: one transaction there
decides a naming. Pruning removes the oldest visits beyond ``max_days`` or
``max_megabytes``; a named visit's samples stay in the gallery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from device.errors import PeepholeError
from device.identity.database import Database, DatabaseKind, open_database
from device.vision.quality import QualityReport


class VisitError(PeepholeError):
    """The visits database refused an operation, or a visit is not there; nothing changed."""


def _schema_v1(db: sqlite_utils.Database) -> None:
    db.table("visits").create(
        {
            "id": str,
            "door": str,
            "track_id": int,
            "first_seen": float,
            "last_seen": float,
            "person": str,
            "known": int,
            "similarity": float,
            "margin": float,
            "liveness": str,
            "reason": str,
            "outcome": str,
            "frames": int,
            "quality": float,
            "embedding_key": str,
            "size": int,
        },
        pk="id",
        not_null={"door", "first_seen", "last_seen", "known", "frames", "quality", "size"},
    )
    db.table("visits").create_index(["first_seen"])
    db.table("visit_crops").create(
        {
            "visit_id": str,
            "rank": int,
            "png": bytes,
            "quality": float,
            "score": float,
            "sharpness": float,
            "eye_distance": float,
            "roll": float,
            "yaw": float,
            "brightness": float,
            "verdict": str,
        },
        pk=("visit_id", "rank"),
        not_null={"png", "quality"},
        foreign_keys=[("visit_id", "visits", "id")],
    )
    db.table("visit_context").create(
        {"visit_id": str, "jpeg": bytes},
        pk="visit_id",
        not_null={"jpeg"},
        foreign_keys=[("visit_id", "visits", "id")],
    )


VISITS = DatabaseKind("visits database", VisitError, [_schema_v1], " (no visit kept yet)")


@dataclass(frozen=True)
class VisitCrop:
    """One kept face: the aligned crop as PNG and the quality gate's report when it was seen."""

    png: bytes
    report: QualityReport

    @property
    def quality(self) -> float:
        return self.report.quality


@dataclass(frozen=True)
class Visit:
    """One visit as stored; ``crops`` and ``context_jpeg`` are empty in listings."""

    id: str
    door: str
    track_id: int
    first_seen: float
    last_seen: float
    person: str | None
    known: bool
    similarity: float | None
    margin: float | None
    liveness: str | None
    reason: str | None
    frames: int
    quality: float
    embedding_key: str
    # What the decision was: known, stranger, not_seen_well, nobody_enrolled, not_live.
    outcome: str = "stranger"
    crop_count: int = 0
    crops: tuple[VisitCrop, ...] = ()
    context_jpeg: bytes | None = None

    @property
    def size(self) -> int:
        """Bytes its images take."""
        return sum(len(crop.png) for crop in self.crops) + len(self.context_jpeg or b"")


@dataclass(frozen=True)
class VisitFilter:
    """Which visits a listing shows, newest first."""

    unknown_only: bool = False
    person: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = None


# The visit's own columns, as Visit's fields (known is stored as 0/1).
_FIELDS = (
    "id", "door", "track_id", "first_seen", "last_seen", "person", "known", "similarity",
    "margin", "liveness", "reason", "frames", "quality", "embedding_key", "outcome",
)  # fmt: skip
_COLUMNS = ", ".join(_FIELDS)
# A kept face's gate measures, as QualityReport's fields.
_MEASURES = ("score", "sharpness", "eye_distance", "roll", "yaw", "brightness")


class VisitStore(Database):
    """The visits database file. Not thread-safe: one store per thread."""

    kind = VISITS

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> VisitStore:
        connection, read_only = open_database(Path(path), VISITS, create=create)
        return cls(Path(path), connection, read_only)

    # Writing ---------------------------------------------------------------

    def save(self, visit: Visit) -> None:
        """Store the visit, or replace what was stored of it (a visit is saved when it is
        announced and again when it ends, with its final crops)."""
        with self.transaction():
            self._delete(visit.id)
            record = {name: getattr(visit, name) for name in _FIELDS}
            self.db.table("visits").insert(
                {**record, "known": int(visit.known), "size": visit.size}
            )
            for rank, crop in enumerate(visit.crops):
                measures = {name: getattr(crop.report, name) for name in _MEASURES}
                self.db.table("visit_crops").insert(
                    {
                        "visit_id": visit.id,
                        "rank": rank,
                        "png": crop.png,
                        "quality": crop.quality,
                        "verdict": crop.report.verdict,
                        **measures,
                    }
                )
            if visit.context_jpeg:
                self.db.table("visit_context").insert(
                    {"visit_id": visit.id, "jpeg": visit.context_jpeg}
                )

    def forget(self, visit_id: str) -> None:
        """Delete the visit and its images; VisitError if there is no such visit."""
        with self.transaction():
            if not self._delete(visit_id):
                raise VisitError(f"no visit {visit_id!r} (it may have been pruned)")

    def forget_all(self, where: VisitFilter | None = None) -> int:
        """Delete every visit the filter shows (all of them without one); returns how many."""
        doomed = [visit.id for visit in self.find(where)]
        with self.transaction():
            for visit_id in doomed:
                self._delete(visit_id)
        return len(doomed)

    def prune(self, max_days: float, max_bytes: int, now: float | None = None) -> int:
        """Delete visits older than ``max_days`` and the oldest beyond ``max_bytes``, in one
        transaction; returns how many went."""
        cutoff = (now if now is not None else time.time()) - max_days * 86400.0
        with self.transaction():
            doomed = [
                r["id"]
                for r in self.db.query("SELECT id FROM visits WHERE last_seen < ?", [cutoff])
            ]
            total = 0
            newest_first = self.db.query(
                "SELECT id, size FROM visits WHERE last_seen >= ? ORDER BY first_seen DESC",
                [cutoff],
            )
            for row in newest_first:
                total += row["size"]
                if total > max_bytes:
                    doomed.append(row["id"])
            for visit_id in doomed:
                self._delete(visit_id)
        return len(doomed)

    def _delete(self, visit_id: str) -> bool:
        """Delete one visit with its images, inside the caller's transaction."""
        self.db.execute("DELETE FROM visit_crops WHERE visit_id = ?", [visit_id])
        self.db.execute("DELETE FROM visit_context WHERE visit_id = ?", [visit_id])
        return self.db.execute("DELETE FROM visits WHERE id = ?", [visit_id]).rowcount > 0

    # Reading ---------------------------------------------------------------

    def get(self, visit_id: str) -> Visit:
        """The visit with its crops and context; VisitError if there is no such visit."""
        with self._reading():
            rows = list(self.db.query(f"SELECT {_COLUMNS} FROM visits WHERE id = ?", [visit_id]))
            if not rows:
                raise VisitError(f"no visit {visit_id!r} (it may have been pruned)")
            crops = tuple(
                VisitCrop(
                    row["png"],
                    QualityReport(
                        **{name: row[name] for name in _MEASURES},
                        reasons=QualityReport.reasons_of(row["verdict"]),
                    ),
                )
                for row in self.db.query(
                    "SELECT * FROM visit_crops WHERE visit_id = ? ORDER BY rank", [visit_id]
                )
            )
            context = list(
                self.db.query("SELECT jpeg FROM visit_context WHERE visit_id = ?", [visit_id])
            )
        return _visit(
            rows[0], len(crops), crops=crops, context=context[0]["jpeg"] if context else None
        )

    def crop(self, visit_id: str, rank: int) -> bytes:
        """One crop's PNG; VisitError if there is none."""
        with self._reading():
            rows = list(
                self.db.query(
                    "SELECT png FROM visit_crops WHERE visit_id = ? AND rank = ?", [visit_id, rank]
                )
            )
        if not rows:
            raise VisitError(f"visit {visit_id!r} has no crop {rank}")
        return bytes(rows[0]["png"])

    def context(self, visit_id: str) -> bytes:
        """The visit's context JPEG; VisitError if there is none."""
        with self._reading():
            rows = list(
                self.db.query("SELECT jpeg FROM visit_context WHERE visit_id = ?", [visit_id])
            )
        if not rows:
            raise VisitError(f"visit {visit_id!r} has no context image")
        return bytes(rows[0]["jpeg"])

    def find(self, where: VisitFilter | None = None) -> list[Visit]:
        """Visits without their images (``crop_count`` says how many), newest first."""
        where = where or VisitFilter()
        clauses, arguments = [], []  # type: list[str], list[Any]
        if where.unknown_only:
            clauses.append("known = 0")
        if where.person is not None:
            clauses.append("person = ?")
            arguments.append(where.person)
        if where.since is not None:
            clauses.append("last_seen >= ?")
            arguments.append(where.since)
        if where.until is not None:
            clauses.append("first_seen < ?")
            arguments.append(where.until)
        sql = (
            f"SELECT {_COLUMNS}, (SELECT COUNT(*) FROM visit_crops c WHERE c.visit_id = v.id) AS n "
            f"FROM visits v {'WHERE ' + ' AND '.join(clauses) if clauses else ''} "
            "ORDER BY first_seen DESC"
        )
        if where.limit is not None:
            sql += f" LIMIT {int(where.limit)}"
        with self._reading():
            return [_visit(row, row["n"]) for row in self.db.query(sql, arguments)]

    def total_bytes(self) -> int:
        with self._reading():
            return int(self.db.execute("SELECT COALESCE(SUM(size), 0) FROM visits").fetchone()[0])

    def __len__(self) -> int:
        with self._reading():
            return int(self.db.execute("SELECT COUNT(*) FROM visits").fetchone()[0])


def _visit(
    row: dict[str, Any],
    crop_count: int,
    *,
    crops: tuple[VisitCrop, ...] = (),
    context: bytes | None = None,
) -> Visit:
    values = {name: row[name] for name in _FIELDS}
    return Visit(
        **{
            **values,
            "known": bool(values["known"]),
            "embedding_key": values["embedding_key"] or "",
        },
        crop_count=crop_count,
        crops=crops,
        context_jpeg=context,
    )
