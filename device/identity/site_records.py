"""A gallery's ``site_records`` table: what this door last sent or accepted of each person.

The site's replica (device/site/replica.py) is its only user; the table lives in
the gallery file so that a remote change and its row commit in one transaction.
One row per record id: the stamp of the latest change (the hybrid clock's text
form, which sorts in time order), the digest of the person as it then was
("" once removed), and whether the broker has acknowledged this door's own
change yet. ``create_table`` is the gallery's schema step to version 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils

TABLE = "site_records"


@dataclass(frozen=True)
class SiteRecordRow:
    record_id: str
    stamp: str
    digest: str
    removed: bool
    published: bool


def create_table(db: sqlite_utils.Database) -> None:
    """The gallery's migration to schema version 3."""
    db.table(TABLE).create(
        {"record_id": str, "stamp": str, "digest": str, "removed": int, "published": int},
        pk="record_id",
        not_null={"stamp", "digest", "removed", "published"},
    )


def latest_stamp(db: sqlite_utils.Database) -> str | None:
    """The latest stamp this door wrote or accepted, or None before the first."""
    value = db.execute(f"SELECT MAX(stamp) FROM {TABLE}").fetchone()[0]
    return str(value) if value else None


def read_rows(db: sqlite_utils.Database, only: str | None = None) -> dict[str, SiteRecordRow]:
    """Every row by record id (or only the one of ``only``)."""
    where, arguments = ("record_id = ?", [only]) if only is not None else (None, None)
    return {
        row["record_id"]: SiteRecordRow(
            row["record_id"],
            row["stamp"],
            row["digest"],
            bool(row["removed"]),
            bool(row["published"]),
        )
        for row in db.table(TABLE).rows_where(where, arguments)
    }


def write_row(db: sqlite_utils.Database, row: SiteRecordRow) -> None:
    db.table(TABLE).upsert(
        {
            "record_id": row.record_id,
            "stamp": row.stamp,
            "digest": row.digest,
            "removed": int(row.removed),
            "published": int(row.published),
        },
        pk="record_id",
    )


def mark_published(db: sqlite_utils.Database, record_id: str, stamp: str) -> None:
    """The broker acknowledged this change (a later one made meanwhile stays unsent)."""
    db.execute(
        f"UPDATE {TABLE} SET published = 1 WHERE record_id = ? AND stamp = ?", [record_id, stamp]
    )


def mark_unsent(db: sqlite_utils.Database, record_id: str) -> None:
    """This door's copy must go to the broker again."""
    db.execute(f"UPDATE {TABLE} SET published = 0 WHERE record_id = ?", [record_id])
