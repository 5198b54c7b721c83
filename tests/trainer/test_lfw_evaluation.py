"""LFW 10-fold verification through the device pipeline, on the reference models.

Bounds: the reference float model measured 99.12% here (all 10 folds); a plain
BlazeFace + 4-point alignment prototype reached 98.40%, so 98.4% is the floor
any correct runtime must clear. The third-party uint8 model measured 97.88%
on all folds; its test uses folds 1-3 to save CI time, bound 96.5%.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from device.vision.embedder import FaceEmbedder
from tests.conftest import require_shared
from trainer.evaluate import align_lfw, default_pipeline, evaluate_lfw, select_folds
from trainer.lfw import LfwPair, read_pairs
from trainer.metrics import best_threshold, kfold_verification, tar_at_far


@pytest.fixture(scope="module")
def lfw_pairs() -> list[LfwPair]:
    lfw = require_shared("data/lfw")
    return read_pairs(lfw / "pairs.txt", lfw / "images")


def test_pairs_file_follows_the_protocol(lfw_pairs: list[LfwPair]) -> None:
    assert len(lfw_pairs) == 6000
    assert sum(p.same for p in lfw_pairs) == 3000
    assert {p.fold for p in lfw_pairs} == set(range(10))
    assert all(p.first.exists() and p.second.exists() for p in lfw_pairs[:50])


@pytest.mark.slow
def test_reference_float_model_all_ten_folds(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    lfw = require_shared("data/lfw")
    command = [
        sys.executable, "-m", "trainer", "evaluate",
        "--model", str(reference_f32[0]), "--manifest", str(reference_f32[1]),
        "--lfw", str(lfw / "images"), "--pairs", str(lfw / "pairs.txt"),
        "--roc", str(tmp_path / "roc.png"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"LFW accuracy: (\d+\.\d\d)% \+- (\d+\.\d\d) \(threshold (-?\d\.\d+)\)", last
    )
    assert match, last
    assert float(match.group(1)) >= 98.4
    assert 0.1 < float(match.group(3)) < 0.5
    assert (tmp_path / "roc.png").stat().st_size > 1000


@pytest.mark.slow
def test_reference_uint8_model_three_folds(
    lfw_pairs: list[LfwPair], reference_uint8: tuple[Path, Path]
) -> None:
    pairs = select_folds(lfw_pairs, 3)
    aligned = align_lfw(pairs, default_pipeline())
    report, _ = evaluate_lfw(pairs, aligned, FaceEmbedder.from_files(*reference_uint8).embed_many)
    assert report.pairs == 1800
    assert report.verification.accuracy_mean >= 0.965


def test_metrics_on_separable_and_random_scores() -> None:
    rng = np.random.default_rng(0)
    same = np.repeat([True, False], 500)
    separable = np.where(same, rng.uniform(0.5, 1.0, 1000), rng.uniform(-0.2, 0.4, 1000))
    result = kfold_verification(separable, same, folds=10)
    assert result.accuracy_mean == 1.0
    assert 0.4 <= best_threshold(separable, same) <= 0.5
    assert tar_at_far(separable, same, 1e-3) == 1.0
    noise = rng.uniform(-1, 1, 1000)
    assert kfold_verification(noise, rng.permutation(same), folds=10).accuracy_mean < 0.6
