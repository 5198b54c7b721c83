"""A gallery's ``namings`` table: which visit was named as whom, newest last, for undo.

A naming turns a visit's crops into samples of a person (device/identity/
naming.py); those samples carry the source ``visit:<id>/<rank>``, so wherever
they are now (renamed, reassigned, replicated) they can be found by the
visit. A row records the naming: the visit, the person's name at the time,
whether the naming created that person, and for a correction the person the
samples were moved from. ``undone`` rows are history: an undo marks its row,
and a correction marks the row it supersedes (an undo of the correction brings
that one back). The newest row not undone is what "undo the last naming"
takes back. ``create_table`` is the gallery's schema step to version 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

TABLE = "namings"


@dataclass(frozen=True)
class NamingRow:
    id: int
    visit_id: str
    person: str
    created_person: bool
    # A correction: who the visit's samples were moved from, and whether that
    # person existed only through this visit (and was removed when emptied).
    previous_person: str | None
    previous_created: bool
    at: float
    undone: bool


def create_table(db: sqlite_utils.Database) -> None:
    """The gallery's migration to schema version 4."""
    db.table(TABLE).create(
        {
            "id": int,
            "visit_id": str,
            "person": str,
            "created_person": int,
            "previous_person": str,
            "previous_created": int,
            "at": float,
            "undone": int,
        },
        pk="id",
        not_null={"visit_id", "person", "created_person", "previous_created", "at", "undone"},
    )
    db.table(TABLE).create_index(["visit_id"])


def source_of(visit_id: str, rank: int) -> str:
    """The sample source of a visit's crop: how its samples are found again."""
    return f"visit:{visit_id}/{rank}"


def source_pattern(visit_id: str) -> str:
    """A LIKE pattern for every sample of the visit (visit ids are hex: nothing to escape)."""
    return f"visit:{visit_id}/%"


def add(
    db: sqlite_utils.Database,
    visit_id: str,
    person: str,
    created_person: bool,
    at: float,
    previous: NamingRow | None = None,
) -> int:
    """Record a naming (inside the caller's transaction); returns its id."""
    record: dict[str, Any] = {
        "visit_id": visit_id,
        "person": person,
        "created_person": int(created_person),
        "previous_person": previous.person if previous else None,
        "previous_created": int(previous.created_person) if previous else 0,
        "at": at,
        "undone": 0,
    }
    pk = db.table(TABLE).insert(record).last_pk
    assert pk is not None
    return int(pk)


def active_for_visit(db: sqlite_utils.Database, visit_id: str) -> NamingRow | None:
    """The visit's naming in force, or None."""
    rows = db.table(TABLE).rows_where(
        "visit_id = ? AND undone = 0", [visit_id], order_by="id DESC", limit=1
    )
    return next((_row(row) for row in rows), None)


def latest_active(db: sqlite_utils.Database) -> NamingRow | None:
    """The newest naming in force (what an undo takes back), or None."""
    rows = db.table(TABLE).rows_where("undone = 0", order_by="id DESC", limit=1)
    return next((_row(row) for row in rows), None)


def for_visits(db: sqlite_utils.Database, visit_ids: list[str]) -> dict[str, NamingRow]:
    """The naming in force of each of these visits that has one."""
    if not visit_ids:
        return {}
    marks = ", ".join("?" for _ in visit_ids)
    rows = db.table(TABLE).rows_where(
        f"undone = 0 AND visit_id IN ({marks})", visit_ids, order_by="id"
    )
    return {row["visit_id"]: _row(row) for row in rows}


def mark_undone(db: sqlite_utils.Database, naming_id: int, undone: bool = True) -> None:
    db.table(TABLE).update(naming_id, {"undone": int(undone)})


def superseded_by(db: sqlite_utils.Database, row: NamingRow) -> NamingRow | None:
    """The naming a correction replaced (the visit's previous one, now undone), or None."""
    rows = db.table(TABLE).rows_where(
        "visit_id = ? AND id < ? AND undone = 1",
        [row.visit_id, row.id],
        order_by="id DESC",
        limit=1,
    )
    return next((_row(found) for found in rows), None)


def _row(row: dict[str, Any]) -> NamingRow:
    return NamingRow(
        id=row["id"],
        visit_id=row["visit_id"],
        person=row["person"],
        created_person=bool(row["created_person"]),
        previous_person=row["previous_person"],
        previous_created=bool(row["previous_created"]),
        at=row["at"],
        undone=bool(row["undone"]),
    )
