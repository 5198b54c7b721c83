"""The gallery store on real SQLite files: schema, writes all-or-nothing, refusals."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.errors import GalleryError
from device.identity.gallery import SCHEMA_VERSION, Gallery, Sample, normalise_name
from tests.conftest import ROOT

SHA_A = "a" * 64
SHA_B = "b" * 64


def unit(seed: int, dim: int = 128) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def samples(count: int, seed: int = 0, crop: bool = True) -> list[Sample]:
    return [
        Sample(unit(seed * 100 + i), 0.9, f"test:{i}", b"png-bytes" if crop else None)
        for i in range(count)
    ]


def table_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("people", "crops", "embeddings")
        }


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[Gallery]:
    with Gallery.open(tmp_path / "g.db") as opened:
        yield opened


def test_new_gallery_is_wal_with_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "g.db"
    Gallery.open(path).close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert table_counts(path) == {"people": 0, "crops": 0, "embeddings": 0}
    assert path.stat().st_mode & 0o077 == 0


def test_open_without_create_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="does not exist"):
        Gallery.open(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_corrupt_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(GalleryError, match=r"unusable|corrupt"):
        Gallery.open(path)
    assert path.read_bytes() == before


def test_other_sqlite_file_and_newer_schema_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(GalleryError, match="not a peephole gallery"):
        Gallery.open(other)
    newer = tmp_path / "newer.db"
    Gallery.open(newer).close()
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(GalleryError, match="newer"):
        Gallery.open(newer)


def test_add_list_and_embeddings_by_model(gallery: Gallery) -> None:
    gallery.add_person_samples("Zoë", samples(3, seed=1), SHA_A, append=False)
    gallery.add_person_samples("Ålfred", samples(2, seed=2, crop=False), SHA_B, append=False)
    rows = gallery.embeddings(SHA_A)
    assert rows.names == ["Zoë"]
    assert rows.vectors.shape == (3, 128)
    np.testing.assert_array_equal(rows.vectors[0], unit(100))
    summaries = {s.name: s for s in gallery.summaries(SHA_A)}
    assert summaries["Zoë"].samples == 3 and summaries["Zoë"].status == "ok"
    assert summaries["Ålfred"].samples == 0 and summaries["Ålfred"].other_model_samples == 2
    assert summaries["Ålfred"].status == "needs re-enrollment"
    assert {s.name: s.status for s in gallery.summaries(SHA_B)}["Zoë"] == "needs reembed"


def test_duplicate_name_needs_append_and_refusal_changes_nothing(gallery: Gallery) -> None:
    gallery.add_person_samples("Anna", samples(2), SHA_A, append=False)
    generation = gallery.generation()
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.add_person_samples(" anna ", samples(3, seed=5), SHA_A, append=False)
    assert table_counts(gallery.path) == {"people": 1, "crops": 2, "embeddings": 2}
    assert gallery.generation() == generation
    assert gallery.add_person_samples("ANNA", samples(1, seed=6), SHA_A, append=True) == "Anna"
    assert len(gallery.person_embeddings("anna", SHA_A)) == 3


@pytest.mark.parametrize("bad", ["", "   ", "a\nb", "x" * 101])
def test_unusable_names_are_refused(bad: str) -> None:
    with pytest.raises(GalleryError):
        normalise_name(bad)


def test_remove_deletes_everything_about_the_person(gallery: Gallery) -> None:
    gallery.add_person_samples("Anna", samples(3, seed=1), SHA_A, append=False)
    gallery.add_person_samples("Bob", samples(2, seed=2), SHA_A, append=False)
    assert gallery.remove_person("anna") == "Anna"
    assert table_counts(gallery.path) == {"people": 1, "crops": 2, "embeddings": 2}
    with sqlite3.connect(gallery.path) as conn:
        owners = {row[0] for row in conn.execute("SELECT person_id FROM crops")}
        owners |= {row[0] for row in conn.execute("SELECT person_id FROM embeddings")}
        (bob,) = conn.execute("SELECT id FROM people WHERE name = 'Bob'").fetchone()
    assert owners == {bob}
    with pytest.raises(GalleryError, match="no person named"):
        gallery.remove_person("Anna")


def test_rename_keeps_samples_and_refuses_a_taken_name(gallery: Gallery) -> None:
    gallery.add_person_samples("Anna", samples(2, seed=1), SHA_A, append=False)
    gallery.add_person_samples("Bob", samples(1, seed=2), SHA_A, append=False)
    with pytest.raises(GalleryError, match="already enrolled"):
        gallery.rename_person("Anna", "bob")
    assert gallery.rename_person("anna", "Anne-Marie") == ("Anna", "Anne-Marie")
    assert len(gallery.person_embeddings("Anne-Marie", SHA_A)) == 2
    assert gallery.names() == ["Anne-Marie", "Bob"]


def test_generation_changes_on_every_matching_relevant_write(gallery: Gallery) -> None:
    seen = [gallery.generation()]
    gallery.add_person_samples("Anna", samples(1), SHA_A, append=False)
    seen.append(gallery.generation())
    gallery.rename_person("Anna", "Anne")
    seen.append(gallery.generation())
    gallery.touch_last_seen("Anne", 1000.0)
    assert gallery.generation() == seen[-1]
    gallery.remove_person("Anne")
    seen.append(gallery.generation())
    assert len(set(seen)) == len(seen)


def test_touch_last_seen_only_moves_forward(gallery: Gallery) -> None:
    gallery.add_person_samples("Anna", samples(1), SHA_A, append=False)
    gallery.touch_last_seen("anna", 2000.0)
    gallery.touch_last_seen("anna", 1000.0)
    (summary,) = gallery.summaries(SHA_A)
    assert summary.last_seen == 2000.0


def test_read_only_file_can_be_read_but_not_written(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    with Gallery.open(path) as gallery:
        gallery.add_person_samples("Anna", samples(2), SHA_A, append=False)
    path.chmod(0o444)
    try:
        before = path.read_bytes()
        with Gallery.open(path) as gallery:
            assert gallery.read_only
            assert gallery.names() == ["Anna"]
            with pytest.raises(GalleryError, match="read-only"):
                gallery.add_person_samples("Bob", samples(1), SHA_A, append=False)
        assert path.read_bytes() == before
    finally:
        path.chmod(0o644)


def test_export_records_import_round_trip(tmp_path: Path, gallery: Gallery) -> None:
    gallery.add_person_samples("Anna", samples(2, seed=1), SHA_A, append=False)
    gallery.add_person_samples("Bob", samples(1, seed=2, crop=False), SHA_B, append=False)
    gallery.touch_last_seen("Bob", 123.0)
    records = gallery.export_records()
    with Gallery.open(tmp_path / "copy.db") as copy:
        assert copy.import_records(records, append=False) == 3
        assert copy.export_records() == records
        with pytest.raises(GalleryError, match="already enrolled"):
            copy.import_records(records, append=False)
        assert copy.export_records() == records


names = st.text(min_size=1, max_size=30).filter(lambda n: _usable(n))


def _usable(name: str) -> bool:
    try:
        normalise_name(name)
    except GalleryError:
        return False
    return True


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chosen=st.lists(names, min_size=1, max_size=5))
def test_any_unicode_names_round_trip(tmp_path: Path, chosen: list[str]) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    keys: set[str] = set()
    with Gallery.open(folder / "a.db") as source:
        for i, name in enumerate(chosen):
            key = normalise_name(name).casefold()
            if key in keys:
                with pytest.raises(GalleryError, match="already enrolled"):
                    source.add_person_samples(name, samples(1, seed=i), SHA_A, append=False)
                continue
            keys.add(key)
            stored = source.add_person_samples(name, samples(1, seed=i), SHA_A, append=False)
            assert stored == normalise_name(name)
            assert source.display_name(f" {name}\t") == stored
        records = source.export_records()
    with Gallery.open(folder / "b.db") as copy:
        copy.import_records(records, append=False)
        assert copy.export_records() == records
        assert len(copy.names()) == len(keys)


CREATOR = """
import sys
from pathlib import Path
import numpy as np
from device.identity.gallery import Gallery, Sample
with Gallery.open(Path(sys.argv[1])) as gallery:
    for i in range(20):
        vector = np.full(128, 1 / np.sqrt(128), dtype=np.float32)
        gallery.add_person_samples(f"{sys.argv[2]} {i}", [Sample(vector, 1.0, "t")], "a" * 64,
                                   append=False)
"""


def test_two_processes_create_and_fill_one_new_gallery(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(path), tag],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("left", "right")
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    with Gallery.open(path, create=False) as gallery:
        assert len(gallery.names()) == 40
        assert gallery.generation() == 40
