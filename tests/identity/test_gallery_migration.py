"""Schema v1 -> v2 on a gallery made by the old code, and the old export format.

``fixtures/gallery_v1.sqlite`` and ``fixtures/gallery_export_v1.json`` were made
once, by the code at commit df1a97c (schema version 1, export format
``peephole-gallery/1``), with the ``Gallery`` API: "Anna" (2 samples with
crops), "Bjørn Ødegård" (2 with crops) and "Chidi" (1 without a crop) enrolled
under the mirror-averaged embedding key of a made-up model file
(``embedding_key(sha256(b"peephole v1 fixture model"), True)``), the 4 crops
(random 8x8 colour blocks scaled to 112x112, PNG) then re-embedded under the
plain key by ``crops_missing`` + ``add_crop_embeddings``, Anna's last_seen set
to 1700000000.5 by ``touch_last_seen``, and that gallery exported with
``write_export(gallery.export_records(), ...)``. Vectors are seeded random
128-d unit vectors. The tests copy the fixtures before opening them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from device.errors import GalleryError
from device.identity import gallery as gallery_module
from device.identity.export_format import EXPORT_FORMAT, parse_export, write_export
from device.identity.gallery import SCHEMA_VERSION, Gallery
from device.vision.manifest import embedding_key
from tests.conftest import FIXTURES, ROOT

V1_GALLERY = FIXTURES / "gallery_v1.sqlite"
V1_EXPORT = FIXTURES / "gallery_export_v1.json"
FILE_SHA = hashlib.sha256(b"peephole v1 fixture model").hexdigest()
MIRROR_KEY = embedding_key(FILE_SHA, True)
PLAIN_KEY = embedding_key(FILE_SHA, False)
PEOPLE = ["Anna", "Bjørn Ødegård", "Chidi"]


def copy_v1(tmp_path: Path) -> Path:
    path = tmp_path / "gallery.db"
    shutil.copyfile(V1_GALLERY, path)
    path.chmod(0o600)
    return path


def dump(path: Path, key_column: str) -> dict[str, Any]:
    """Everything stored, read with plain sqlite3 (the key column named as the version names it)."""
    with sqlite3.connect(path) as conn:
        return {
            "user_version": conn.execute("PRAGMA user_version").fetchone()[0],
            "people": conn.execute(
                "SELECT id, name, name_key, created, last_seen FROM people ORDER BY id"
            ).fetchall(),
            "crops": conn.execute(
                "SELECT id, person_id, png, quality, source, created FROM crops ORDER BY id"
            ).fetchall(),
            "embeddings": conn.execute(
                f"SELECT id, person_id, crop_id, {key_column}, dim, vector, quality, source, "
                "created FROM embeddings ORDER BY id"
            ).fetchall(),
            "generation": conn.execute("SELECT generation FROM state").fetchall(),
        }


def schema(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
        return list(rows)


def assert_untouched_v1(path: Path) -> None:
    """The main file is the fixture byte for byte, and reads as v1 with all its data."""
    assert path.read_bytes() == V1_GALLERY.read_bytes()
    assert dump(path, "model_sha256") == dump(V1_GALLERY, "model_sha256")
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(embeddings)")]
    assert "model_sha256" in columns and "embedding_key" not in columns


@pytest.fixture(scope="module")
def v1_content(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # Read from a copy: even a read-only open would leave -wal/-shm in fixtures/.
    return dump(copy_v1(tmp_path_factory.mktemp("v1")), "model_sha256")


def test_the_fixture_is_what_the_docstring_says(v1_content: dict[str, Any]) -> None:
    assert v1_content["user_version"] == 1
    assert [row[1] for row in v1_content["people"]] == PEOPLE
    assert len(v1_content["crops"]) == 4
    keys = [row[3] for row in v1_content["embeddings"]]
    assert keys.count(MIRROR_KEY) == 5 and keys.count(PLAIN_KEY) == 4


def test_v1_gallery_migrates_to_v2_with_nothing_lost(
    tmp_path: Path, v1_content: dict[str, Any]
) -> None:
    path = copy_v1(tmp_path)
    with Gallery.open(path) as gallery:
        assert gallery.names() == PEOPLE
        mirrored = gallery.embeddings(MIRROR_KEY)
        assert mirrored.names == PEOPLE and mirrored.vectors.shape == (5, 128)
        plain = gallery.embeddings(PLAIN_KEY)
        assert plain.names == PEOPLE[:2] and plain.vectors.shape == (4, 128)
        summaries = {s.name: s for s in gallery.summaries(PLAIN_KEY)}
        assert summaries["Anna"].last_seen == 1700000000.5
        assert summaries["Chidi"].status == "needs re-enrollment"
        assert [(s.samples, s.other_model_samples, s.crops) for s in summaries.values()] == [
            (2, 2, 2),
            (2, 2, 2),
            (0, 1, 0),
        ]
        # The same people, crops and embeddings the old code exported from this file.
        assert gallery.export_records() == parse_export(V1_EXPORT)
    migrated = dump(path, "embedding_key")
    assert migrated == {**v1_content, "user_version": SCHEMA_VERSION}
    fresh = tmp_path / "fresh.db"
    Gallery.open(fresh).close()
    assert schema(path) == schema(fresh)
    assert path.stat().st_mode & 0o777 == 0o600


def test_migration_failing_mid_way_leaves_the_v1_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_v1(tmp_path)
    renamed: list[bool] = []

    def rename_then_fail(db: Any) -> None:
        gallery_module._schema_v2(db)
        renamed.append("embedding_key" in db.table("embeddings").columns_dict)
        raise RuntimeError("interrupted after the rename")

    migrations = [gallery_module._schema_v1, rename_then_fail]
    kind = dataclasses.replace(gallery_module.GALLERY, migrations=migrations)
    monkeypatch.setattr(gallery_module, "GALLERY", kind)
    with pytest.raises(RuntimeError, match="interrupted after the rename"):
        Gallery.open(path)
    assert renamed == [True]
    assert_untouched_v1(path)
    monkeypatch.undo()
    with Gallery.open(path) as gallery:
        assert gallery.names() == PEOPLE
    assert dump(path, "embedding_key")["user_version"] == SCHEMA_VERSION


KILLED = """
import sys, time
from pathlib import Path
from device.identity import gallery

