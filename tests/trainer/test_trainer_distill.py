"""Distillation end to end on real unlabeled faces: trainer prepare, trainer teacher
(plain and mirror-averaged descriptors, cached apart, resumable) and distillation steps."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from device.config import Config
from device.errors import PeepholeError
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline
from tests.conftest import missing, require_shared
from trainer.cli import main as trainer_main
from trainer.prepare import PrepareOptions, prepare
from trainer.prepared import load_teacher_targets, read_kept
from trainer.recipes import TrainOptions
from trainer.teacher import DlibTeacher

try:
    import dlib  # noqa: F401
except ImportError:
    missing("the trainer extra (dlib) is not installed: scripts/setup-venv.sh trainer")

pytestmark = pytest.mark.trainer

FACES = 16


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first UTKFace images through trainer prepare, then trainer teacher both ways."""
    unlabeled = require_shared("data/unlabeled/utkface")
    src = tmp_path_factory.mktemp("unlabeled") / "src"
    src.mkdir()
    for path in sorted(unlabeled.glob("*.jpg"))[:FACES]:
        shutil.copyfile(path, src / path.name)
    dst = src.parent / "prepared"
    options = PrepareOptions(progress=False, min_score=0.6)
    prepare(src, dst, options, FacePipeline.from_config(Config()))
    kept = len(read_kept(dst))
    assert kept >= FACES - 3
    for mode in ([], ["--mirror"]):
        result = CliRunner().invoke(trainer_main, ["teacher", str(dst), *mode])
        assert result.exit_code == 0, result.output
        assert f"teacher embeddings: {kept} of {kept} faces" in result.output
    return dst


def test_plain_and_mirror_descriptors_are_cached_apart(prepared: Path) -> None:
    plain = load_teacher_targets(prepared)
    mirrored = load_teacher_targets(prepared, mirror=True)
    assert plain.keys() == mirrored.keys() and len(plain) == len(read_kept(prepared))
    cosines = [
        float(plain[s] @ mirrored[s]) / np.linalg.norm(plain[s]) / np.linalg.norm(mirrored[s])
        for s in plain
    ]
    assert all(0.95 < cos < 0.99999 for cos in cosines), cosines

    sample = read_kept(prepared)[0]
    teacher = DlibTeacher()
    chip = teacher.chip(read_image(Path(sample.source)), sample.box)
    expected = (teacher.embed_chip(chip) + teacher.embed_chip(chip[:, ::-1].copy())) / 2
    np.testing.assert_allclose(mirrored[sample.source], expected, atol=1e-5)
    np.testing.assert_allclose(plain[sample.source], teacher.embed_chip(chip), atol=1e-5)


def test_a_finished_teacher_pass_is_not_redone(prepared: Path) -> None:
    caches = sorted(prepared.glob("teacher_dlib*.npy"))
    assert [p.name for p in caches] == ["teacher_dlib.0of1.npy", "teacher_dlib_mirror.0of1.npy"]
    before = [p.stat().st_mtime_ns for p in caches]
    again = CliRunner().invoke(trainer_main, ["teacher", str(prepared), "--mirror"])
    assert again.exit_code == 0, again.output
    assert [p.stat().st_mtime_ns for p in caches] == before


def test_distillation_trains_towards_the_chosen_descriptors(prepared: Path, tmp_path: Path) -> None:
    from trainer.train import train

    options = TrainOptions(
        data=str(prepared), run_dir=str(tmp_path / "run"), batch_size=8, max_steps=2,
        holdout=0.25, teacher_mirror=True, log_every=1, progress=False,
    )  # fmt: skip
    result = train(options)
    assert result.steps == 2
    assert result.holdout_cosine is not None and -1.0 <= result.holdout_cosine <= 1.0

    plain_only = tmp_path / "plain_only"
    shutil.copytree(prepared, plain_only, ignore=shutil.ignore_patterns("teacher_dlib_mirror.*"))
    with pytest.raises(PeepholeError, match="run trainer teacher --mirror first"):
        train(replace(options, data=str(plain_only)))
