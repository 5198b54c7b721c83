"""`peephole enroll`, `people` and `gallery` through the CLI on real files and models."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from device.cli import main
from tests.conftest import read_bgr, require_shared


def numbered(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"), key=lambda p: int(p.stem))


@pytest.fixture(scope="session")
def celebrity() -> Path:
    return require_shared("data/celebrity112")


class Cli(Protocol):
    """Runs ``peephole`` on a temporary gallery with the reference float model."""

    db: Path

    def __call__(self, *args: str, database: Path | None = None) -> Result: ...


@pytest.fixture
def cli(reference_f32: tuple[Path, Path], tmp_path: Path) -> Cli:
    model, manifest = reference_f32

    class Runner:
        db = tmp_path / "gallery.db"

        def __call__(self, *args: str, database: Path | None = None) -> Result:
            config = list(args[:2]) if args[:1] == ("--config",) else []
            target = database or self.db
            options = ["--db", str(target), "--model", str(model), "--manifest", str(manifest)]
            return CliRunner().invoke(main, [*config, *options, *args[len(config) :]])

    return Runner()


def database_state(path: Path) -> str:
    """A digest of the file bytes and every row: equal digests mean nothing changed."""
    digest = hashlib.sha256(path.read_bytes() if path.exists() else b"<missing>")
    if path.exists():
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            for table in ("people", "crops", "embeddings", "state"):
                for row in conn.execute(f"SELECT * FROM {table} ORDER BY id"):
                    digest.update(repr(row).encode())
    return digest.hexdigest()


def error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("peephole: error:")]
    assert len(lines) == 1, result.stderr
    assert ("Traceback" not in result.stderr and result.exception is None) or isinstance(
        result.exception, SystemExit
    )
    return lines[0]


def enroll_images(cli: Cli, name: str, paths: list[Path], *extra: str) -> Result:
    return cli("enroll", "--name", name, *extra, "--images", *[str(p) for p in paths])


@pytest.fixture
def two_faces(celebrity: Path, tmp_path: Path) -> Path:
    left = read_bgr(numbered(celebrity / "Hugh_Jackman")[0])
    right = read_bgr(numbered(celebrity / "Tina_Fey")[0])
    path = tmp_path / "two.png"
    cv2.imwrite(
        str(path), cv2.copyMakeBorder(np.hstack([left, right]), 56, 56, 0, 0, cv2.BORDER_CONSTANT)
    )
    return path


@pytest.fixture
def no_face(tmp_path: Path) -> Path:
    path = tmp_path / "wall.png"
    gradient = np.tile(np.linspace(40, 200, 160, dtype=np.uint8), (120, 1))
    cv2.imwrite(str(path), cv2.merge([gradient, gradient, gradient]))
    return path


def test_enroll_from_images_then_list(cli: Cli, celebrity: Path) -> None:
    result = enroll_images(cli, "Hugh Jackman", numbered(celebrity / "Hugh_Jackman")[:5])
    assert result.exit_code == 0, result.output
    assert "enrolled Hugh Jackman" in result.stdout
    listing = cli("people", "list", "--json")
    (record,) = [json.loads(line) for line in listing.stdout.splitlines()]
    assert record["name"] == "Hugh Jackman" and record["status"] == "ok"
    assert 3 <= record["samples"] == record["crops"] <= 5


def test_single_photo_is_accepted_with_a_note(cli: Cli, celebrity: Path) -> None:
    result = enroll_images(cli, "Tina", numbered(celebrity / "Tina_Fey")[:1])
    assert result.exit_code == 0, result.output
    assert "recognise better" in result.stderr and "1 sample" in result.stdout


def test_skips_no_face_and_crowds_unless_largest_face(
    cli: Cli, celebrity: Path, two_faces: Path, no_face: Path
) -> None:
    good = numbered(celebrity / "Hugh_Jackman")[:2]
    result = enroll_images(cli, "Hugh", [no_face, two_faces, *good])
    assert result.exit_code == 0, result.output
    assert f"{no_face}: skipped: no face" in result.stderr
    assert f"{two_faces}: skipped: several faces" in result.stderr
    result = enroll_images(cli, "Crowd", [two_faces], "--largest-face")
    assert result.exit_code == 0, result.output


def test_refusals_leave_the_database_exactly_as_it_was(
    cli: Cli, celebrity: Path, two_faces: Path, no_face: Path, tmp_path: Path
) -> None:
    hugh = numbered(celebrity / "Hugh_Jackman")
    assert enroll_images(cli, "Hugh", hugh[:3]).exit_code == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = database_state(cli.db)
    cases = {
        "no face": ([no_face], (), "no face"),
        "several faces": ([two_faces], (), "several faces"),
        "too few good samples": ([hugh[3], no_face], ("--min-samples", "2"), "2 needed"),
        "duplicate name": (hugh[3:5], (), "already enrolled"),
        "unreadable image": ([broken], (), "unreadable"),
        "non-existent path": ([tmp_path / "nope.jpg"], (), "no such file"),
    }
    for case, (paths, extra, expected) in cases.items():
        name = "hugh" if case == "duplicate name" else f"New {case}"
        result = enroll_images(cli, name, paths, *extra)
        assert result.exit_code == 1, (case, result.output)
        assert expected in error_line(result), case
        assert database_state(cli.db) == before, case


def test_read_only_and_corrupt_databases_are_refused(
    cli: Cli, celebrity: Path, tmp_path: Path
) -> None:
    photos = numbered(celebrity / "Hugh_Jackman")[:2]
    assert enroll_images(cli, "Hugh", photos).exit_code == 0
    cli.db.chmod(0o444)
    try:
        before = database_state(cli.db)
        result = enroll_images(cli, "Other", photos)
        assert result.exit_code == 1 and "read-only" in error_line(result)
        assert database_state(cli.db) == before
        listing = cli("people", "list")
        assert listing.exit_code == 0 and "Hugh" in listing.stdout
    finally:
        cli.db.chmod(0o644)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    corrupt_bytes = corrupt.read_bytes()
    for args in (["enroll", "--name", "X", "--images", str(photos[0])], ["people", "list"]):
        result = cli(*args, database=corrupt)
        assert result.exit_code == 1 and "gallery" in error_line(result)
    assert corrupt.read_bytes() == corrupt_bytes


def test_append_adds_samples_without_near_duplicates(cli: Cli, celebrity: Path) -> None:
    hugh = numbered(celebrity / "Hugh_Jackman")
    assert enroll_images(cli, "Hugh", hugh[:2]).exit_code == 0
    result = enroll_images(cli, "HUGH", [hugh[0], hugh[5]], "--append")
    assert result.exit_code == 0, result.output
    assert f"{hugh[0]}: skipped: near-duplicate" in result.stderr
    (record,) = [json.loads(line) for line in cli("people", "list", "--json").stdout.splitlines()]
    assert record["name"] == "Hugh" and record["samples"] == 3


def test_enroll_from_video_takes_varied_samples(cli: Cli) -> None:
    video = require_shared("data/video/short_hamilton_clip.mp4")
    result = cli(
        "enroll", "--name", "Lin", "--video", str(video), "--largest-face", "--samples", "5"
    )
    assert result.exit_code == 0, result.output
    assert "sample 5/5" in result.stderr
    with sqlite3.connect(cli.db) as conn:
        vectors = [
            np.frombuffer(r[0], dtype="<f4") for r in conn.execute("SELECT vector FROM embeddings")
        ]
        sources = [r[0] for r in conn.execute("SELECT source FROM embeddings")]
    similarities = np.stack(vectors) @ np.stack(vectors).T
    assert np.max(similarities[~np.eye(5, dtype=bool)]) < 0.95
    assert len(set(sources)) == 5 and all("#" in s for s in sources)
    photo = require_shared("data/video/lin-manuel-miranda.png")
    identified = json.loads(cli("identify", "--json", str(photo)).stdout.splitlines()[0])
    assert identified["person"] == "Lin"


def test_people_remove_and_rename(cli: Cli, celebrity: Path) -> None:
    assert enroll_images(cli, "Hugh", numbered(celebrity / "Hugh_Jackman")[:3]).exit_code == 0
    assert enroll_images(cli, "Tina", numbered(celebrity / "Tina_Fey")[:2]).exit_code == 0
    renamed = cli("people", "rename", "tina", "Tina Fey")
    assert renamed.exit_code == 0 and "renamed Tina to Tina Fey" in renamed.stdout
    assert cli("people", "remove", "Hugh").exit_code == 0
    with sqlite3.connect(cli.db) as conn:
        (hugh_rows,) = conn.execute(
            "SELECT (SELECT COUNT(*) FROM people WHERE name = 'Hugh') + "
            "(SELECT COUNT(*) FROM crops c LEFT JOIN people p ON p.id = c.person_id "
            " WHERE p.name IS NULL OR p.name != 'Tina Fey') + "
            "(SELECT COUNT(*) FROM embeddings e LEFT JOIN people p ON p.id = e.person_id "
            " WHERE p.name IS NULL OR p.name != 'Tina Fey')"
        ).fetchone()
    assert hugh_rows == 0
    missing = cli("people", "remove", "Hugh")
    assert missing.exit_code == 1 and "no person named" in error_line(missing)


def test_export_import_round_trip_and_reembed(
    cli: Cli, celebrity: Path, tmp_path: Path, reference_uint8: tuple[Path, Path]
) -> None:
    assert enroll_images(cli, "Hugh", numbered(celebrity / "Hugh_Jackman")[:3]).exit_code == 0
    assert enroll_images(cli, "Zoë", numbered(celebrity / "Tina_Fey")[:2]).exit_code == 0
    backup = tmp_path / "backup.json"
    assert cli("gallery", "export", str(backup)).exit_code == 0
    copy = tmp_path / "copy.db"
    imported = cli("gallery", "import", str(backup), database=copy)
    assert imported.exit_code == 0, imported.output
    assert cli("gallery", "export", str(tmp_path / "again.json"), database=copy).exit_code == 0
    first, second = (json.loads(p.read_text()) for p in (backup, tmp_path / "again.json"))
    assert first["people"] == second["people"]
    before = database_state(copy)
    again = cli("gallery", "import", str(backup), database=copy)
    assert again.exit_code == 1 and "already enrolled" in error_line(again)
    assert database_state(copy) == before
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "peephole-gallery/1", "people": [{"name": 3}]}')
    assert cli("gallery", "import", str(bad), database=copy).exit_code == 1
    assert database_state(copy) == before

    model, manifest = reference_uint8
    other = ["--db", str(copy), "--model", str(model), "--manifest", str(manifest)]
    listing = CliRunner().invoke(main, [*other, "people", "list", "--json"])
    assert {json.loads(line)["status"] for line in listing.stdout.splitlines()} == {"needs reembed"}
    reembedded = CliRunner().invoke(main, [*other, "gallery", "reembed"])
    assert reembedded.exit_code == 0 and "re-embedded 5 crop(s)" in reembedded.stdout
    listing = CliRunner().invoke(main, [*other, "people", "list", "--json"])
    records = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(r["status"], r["samples"], r["other_model_samples"]) for r in records] == [
        ("ok", 3, 3),
        ("ok", 2, 2),
    ]


def test_mirror_averaged_manifest_keeps_its_own_gallery_rows(
    cli: Cli, celebrity: Path, tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    """The same file under a mirror-averaged manifest is another embedding function."""
    assert enroll_images(cli, "Hugh", numbered(celebrity / "Hugh_Jackman")[:3]).exit_code == 0
    model, manifest = reference_f32
    mirrored = tmp_path / "mirrored.json"
    mirrored.write_text(json.dumps({**json.loads(manifest.read_text()), "mirror_average": True}))
    other = ["--db", str(cli.db), "--model", str(model), "--manifest", str(mirrored)]

    listing = CliRunner().invoke(main, [*other, "people", "list", "--json"])
    record = json.loads(listing.stdout)
    counts = (record["status"], record["samples"], record["other_model_samples"])
    assert counts == ("needs reembed", 0, 3)
    clip = str(require_shared("data/video/short_hamilton_clip.mp4"))
    outbox = str(tmp_path / "outbox.db")
    watched = CliRunner().invoke(
        main, [*other, "run", "--source", clip, "--stop-after-frames", "1", "--outbox", outbox]
    )
    assert watched.exit_code == 0, watched.output
    assert "not recognised until 'peephole gallery reembed': Hugh" in watched.stderr

    reembedded = CliRunner().invoke(main, [*other, "gallery", "reembed"])
    assert reembedded.exit_code == 0 and "re-embedded 3 crop(s)" in reembedded.stdout
    record = json.loads(CliRunner().invoke(main, [*other, "people", "list", "--json"]).stdout)
    assert (record["status"], record["samples"], record["other_model_samples"]) == ("ok", 3, 3)
    with sqlite3.connect(cli.db) as conn:
        rows = conn.execute(
            "SELECT embedding_key, crop_id, vector FROM embeddings ORDER BY id"
        ).fetchall()
    by_key: dict[str, dict[int, np.ndarray]] = {}
    for key, crop_id, vector in rows:
        by_key.setdefault(key, {})[crop_id] = np.frombuffer(vector, dtype="<f4")
    plain, averaged = by_key.values()
    assert plain.keys() == averaged.keys()
    cosines = [float(plain[c] @ averaged[c]) for c in plain]
    assert all(0.8 < cos < 0.9999 for cos in cosines), cosines


def test_enroll_from_the_configured_camera_source(cli: Cli, tmp_path: Path) -> None:
    clip = require_shared("data/video/head-pose-face-detection-female-and-male.gif")
    config = tmp_path / "config.toml"
    config.write_text(f'[camera]\nsource = "{clip}"\n')
    config.chmod(0o600)
    result = cli("--config", str(config), "enroll", "--name", "Visitor", "--largest-face")
    assert result.exit_code == 0, result.output
    assert "look at the camera" in result.stderr
    (record,) = [json.loads(line) for line in cli("people", "list", "--json").stdout.splitlines()]
    assert 3 <= record["samples"] <= 10


def test_without_crops_reembed_asks_for_re_enrollment(
    cli: Cli, celebrity: Path, tmp_path: Path, reference_uint8: tuple[Path, Path]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[gallery]\nstore_crops = false\n")
    config.chmod(0o600)
    photos = [str(p) for p in numbered(celebrity / "Hugh_Jackman")[:3]]
    result = cli("--config", str(config), "enroll", "--name", "Hugh", "--images", *photos)
    assert result.exit_code == 0, result.output
    with sqlite3.connect(cli.db) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(crop_id) FROM embeddings").fetchone() == (3, 0)
        assert conn.execute("SELECT COUNT(*) FROM crops").fetchone() == (0,)
    backup = tmp_path / "backup.json"
    assert cli("gallery", "export", str(backup)).exit_code == 0
    assert backup.stat().st_mode & 0o077 == 0
    model, manifest = reference_uint8
    other = ["--db", str(cli.db), "--model", str(model), "--manifest", str(manifest)]
    reembedded = CliRunner().invoke(main, [*other, "gallery", "reembed"])
    assert reembedded.exit_code == 0
    assert "re-embedded 0 crop(s)" in reembedded.stdout and "re-enroll: Hugh" in reembedded.stderr
    listing = CliRunner().invoke(main, [*other, "people", "list", "--json"])
    assert json.loads(listing.stdout)["status"] == "needs re-enrollment"
