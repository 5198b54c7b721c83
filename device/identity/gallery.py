"""The gallery: enrolled people, their embeddings and (optionally) their aligned crops.

One SQLite file in WAL mode, so the running service can read while the CLI
writes. Tables (schema version in ``PRAGMA user_version``):

- ``people``: one row per person (display name, created, last seen).
- ``crops``: each enrollment sample's aligned 112x112 face as PNG, kept so the
  gallery can be re-embedded after a model change (``[gallery] store_crops``).
- ``embeddings``: float32 vectors, each tagged with the embedding key of the
  model that produced it (the model file's sha256, or a hash of it and the way
  it is run); rows of another key are never compared with the current one.
- ``state``: one row whose ``generation`` triggers bump on every change that
  matters to matching, so a reader can tell cheaply that it must reload.
- ``site_records``: the site's replication ledger (device/identity/site_records.py).
- ``namings``: which visit was named as whom, for undo (device/identity/namings.py).

Every write runs in one ``BEGIN IMMEDIATE`` transaction: it happens entirely or
not at all. So does a migration to a newer schema: an interrupted one leaves
the file as it was, at its old version.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from device.errors import GalleryError
from device.identity import namings, site_records
from device.identity.database import Database, DatabaseKind, Migration, open_database
from device.identity.export_format import ExportedCrop, ExportedEmbedding, ExportedPerson

SCHEMA_VERSION = 4
MAX_NAME_LENGTH = 100


def _schema_v1(db: sqlite_utils.Database) -> None:
    db.table("people").create(
        {"id": int, "name": str, "name_key": str, "created": float, "last_seen": float},
        pk="id",
        not_null={"name", "name_key", "created"},
    )
    db.table("people").create_index(["name_key"], unique=True)
    db.table("crops").create(
        {
            "id": int,
            "person_id": int,
            "png": bytes,
            "quality": float,
            "source": str,
            "created": float,
        },
        pk="id",
        not_null={"person_id", "png", "created"},
        foreign_keys=[("person_id", "people", "id")],
    )
    db.table("crops").create_index(["person_id"])
    db.table("embeddings").create(
        {
            "id": int,
            "person_id": int,
            "crop_id": int,
            "model_sha256": str,
            "dim": int,
            "vector": bytes,
            "quality": float,
            "source": str,
            "created": float,
        },
        pk="id",
        not_null={"person_id", "model_sha256", "dim", "vector", "created"},
        foreign_keys=[("person_id", "people", "id"), ("crop_id", "crops", "id")],
    )
    db.table("embeddings").create_index(["model_sha256", "person_id"])
    db.table("embeddings").create_index(["person_id"])
    db.table("embeddings").create_index(["crop_id"])
    db.table("state").create({"id": int, "generation": int}, pk="id", not_null={"generation"})
    db.table("state").insert({"id": 1, "generation": 0})
    bump = "UPDATE state SET generation = generation + 1 WHERE id = 1;"
    db.executescript(
        f"""
        CREATE TRIGGER embeddings_added AFTER INSERT ON embeddings BEGIN {bump} END;
        CREATE TRIGGER embeddings_removed AFTER DELETE ON embeddings BEGIN {bump} END;
        CREATE TRIGGER people_renamed AFTER UPDATE OF name ON people BEGIN {bump} END;
        CREATE TRIGGER people_removed AFTER DELETE ON people BEGIN {bump} END;
        """
    )


def _schema_v2(db: sqlite_utils.Database) -> None:
    """``embeddings.model_sha256`` holds the embedding key (not always the file's sha256)."""
    embeddings = db.table("embeddings")
    embeddings.drop_index("idx_embeddings_model_sha256_person_id")
    db.execute("ALTER TABLE embeddings RENAME COLUMN model_sha256 TO embedding_key")
    embeddings.create_index(["embedding_key", "person_id"])


# MIGRATIONS[n] takes a gallery from schema version n to n + 1. _prepare runs
# them all in one transaction, together with the new user_version.
def _schema_v4(db: sqlite_utils.Database) -> None:
    """``namings`` (device/identity/namings.py); a visit's samples moved to another person
    (a corrected naming) change what matching sees, like any other change."""
    namings.create_table(db)
    bump = "UPDATE state SET generation = generation + 1 WHERE id = 1;"
    db.executescript(
        f"CREATE TRIGGER embeddings_moved AFTER UPDATE OF person_id ON embeddings BEGIN {bump} END;"
    )


# Version 3 adds the site's table (device/identity/site_records.py).
MIGRATIONS: list[Migration] = [_schema_v1, _schema_v2, site_records.create_table, _schema_v4]
assert len(MIGRATIONS) == SCHEMA_VERSION
GALLERY = DatabaseKind("gallery", GalleryError, MIGRATIONS, " (enroll someone first)")


def normalise_name(name: str) -> str:
    """A display name as stored: NFC, surrounding whitespace removed; refused if unusable."""
    cleaned = unicodedata.normalize("NFC", name).strip()
    if not cleaned:
        raise GalleryError("a person's name must not be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise GalleryError(f"a person's name must be at most {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in cleaned):
        raise GalleryError(f"name {cleaned!r} contains control characters")
    return cleaned


def people_count(count: int) -> str:
    """``1 person``, ``2 people``."""
    return f"{count} {'person' if count == 1 else 'people'}"


def name_key(name: str) -> str:
    """Two names with the same key are the same person ("anna" and "Anna")."""
    return unicodedata.normalize("NFC", normalise_name(name).casefold())


@dataclass(frozen=True)
class Sample:
    """One enrollment sample to store: the embedding and, if kept, its aligned crop."""

    embedding: np.ndarray
    quality: float
    source: str
    crop_png: bytes | None = None


@dataclass(frozen=True)
class StoredCrop:
    """One of a person's stored samples, without its pixels."""

    id: int
    quality: float
    source: str
    created: float


@dataclass(frozen=True)
class PersonSummary:
    """What ``people list`` shows for one person."""

    name: str
    samples: int
    other_model_samples: int
    crops: int
    created: float
    last_seen: float | None
    crops_to_embed: int

    @property
    def status(self) -> str:
        if self.crops_to_embed:
            return "needs reembed"
        if self.samples == 0:
            return "needs re-enrollment"
        return "ok"


@dataclass(frozen=True)
class EmbeddingRows:
    """All embeddings of one model, grouped by person (rows of a person are contiguous)."""

    names: list[str]
    person_index: np.ndarray
    vectors: np.ndarray


class Gallery(Database):
    """A gallery database file. Not thread-safe: one Gallery per thread."""

    kind = GALLERY

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Gallery:
        """Open (and with ``create``, make or migrate) the gallery at ``path``."""
        path = Path(path)
        connection, read_only = open_database(path, GALLERY, create=create)
        return cls(path, connection, read_only)

    def generation(self) -> int:
        """A counter that changes whenever embeddings or people are added, removed or renamed."""
        with self._reading():
            row = self.db.execute("SELECT generation FROM state WHERE id = 1").fetchone()
        return int(row[0])

    def _person(self, name: str, column: str) -> Any:
        """``column`` of the person called ``name`` (any case), or None if there is none."""
        rows = self.db.table("people").rows_where("name_key = ?", [name_key(name)], select=column)
        row = next(rows, None)
        return None if row is None else row[column]

    def person_id(self, name: str) -> int | None:
        found = self._person(name, "id")
        return None if found is None else int(found)

    def display_name(self, name: str) -> str:
        found = self._person(name, "name")
        if found is None:
            raise GalleryError(f"no person named {name!r} in the gallery")
        return str(found)

    def names(self) -> list[str]:
        people = self.db.table("people").rows_where(select="name", order_by="name")
        return [str(row["name"]) for row in people]

    def embeddings(self, embedding_key: str) -> EmbeddingRows:
        with self._reading():
            rows = list(
                self.db.query(
                    "SELECT p.name, e.dim, e.vector FROM embeddings e "
                    "JOIN people p ON p.id = e.person_id "
                    "WHERE e.embedding_key = ? ORDER BY p.name_key, e.id",
                    [embedding_key],
                )
            )
        names: list[str] = []
        index = np.zeros(len(rows), dtype=np.int64)
        dim = int(rows[0]["dim"]) if rows else 0
        vectors = np.zeros((len(rows), dim), dtype=np.float32)
        for i, row in enumerate(rows):
            name, blob = row["name"], row["vector"]
            if int(row["dim"]) != dim or len(blob) != 4 * dim:
                raise GalleryError(f"gallery {self.path}: embedding of {name!r} has a wrong size")
            if not names or names[-1] != name:
                names.append(name)
            index[i] = len(names) - 1
            vectors[i] = np.frombuffer(blob, dtype="<f4")
        return EmbeddingRows(names=names, person_index=index, vectors=vectors)

    def person_embeddings(self, name: str, embedding_key: str) -> np.ndarray:
        rows = list(
            self.db.query(
                "SELECT e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
                "WHERE p.name_key = ? AND e.embedding_key = ? ORDER BY e.id",
                [name_key(name), embedding_key],
            )
        )
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(row["vector"], dtype="<f4") for row in rows])

    def summaries(self, embedding_key: str) -> list[PersonSummary]:
        rows = self.db.query(
            """
            SELECT p.name, p.created, p.last_seen,
              (SELECT COUNT(*) FROM embeddings e
                WHERE e.person_id = p.id AND e.embedding_key = :key) AS samples,
              (SELECT COUNT(*) FROM embeddings e
                WHERE e.person_id = p.id AND e.embedding_key != :key) AS other_model_samples,
              (SELECT COUNT(*) FROM crops c WHERE c.person_id = p.id) AS crops,
              (SELECT COUNT(*) FROM crops c WHERE c.person_id = p.id AND NOT EXISTS (
                 SELECT 1 FROM embeddings e WHERE e.crop_id = c.id AND e.embedding_key = :key))
                AS crops_to_embed
            FROM people p ORDER BY p.name_key
            """,
            {"key": embedding_key},
        )
        return [PersonSummary(**row) for row in rows]

    def crops_missing(self, embedding_key: str) -> list[tuple[int, int, str, bytes, float, str]]:
        """(crop id, person id, name, png, quality, source) of crops not embedded by the model."""
        return [
            (
                int(r["id"]),
                int(r["person_id"]),
                str(r["name"]),
                bytes(r["png"]),
                float(r["quality"] or 0.0),
                str(r["source"] or ""),
            )
            for r in self.db.query(
                "SELECT c.id, c.person_id, p.name, c.png, c.quality, c.source FROM crops c "
                "JOIN people p ON p.id = c.person_id WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                "WHERE e.crop_id = c.id AND e.embedding_key = ?) ORDER BY c.id",
                [embedding_key],
            )
        ]

    def person_crops(self, name: str) -> list[StoredCrop]:
        """The person's stored crops (their samples as a household sees them), oldest first."""
        with self._reading():
            person_id = self.person_id(name)
            if person_id is None:
                raise GalleryError(f"{name!r} is not enrolled")
            rows = self.db.query(
                "SELECT id, quality, source, created FROM crops WHERE person_id = ? ORDER BY id",
                [person_id],
            )
            return [
                StoredCrop(
                    int(r["id"]),
                    float(r["quality"] or 0.0),
                    str(r["source"] or ""),
                    float(r["created"]),
                )
                for r in rows
            ]

    def crop_png(self, crop_id: int) -> bytes:
        """One stored crop's PNG; GalleryError if there is none."""
        with self._reading():
            rows = list(self.db.query("SELECT png FROM crops WHERE id = ?", [crop_id]))
        if not rows:
            raise GalleryError(f"no stored crop {crop_id}")
        return bytes(rows[0]["png"])

    def remove_sample(self, name: str, crop_id: int) -> None:
        """Delete one of the person's samples (the crop and its embeddings); GalleryError if the
        crop is not theirs, or is their last one (remove the person instead)."""
        with self.transaction():
            person_id = self.person_id(name)
            owner = list(self.db.query("SELECT person_id FROM crops WHERE id = ?", [crop_id]))
            if person_id is None or not owner or owner[0]["person_id"] != person_id:
                raise GalleryError(f"{name!r} has no sample {crop_id}")
            left = self.db.execute(
                "SELECT COUNT(*) FROM embeddings WHERE person_id = ? AND "
                "(crop_id IS NULL OR crop_id != ?)",
                [person_id, crop_id],
            ).fetchone()[0]
            if not left:
                raise GalleryError(
                    f"that is {self.display_name(name)}'s last sample; remove the person instead"
                )
            self.db.execute("DELETE FROM embeddings WHERE crop_id = ?", [crop_id])
            self.db.execute("DELETE FROM crops WHERE id = ?", [crop_id])

    def export_records(self, only_key: str | None = None) -> list[ExportedPerson]:
        """Every person (or the one whose name key is ``only_key``) with crops and embeddings."""
        where, arguments = ("name_key = ?", [only_key]) if only_key is not None else (None, None)
        people = []
        rows = self.db.table("people").rows_where(where, arguments, order_by="name_key")
        for person in list(rows):
            crops = list(
                self.db.table("crops").rows_where("person_id = ?", [person["id"]], order_by="id")
            )
            crop_position = {crop["id"]: i for i, crop in enumerate(crops)}
            embeddings = self.db.table("embeddings").rows_where(
                "person_id = ?", [person["id"]], order_by="id"
            )
            people.append(
                ExportedPerson(
                    name=person["name"],
                    created=person["created"],
                    last_seen=person["last_seen"],
                    crops=tuple(
                        ExportedCrop(
                            png=crop["png"],
                            quality=crop["quality"],
                            source=crop["source"] or "",
                            created=crop["created"],
                        )
                        for crop in crops
                    ),
                    embeddings=tuple(
                        ExportedEmbedding(
                            crop=crop_position.get(row["crop_id"]),
                            embedding_key=row["embedding_key"],
                            vector=row["vector"],
                            quality=row["quality"],
                            source=row["source"] or "",
                            created=row["created"],
                        )
                        for row in embeddings
                    ),
                )
            )
        return people

    # Writing --------------------------------------------------------------

    def add_person_samples(
        self, name: str, samples: list[Sample], embedding_key: str, *, append: bool
    ) -> str:
        """Store ``samples`` for ``name`` in one transaction; returns the stored name.

        A new name creates the person. An existing name is refused unless ``append``.
        """
        display = normalise_name(name)
        if not samples:
            raise GalleryError(f"no samples to store for {display!r}")
        now = time.time()
        with self.transaction():
            person_id = self._person_to_write(
                display, append, "use --append to add samples, or choose another name", now
            )
            display = self.display_name(display)
            for sample in samples:
                self._insert_sample(person_id, sample, embedding_key, now)
        return display

    def _person_to_write(
        self,
        display: str,
        append: bool,
        refusal_hint: str,
        created: float,
        last_seen: float | None = None,
    ) -> int:
        """The id of ``display`` to add rows to (inside the open transaction).

        A new name creates the person; an enrolled one is refused unless ``append``.
        """
        existing = self.person_id(display)
        if existing is None:
            record = {"name": display, "name_key": name_key(display), "created": created}
            if last_seen is not None:
                record["last_seen"] = last_seen
            return self._insert("people", record)
        if not append:
            raise GalleryError(
                f"{self.display_name(display)!r} is already enrolled; {refusal_hint}"
            )
        return existing

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        """Insert one row (inside the open transaction); returns its id."""
        pk = self.db.table(table).insert(record).last_pk
        assert pk is not None
        return int(pk)

    def _insert_sample(
        self, person_id: int, sample: Sample, embedding_key: str, now: float
    ) -> None:
        crop_id = None
        if sample.crop_png is not None:
            crop_id = self._insert(
                "crops",
                {
                    "person_id": person_id,
                    "png": sample.crop_png,
                    "quality": sample.quality,
                    "source": sample.source,
                    "created": now,
                },
            )
        self.add_embedding(person_id, crop_id, sample, embedding_key, now)

    def add_embedding(
        self, person_id: int, crop_id: int | None, sample: Sample, embedding_key: str, now: float
    ) -> None:
        vector = np.asarray(sample.embedding, dtype="<f4").reshape(-1)
        self._insert(
            "embeddings",
            {
                "person_id": person_id,
                "crop_id": crop_id,
                "embedding_key": embedding_key,
                "dim": int(vector.size),
                "vector": vector.tobytes(),
                "quality": sample.quality,
                "source": sample.source,
                "created": now,
            },
        )

    def add_crop_embeddings(self, rows: list[tuple[int, int, Sample]], embedding_key: str) -> None:
        """Store re-computed embeddings: (crop id, person id, sample) each, in one transaction."""
        now = time.time()
        with self.transaction():
            for crop_id, person_id, sample in rows:
                self.add_embedding(person_id, crop_id, sample, embedding_key, now)

    def remove_person(self, name: str) -> str:
        """Delete the person and every embedding and crop of theirs."""
        with self.transaction():
            display = self.display_name(name)
            self.remove_person_by_key(name_key(name))
        return display

    def rename_person(self, old: str, new: str) -> tuple[str, str]:
        target = normalise_name(new)
        with self.transaction():
            display = self.display_name(old)
            person_id = self.person_id(old)
            assert person_id is not None
            other = self.person_id(target)
            if other is not None and other != person_id:
                raise GalleryError(f"{self.display_name(target)!r} is already enrolled")
            self.db.table("people").update(
                person_id, {"name": target, "name_key": name_key(target)}
            )
        return display, target

    def touch_last_seen(self, person: str, when: float) -> None:
        """Record that ``person`` was recognised at ``when`` (seconds since the epoch)."""
        with self.transaction():
            # One statement, so that it only ever moves forward and a person
            # removed meanwhile is simply not found.
            self.db.execute(
                "UPDATE people SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE name_key = ?",
                [when, name_key(person)],
            )

    def import_records(self, people: Sequence[ExportedPerson], *, append: bool) -> int:
        """Add exported people in one transaction; returns how many samples were added."""
        added = 0
        with self.transaction():
            for person in people:
                person_id = self._person_to_write(
                    normalise_name(person.name),
                    append,
                    "use --append to add the imported samples",
                    person.created,
                    person.last_seen,
                )
                added += self._store_rows(person_id, person)
        return added

    def replace_person(self, person: ExportedPerson) -> None:
        """Make ``person`` (a replicated record) what is stored under their name.

        Runs inside a transaction the caller holds. Whatever was stored under
        the same name (in any case) goes; ``last_seen`` is the later of the two.
        """
        display = normalise_name(person.name)
        previous = self._person(display, "last_seen")
        self.remove_person_by_key(name_key(display))
        last_seen = max((t for t in (person.last_seen, previous) if t is not None), default=None)
        record = {"name": display, "name_key": name_key(display), "created": person.created}
        if last_seen is not None:
            record["last_seen"] = last_seen
        self._store_rows(self._insert("people", record), person)

    def remove_person_by_key(self, key: str) -> bool:
        """Delete the person whose name key is ``key``, inside the caller's transaction."""
        rows = self.db.table("people").rows_where("name_key = ?", [key], select="id")
        found = next(rows, None)
        if found is None:
            return False
        person_id = found["id"]
        self.db.table("embeddings").delete_where("person_id = ?", [person_id])
        self.db.table("crops").delete_where("person_id = ?", [person_id])
        self.db.table("people").delete_where("id = ?", [person_id])
        return True

    # A visit's samples (device/identity/naming.py), inside the caller's transaction.

    def person_to_fill(self, name: str, *, append: bool, hint: str) -> tuple[int, str, bool]:
        """(id, stored name, created) of the person to add samples to; a new name creates them,
        an enrolled one is refused unless ``append`` (``hint`` says what to do instead)."""
        display = normalise_name(name)
        created = self.person_id(display) is None
        person_id = self._person_to_write(display, append, hint, time.time())
        return person_id, self.display_name(display), created

    def add_samples(self, person_id: int, samples: list[Sample], embedding_key: str) -> None:
        now = time.time()
        for sample in samples:
            self._insert_sample(person_id, sample, embedding_key, now)

    def samples_holder(self, source_pattern: str) -> tuple[int, str] | None:
        """(id, name) of the person whose samples' source matches ``source_pattern``, or None."""
        rows = self.db.query(
            "SELECT p.id, p.name FROM embeddings e JOIN people p ON p.id = e.person_id "
            "WHERE e.source LIKE ? LIMIT 1",
            [source_pattern],
        )
        found = next(iter(rows), None)
        return None if found is None else (int(found["id"]), str(found["name"]))

    def move_samples(self, source_pattern: str, person_id: int) -> int:
        """Give every sample whose source matches to ``person_id``; returns how many embeddings."""
        self.db.execute(
            "UPDATE crops SET person_id = ? WHERE source LIKE ?", [person_id, source_pattern]
        )
        cursor = self.db.execute(
            "UPDATE embeddings SET person_id = ? WHERE source LIKE ?", [person_id, source_pattern]
        )
        return int(cursor.rowcount)

    def remove_samples(self, source_pattern: str) -> int:
        """Delete every sample whose source matches; returns how many embeddings."""
        cursor = self.db.execute("DELETE FROM embeddings WHERE source LIKE ?", [source_pattern])
        self.db.execute("DELETE FROM crops WHERE source LIKE ?", [source_pattern])
        return int(cursor.rowcount)

    def remove_if_empty(self, person_id: int) -> bool:
        """Delete the person if no sample is left; returns whether it was."""
        left = self.db.execute(
            "SELECT (SELECT COUNT(*) FROM embeddings WHERE person_id = ?)"
            " + (SELECT COUNT(*) FROM crops WHERE person_id = ?)",
            [person_id, person_id],
        ).fetchone()[0]
        if left:
            return False
        self.db.table("people").delete_where("id = ?", [person_id])
        return True

    def namings_for(self, visit_ids: list[str]) -> dict[str, namings.NamingRow]:
        """Who each of these visits is named as, where one is."""
        with self._reading():
            return namings.for_visits(self.db, visit_ids)

    def _store_rows(self, person_id: int, person: ExportedPerson) -> int:
        """Insert a person's crops and embeddings; returns how many embeddings."""
        crop_ids = [
            self._insert(
                "crops",
                {
                    "person_id": person_id,
                    "png": crop.png,
                    "quality": crop.quality,
                    "source": crop.source,
                    "created": crop.created,
                },
            )
            for crop in person.crops
        ]
        for embedding in person.embeddings:
            self._insert(
                "embeddings",
                {
                    "person_id": person_id,
                    "crop_id": None if embedding.crop is None else crop_ids[embedding.crop],
                    "embedding_key": embedding.embedding_key,
                    "vector": embedding.vector,
                    "quality": embedding.quality,
                    "source": embedding.source,
                    "created": embedding.created,
                    "dim": len(embedding.vector) // 4,
                },
            )
        return len(person.embeddings)