def rename_then_hang(db):
    gallery._schema_v2(db)
    # A cache too small for the transaction: its pages spill into the WAL uncommitted.
    db.execute("PRAGMA cache_size = 2")
    db.execute("UPDATE state SET generation = generation + 1000")
    db.execute("UPDATE people SET last_seen = 1")
    db.execute("UPDATE crops SET quality = 0")
    print("renamed", flush=True)
    time.sleep(120)

gallery.MIGRATIONS[1] = rename_then_hang
gallery.Gallery.open(Path(sys.argv[1]))
"""


def test_migration_killed_mid_way_leaves_the_v1_file(tmp_path: Path) -> None:
    path = copy_v1(tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line == "renamed\n", worker.stderr.read() if worker.stderr else ""
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    # The killed transaction had reached the disk (uncommitted frames in the WAL).
    assert path.with_name(f"{path.name}-wal").stat().st_size > 0
    assert_untouched_v1(path)
    with Gallery.open(path) as gallery:
        assert gallery.names() == PEOPLE
        assert gallery.export_records() == parse_export(V1_EXPORT)


MIGRATOR = """
import sys
from pathlib import Path
from device.identity.gallery import Gallery
with Gallery.open(Path(sys.argv[1])) as gallery:
    assert len(gallery.names()) == 3
"""


def test_two_processes_opening_a_v1_gallery_migrate_it_once(
    tmp_path: Path, v1_content: dict[str, Any]
) -> None:
    path = copy_v1(tmp_path)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, str(path)], cwd=ROOT, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert dump(path, "embedding_key") == {**v1_content, "user_version": SCHEMA_VERSION}


def test_read_only_v1_gallery_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = copy_v1(tmp_path)
    path.chmod(0o400)
    try:
        with pytest.raises(GalleryError, match="needs an upgrade and is read-only"):
            Gallery.open(path)
    finally:
        path.chmod(0o600)
    assert_untouched_v1(path)


def test_v1_export_still_imports(tmp_path: Path) -> None:
    records = parse_export(V1_EXPORT)
    assert [person.name for person in records] == PEOPLE
    original = json.loads(V1_EXPORT.read_text(encoding="utf-8"))["people"]
    assert [[e.embedding_key for e in person.embeddings] for person in records] == [
        [e["model_sha256"] for e in person["embeddings"]] for person in original
    ]
    with Gallery.open(tmp_path / "restored.db") as gallery:
        assert gallery.import_records(records, append=False) == 9
        assert gallery.export_records() == records
        assert gallery.person_embeddings("anna", PLAIN_KEY).shape == (2, 128)
        assert gallery.person_embeddings("chidi", MIRROR_KEY).shape == (1, 128)


def test_export_is_written_in_the_new_format_and_reads_back(tmp_path: Path) -> None:
    records = parse_export(V1_EXPORT)
    written = tmp_path / "backup.json"
    write_export(records, written)
    document = json.loads(written.read_text(encoding="utf-8"))
    assert document["format"] == EXPORT_FORMAT == "peephole-gallery/2"
    (first, *_) = document["people"][0]["embeddings"]
    assert "embedding_key" in first and "model_sha256" not in first
    assert parse_export(written) == records
    assert written.stat().st_mode & 0o077 == 0


def test_unknown_export_format_is_refused(tmp_path: Path) -> None:
    document = json.loads(V1_EXPORT.read_text(encoding="utf-8"))
    for format_ in ("peephole-gallery/3", ["peephole-gallery/1"], None):
        other = tmp_path / "other.json"
        other.write_text(json.dumps({**document, "format": format_}), encoding="utf-8")
        with pytest.raises(GalleryError, match="is not a gallery export"):
            parse_export(other)
    # A v2 file with the old field name (or a v1 file with the new one) is not valid.
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps({**document, "format": EXPORT_FORMAT}), encoding="utf-8")
    with pytest.raises(GalleryError, match="not a valid gallery export"):
        parse_export(mixed)
