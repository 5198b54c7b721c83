"""The gallery: enrolled people, their embeddings and (optionally) their aligned crops.

One SQLite file in WAL mode, so the running service can read while the CLI
writes. Tables (schema version in ``PRAGMA user_version``):

- ``people``: one row per person (display name, created, last seen).
- ``crops``: each enrollment sample's aligned 112x112 face as PNG, kept so the
  gallery can be re-embedded after a model change (``[gallery] store_crops``).
- ``embeddings``: float32 vectors, each tagged with the sha256 of the model that
  produced it; rows of another model are never compared with the current one.
- ``state``: one row whose ``generation`` triggers bump on every change that
  matters to matching, so a reader can tell cheaply that it must reload.

Every write runs in one ``BEGIN IMMEDIATE`` transaction: it happens entirely or
not at all.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from device.errors import GalleryError, disk_full_hint

SCHEMA_VERSION = 1
MAX_NAME_LENGTH = 100
BUSY_TIMEOUT_S = 10.0


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


# MIGRATIONS[n] takes a gallery from schema version n to n + 1.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_schema_v1]
assert len(MIGRATIONS) == SCHEMA_VERSION


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


class Gallery:
    """A gallery database file. Not thread-safe: one Gallery per thread."""

    def __init__(self, path: Path, connection: sqlite3.Connection, read_only: bool) -> None:
        self.path = path
        self.read_only = read_only
        self._conn = connection
        self.db = sqlite_utils.Database(connection)

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> Gallery:
        """Open (and with ``create``, make or migrate) the gallery at ``path``."""
        path = Path(path)
        exists = path.exists()
        if not exists and not create:
            raise GalleryError(f"gallery {path} does not exist (enroll someone first)")
        if exists and not path.is_file():
            raise GalleryError(f"gallery {path} is not a file")
        # A file without write permission bits is read-only even for root.
        read_only = exists and (
            not os.access(path, os.W_OK) or not path.stat().st_mode & stat.S_IWUSR
        )
        try:
            if not exists:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Faces are personal data: only the owner may read the gallery.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            if read_only:
                connection = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S
                )
            else:
                connection = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S)
        except (OSError, sqlite3.Error) as error:
            raise GalleryError(
                f"cannot open gallery {path}: {error}{disk_full_hint(path)}"
            ) from None
        gallery = cls(path, connection, read_only)
        try:
            gallery._prepare(create)
        except sqlite3.Error as error:
            connection.close()
            raise GalleryError(
                f"gallery {path} is unusable: {error}{disk_full_hint(path)}"
            ) from None
        except GalleryError:
            connection.close()
            raise
        return gallery

    def _prepare(self, create: bool) -> None:
        conn = self._conn
        conn.execute("PRAGMA foreign_keys = ON")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"gallery {self.path} has schema version {version}, newer than this "
                f"peephole understands ({SCHEMA_VERSION}); upgrade peephole"
            )
        if version == 0 and tables:
            raise GalleryError(f"{self.path} is a SQLite file but not a peephole gallery")
        if version < SCHEMA_VERSION:
            if self.read_only:
                state = "is not a gallery" if version == 0 else "needs an upgrade"
                raise GalleryError(f"{self.path} {state} and is read-only")
            if version == 0 and not create:
                raise GalleryError(f"gallery {self.path} is empty")
            if conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
                raise GalleryError(f"gallery {self.path}: cannot switch to WAL mode")
            with self._write():
                current = int(conn.execute("PRAGMA user_version").fetchone()[0])
                for migrate in MIGRATIONS[current:]:
                    migrate(self.db)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise GalleryError(f"gallery {self.path} is corrupt: {check}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One immediate transaction: every change inside commits together or not at all."""
        if self.read_only:
            raise GalleryError(f"gallery {self.path} is read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise GalleryError(
                f"cannot write gallery {self.path}: {error}{disk_full_hint(self.path)}"
            ) from None
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as error:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise GalleryError(
                    f"cannot write gallery {self.path}: {error}{disk_full_hint(self.path)}"
                ) from None
            raise

    # Reading --------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        """Database errors while reading (a damaged file) become one-line GalleryErrors."""
        try:
            yield
        except sqlite3.Error as error:
            raise GalleryError(f"cannot read gallery {self.path}: {error}") from None

    def generation(self) -> int:
        """A counter that changes whenever embeddings or people are added, removed or renamed."""
        with self._reading():
            row = self._conn.execute("SELECT generation FROM state WHERE id = 1").fetchone()
        return int(row[0])

    def person_id(self, name: str) -> int | None:
        row = self._conn.execute(
            "SELECT id FROM people WHERE name_key = ?", (name_key(name),)
        ).fetchone()
        return None if row is None else int(row[0])

    def display_name(self, name: str) -> str:
        row = self._conn.execute(
            "SELECT name FROM people WHERE name_key = ?", (name_key(name),)
        ).fetchone()
        if row is None:
            raise GalleryError(f"no person named {name!r} in the gallery")
        return str(row[0])

    def names(self) -> list[str]:
        return [str(row[0]) for row in self._conn.execute("SELECT name FROM people ORDER BY name")]

    def embeddings(self, model_sha256: str) -> EmbeddingRows:
        with self._reading():
            rows = self._conn.execute(
                "SELECT p.name, e.dim, e.vector FROM embeddings e "
                "JOIN people p ON p.id = e.person_id "
                "WHERE e.model_sha256 = ? ORDER BY p.name_key, e.id",
                (model_sha256,),
            ).fetchall()
        names: list[str] = []
        index = np.zeros(len(rows), dtype=np.int64)
        dim = int(rows[0][1]) if rows else 0
        vectors = np.zeros((len(rows), dim), dtype=np.float32)
        for i, (name, row_dim, blob) in enumerate(rows):
            if int(row_dim) != dim or len(blob) != 4 * dim:
                raise GalleryError(f"gallery {self.path}: embedding of {name!r} has a wrong size")
            if not names or names[-1] != name:
                names.append(name)
            index[i] = len(names) - 1
            vectors[i] = np.frombuffer(blob, dtype="<f4")
        return EmbeddingRows(names=names, person_index=index, vectors=vectors)

    def person_embeddings(self, name: str, model_sha256: str) -> np.ndarray:
        rows = self._conn.execute(
            "SELECT e.vector FROM embeddings e JOIN people p ON p.id = e.person_id "
            "WHERE p.name_key = ? AND e.model_sha256 = ? ORDER BY e.id",
            (name_key(name), model_sha256),
        ).fetchall()
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([np.frombuffer(row[0], dtype="<f4") for row in rows])

    def summaries(self, model_sha256: str) -> list[PersonSummary]:
        rows = self._conn.execute(
            """
            SELECT p.name, p.created, p.last_seen,
              (SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id AND e.model_sha256 = ?),
              (SELECT COUNT(*) FROM embeddings e WHERE e.person_id = p.id AND e.model_sha256 != ?),
              (SELECT COUNT(*) FROM crops c WHERE c.person_id = p.id),
              (SELECT COUNT(*) FROM crops c WHERE c.person_id = p.id AND NOT EXISTS (
                 SELECT 1 FROM embeddings e WHERE e.crop_id = c.id AND e.model_sha256 = ?))
            FROM people p ORDER BY p.name_key
            """,
            (model_sha256, model_sha256, model_sha256),
        ).fetchall()
        return [
            PersonSummary(
                name=row[0],
                created=row[1],
                last_seen=row[2],
                samples=row[3],
                other_model_samples=row[4],
                crops=row[5],
                crops_to_embed=row[6],
            )
            for row in rows
        ]

    def crops_missing(self, model_sha256: str) -> list[tuple[int, int, str, bytes, float, str]]:
        """(crop id, person id, name, png, quality, source) of crops not embedded by the model."""
        return [
            (int(r[0]), int(r[1]), str(r[2]), bytes(r[3]), float(r[4] or 0.0), str(r[5] or ""))
            for r in self._conn.execute(
                "SELECT c.id, c.person_id, p.name, c.png, c.quality, c.source FROM crops c "
                "JOIN people p ON p.id = c.person_id WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                "WHERE e.crop_id = c.id AND e.model_sha256 = ?) ORDER BY c.id",
                (model_sha256,),
            )
        ]

    def export_records(self) -> list[dict[str, Any]]:
        """Every person with their crops and embeddings, as plain values (for export)."""
        people = []
        for person_id, name, created, last_seen in self._conn.execute(
            "SELECT id, name, created, last_seen FROM people ORDER BY name_key"
        ).fetchall():
            crops = self._conn.execute(
                "SELECT id, png, quality, source, created FROM crops WHERE person_id = ? "
                "ORDER BY id",
                (person_id,),
            ).fetchall()
            crop_position = {row[0]: i for i, row in enumerate(crops)}
            embeddings = self._conn.execute(
                "SELECT crop_id, model_sha256, vector, quality, source, created FROM embeddings "
                "WHERE person_id = ? ORDER BY id",
                (person_id,),
            ).fetchall()
            people.append(
                {
                    "name": name,
                    "created": created,
                    "last_seen": last_seen,
                    "crops": [
                        {"png": r[1], "quality": r[2], "source": r[3], "created": r[4]}
                        for r in crops
                    ],
                    "embeddings": [
                        {
                            "crop": crop_position.get(r[0]),
                            "model_sha256": r[1],
                            "vector": r[2],
                            "quality": r[3],
                            "source": r[4],
                            "created": r[5],
                        }
                        for r in embeddings
                    ],
                }
            )
        return people

    # Writing --------------------------------------------------------------

    def add_person_samples(
        self, name: str, samples: list[Sample], model_sha256: str, *, append: bool
    ) -> str:
        """Store ``samples`` for ``name`` in one transaction; returns the stored name.

        A new name creates the person. An existing name is refused unless ``append``.
        """
        display = normalise_name(name)
        if not samples:
            raise GalleryError(f"no samples to store for {display!r}")
        now = time.time()
        with self._write():
            existing = self.person_id(display)
            if existing is not None and not append:
                raise GalleryError(
                    f"{self.display_name(display)!r} is already enrolled; "
                    "use --append to add samples, or choose another name"
                )
            if existing is None:
                person_id = self._insert(
                    "people",
                    {
                        "name": display,
                        "name_key": name_key(display),
                        "created": now,
                    },
                )
            else:
                person_id = existing
                display = self.display_name(display)
            for sample in samples:
                self._insert_sample(person_id, sample, model_sha256, now)
        return display

    def _insert(self, table: str, record: dict[str, Any]) -> int:
        cursor = self._conn.execute(
            f"INSERT INTO {table} ({', '.join(record)}) VALUES ({', '.join('?' * len(record))})",
            tuple(record.values()),
        )
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def _insert_sample(self, person_id: int, sample: Sample, model_sha256: str, now: float) -> None:
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
        self.add_embedding(person_id, crop_id, sample, model_sha256, now)

    def add_embedding(
        self, person_id: int, crop_id: int | None, sample: Sample, model_sha256: str, now: float
    ) -> None:
        vector = np.asarray(sample.embedding, dtype="<f4").reshape(-1)
        self._insert(
            "embeddings",
            {
                "person_id": person_id,
                "crop_id": crop_id,
                "model_sha256": model_sha256,
                "dim": int(vector.size),
                "vector": vector.tobytes(),
                "quality": sample.quality,
                "source": sample.source,
                "created": now,
            },
        )

    def add_crop_embeddings(self, rows: list[tuple[int, int, Sample]], model_sha256: str) -> None:
        """Store re-computed embeddings: (crop id, person id, sample) each, in one transaction."""
        now = time.time()
        with self._write():
            for crop_id, person_id, sample in rows:
                self.add_embedding(person_id, crop_id, sample, model_sha256, now)

    def remove_person(self, name: str) -> str:
        """Delete the person and every embedding and crop of theirs."""
        with self._write():
            display = self.display_name(name)
            person_id = self.person_id(name)
            self._conn.execute("DELETE FROM embeddings WHERE person_id = ?", (person_id,))
            self._conn.execute("DELETE FROM crops WHERE person_id = ?", (person_id,))
            self._conn.execute("DELETE FROM people WHERE id = ?", (person_id,))
        return display

    def rename_person(self, old: str, new: str) -> tuple[str, str]:
        target = normalise_name(new)
        with self._write():
            display = self.display_name(old)
            other = self.person_id(target)
            if other is not None and other != self.person_id(old):
                raise GalleryError(f"{self.display_name(target)!r} is already enrolled")
            self._conn.execute(
                "UPDATE people SET name = ?, name_key = ? WHERE name_key = ?",
                (target, name_key(target), name_key(old)),
            )
        return display, target

    def touch_last_seen(self, person: str, when: float) -> None:
        """Record that ``person`` was recognised at ``when`` (seconds since the epoch)."""
        with self._write():
            self._conn.execute(
                "UPDATE people SET last_seen = MAX(COALESCE(last_seen, 0), ?) WHERE name_key = ?",
                (when, name_key(person)),
            )

    def import_records(self, people: list[dict[str, Any]], *, append: bool) -> int:
        """Add exported people in one transaction; returns how many samples were added."""
        added = 0
        with self._write():
            for person in people:
                display = normalise_name(person["name"])
                person_id = self.person_id(display)
                if person_id is not None and not append:
                    raise GalleryError(
                        f"{self.display_name(display)!r} is already enrolled; "
                        "use --append to add the imported samples"
                    )
                if person_id is None:
                    person_id = self._insert(
                        "people",
                        {
                            "name": display,
                            "name_key": name_key(display),
                            "created": person["created"],
                            "last_seen": person["last_seen"],
                        },
                    )
                crop_ids = [
                    self._insert("crops", {"person_id": person_id, **crop})
                    for crop in person["crops"]
                ]
                for embedding in person["embeddings"]:
                    crop = embedding["crop"]
                    record = {key: value for key, value in embedding.items() if key != "crop"}
                    record["dim"] = len(record["vector"]) // 4
                    self._insert(
                        "embeddings",
                        {
                            "person_id": person_id,
                            "crop_id": None if crop is None else crop_ids[crop],
                            **record,
                        },
                    )
                    added += 1
        return added
