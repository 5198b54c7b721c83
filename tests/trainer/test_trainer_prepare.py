"""``trainer prepare``: each cleaning rule on a crafted folder, and the report it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from device.config import Config
from device.vision.embedder import FaceEmbedder
from device.vision.pipeline import FacePipeline
from tests.conftest import read_bgr, require_shared
from trainer.cli import main
from trainer.prepare import PrepareOptions, prepare
from trainer.prepared import REPORT_CSV, REPORT_JSON


def _framed(path: Path, blur_sigma: float = 0.0) -> np.ndarray:
    """An aligned celebrity crop enlarged onto a grey frame, so the detector has work to do."""
    crop = read_bgr(path)
    canvas = cv2.copyMakeBorder(
        cv2.resize(crop, (160, 160), interpolation=cv2.INTER_CUBIC),
        48, 48, 48, 48, cv2.BORDER_CONSTANT, value=(128, 128, 128),
    )  # fmt: skip
    return cv2.GaussianBlur(canvas, (0, 0), blur_sigma) if blur_sigma else canvas


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    celebrity = require_shared("data/celebrity112")
    src = tmp_path_factory.mktemp("crafted") / "src"
    will = src / "Will_Smith"
    will.mkdir(parents=True)
    will_files = sorted((celebrity / "Will_Smith").glob("*.png"))
    for path in will_files[:12]:
        cv2.imwrite(str(will / f"{path.stem}.jpg"), _framed(path))
    cv2.imwrite(str(will / "blurry.jpg"), _framed(celebrity / "Will_Smith" / "10172.png", 4.0))
    tina_files = sorted((celebrity / "Tina_Fey").glob("*.png"))
    cv2.imwrite(str(will / "mislabelled.jpg"), _framed(tina_files[0]))
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 255, 256, dtype=np.float32)[None, :, None].repeat(256, 0)
    landscape = np.clip(gradient + rng.normal(0, 10, (256, 256, 3)), 0, 255).astype(np.uint8)
    cv2.imwrite(str(will / "not_a_face.jpg"), landscape)
    (will / "broken.jpg").write_bytes(b"this is not a JPEG")
    few = src / "Tina_Fey"
    few.mkdir()
    for path in tina_files[1:4]:
        cv2.imwrite(str(few / f"{path.stem}.jpg"), _framed(path))
    return src


@pytest.fixture(scope="module")
def prepared(
    crafted: Path, tmp_path_factory: pytest.TempPathFactory, reference_f32: tuple[Path, Path]
) -> tuple[Path, dict[str, dict[str, str]]]:
    dst = tmp_path_factory.mktemp("prepared")
    embedder = FaceEmbedder.from_files(*reference_f32, num_threads=2)
    prepare(
        crafted, dst, PrepareOptions(progress=False), FacePipeline.from_config(Config()), embedder
    )
    with open(dst / REPORT_CSV, newline="") as stream:
        rows = {Path(row["source"]).name: row for row in csv.DictReader(stream)}
    return dst, rows


def test_each_cleaning_rule_drops_its_image(
    prepared: tuple[Path, dict[str, dict[str, str]]],
) -> None:
    _, rows = prepared
    assert rows["blurry.jpg"]["reason"] == "blurry"
    assert float(rows["blurry.jpg"]["sharpness"]) < PrepareOptions().min_sharpness
    assert rows["not_a_face.jpg"]["reason"] == "no_face"
    assert rows["broken.jpg"]["reason"] == "unreadable"
    assert rows["mislabelled.jpg"]["reason"] == "outlier"
    assert float(rows["mislabelled.jpg"]["centre_distance"]) > PrepareOptions().max_centre_distance
    tina = [row for row in rows.values() if row["identity"] == "Tina_Fey"]
    assert len(tina) == 3 and all(row["reason"] == "too_few_images" for row in tina)


def test_good_faces_are_kept_as_aligned_crops(
    prepared: tuple[Path, dict[str, dict[str, str]]],
) -> None:
    dst, rows = prepared
    kept = [row for row in rows.values() if row["status"] == "kept"]
    assert len(kept) == 12
    assert {row["identity"] for row in kept} == {"Will_Smith"}
    for row in kept:
        crop = read_bgr(dst / row["crop"])
        assert crop.shape == (112, 112, 3)
        assert float(row["score"]) >= PrepareOptions().min_score
    assert not (dst / "Tina_Fey").exists()


def test_report_counts_every_reason(prepared: tuple[Path, dict[str, dict[str, str]]]) -> None:
    dst, _ = prepared
    summary = json.loads((dst / REPORT_JSON).read_text())
    assert summary["images"] == 19
    assert summary["kept"] == 12
    assert summary["identities_kept"] == 1
    assert summary["dropped"] == {
        "blurry": 1, "no_face": 1, "outlier": 1, "too_few_images": 3, "unreadable": 1,
    }  # fmt: skip


def test_duplicate_identities_are_reported_and_merged(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    celebrity = require_shared("data/celebrity112")
    src = tmp_path / "src"
    files = sorted((celebrity / "Hugh_Jackman").glob("*.png"))[:20]
    for folder, chunk in (("Hugh_Jackman", files[:10]), ("H_Jackman", files[10:])):
        (src / folder).mkdir(parents=True)
        for path in chunk:
            (src / folder / path.name).write_bytes(path.read_bytes())
    embedder = FaceEmbedder.from_files(*reference_f32, num_threads=2)
    options = PrepareOptions(progress=False, merge_duplicates=True)
    report = prepare(src, tmp_path / "dst", options, FacePipeline.from_config(Config()), embedder)
    assert [(a, b) for a, b, _ in report.duplicates] == [("H_Jackman", "Hugh_Jackman")]
    assert report.identities() == ["H_Jackman"]
    assert len(report.kept) == 20


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["prepare", str(tmp_path / "nope"), str(tmp_path / "out")])
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines() == [
        f"trainer: error: source folder not found: {tmp_path / 'nope'}"
    ]
    (tmp_path / "empty").mkdir()
    empty = runner.invoke(main, ["prepare", str(tmp_path / "empty"), str(tmp_path / "out")])
    assert empty.exit_code == 1
    assert "no images" in empty.output
