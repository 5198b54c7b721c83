"""The trainer end to end on a handful of identities: train a few steps, resume, export int8,
and run the export in the device embedder. Plus the losses against plain numpy."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from device.config import Config
from device.errors import PeepholeError
from device.vision.embedder import FaceEmbedder
from device.vision.pipeline import FacePipeline
from tests.conftest import missing, require_shared
from trainer.prepare import PrepareOptions, prepare
from trainer.recipes import PRESETS, TrainOptions, learning_rate_at, options_from_cli

try:
    import tensorflow as tf
except ImportError:
    missing("the trainer extra (TensorFlow) is not installed: scripts/setup-venv.sh trainer")

if TYPE_CHECKING:
    from trainer.export import ExportReport

pytestmark = pytest.mark.trainer

MOBILEFACENET = Path(__file__).parents[1] / "fixtures" / "mobilefacenet_phase5_int8.tflite"

IDENTITIES = ("Halle_Berry", "Hugh_Jackman", "Tina_Fey", "Will_Smith")


@pytest.fixture(scope="module")
def handful(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four celebrity112 identities, 12 aligned crops each, through trainer prepare."""
    celebrity = require_shared("data/celebrity112")
    src = tmp_path_factory.mktemp("handful") / "src"
    for name in IDENTITIES:
        (src / name).mkdir(parents=True)
        for path in sorted((celebrity / name).glob("*.png"))[:12]:
            (src / name / path.name).write_bytes(path.read_bytes())
    dst = src.parent / "prepared"
    options = PrepareOptions(progress=False, min_sharpness=0.0)
    report = prepare(src, dst, options, FacePipeline.from_config(Config()))
    assert report.identities() == sorted(IDENTITIES)
    return dst


@pytest.fixture(scope="module")
def trained(handful: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.train import train

    run = tmp_path_factory.mktemp("run")
    options = TrainOptions(
        data=str(handful), run_dir=str(run), loss="arcface", optimizer="sgd",
        learning_rate=0.01, batch_size=16, epochs=10, max_steps=3, save_every=2,
        log_every=1, progress=False,
    )  # fmt: skip
    first = train(options)
    assert first.steps == 3
    resumed = train(replace(options, max_steps=5), resume=True)
    assert resumed.steps == 5
    log = (run / "train.log").read_text()
    assert "resumed at step 3" in log
    assert json.loads((run / "state.json").read_text())["step"] == 5
    return run / "model.keras"


def _export(trained: Path, handful: Path, output: Path, **options: Any) -> ExportReport:
    """The trained model exported on the handful's crops (no latency profile)."""
    from trainer.export import ExportOptions, export

    return export(
        ExportOptions(model=trained, output=output, crops=handful, profile=False, **options)
    )


def test_int8_export_loads_in_the_device_embedder(
    trained: Path, handful: Path, tmp_path: Path
) -> None:
    from trainer.prepared import sample_crops

    output = tmp_path / "student_int8.tflite"
    report = _export(
        trained, handful, output, representative_count=24, holdout_count=16,
        mirror_average=True, provenance={"activation": "relu6"},
    )  # fmt: skip
    assert report.failures == [], report.failures
    assert report.parity_cosine_mean >= 0.99
    assert 0.5e6 < report.int8_bytes < 4e6
    embedder = FaceEmbedder.from_files(output, num_threads=1)
    assert embedder.manifest.quantization == "int8"
    assert embedder.model.inputs[0].dtype == np.int8
    crop = np.full((112, 112, 3), 90, dtype=np.uint8)
    vector = embedder.embed(crop)
    assert vector.shape == (128,)
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, rel_tol=1e-4)
    assert embedder.manifest.mirror_average
    face = sample_crops(handful, 1, seed=0)[0]
    assert float(embedder.embed(face) @ embedder.embed(face[:, ::-1].copy())) > 0.999


def test_export_fails_and_writes_no_manifest_when_parity_fails(
    trained: Path, handful: Path, tmp_path: Path
) -> None:
    output = tmp_path / "strict_int8.tflite"
    report = _export(
        trained, handful, output, representative_count=8, holdout_count=4, min_cosine=1.01
    )
    assert report.failures and "mean cosine" in report.failures[0]
    assert not output.with_suffix(".json").exists()
    with pytest.raises(PeepholeError):
        FaceEmbedder.from_files(output)


def test_export_leaves_no_temporary_files(
    trained: Path, handful: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    _export(trained, handful, tmp_path / "int8.tflite", representative_count=8, holdout_count=4)
    assert list(scratch.iterdir()) == []


def test_triplet_training_steps(handful: Path, tmp_path: Path) -> None:
    from trainer.train import train

    options = options_from_cli(
        str(handful), str(tmp_path), "seed-rmsprop",
        {"identities_per_batch": 4, "images_per_identity": 4, "max_steps": 2,
         "learning_rate": 0.001, "progress": False},
    )  # fmt: skip
    assert options.optimizer == "rmsprop" and options.loss == "triplet"
    result = train(options)
    assert result.steps == 2 and math.isfinite(result.final_loss)


def test_seed_recipe_schedule() -> None:
    options = replace(TrainOptions(data="", run_dir=""), **PRESETS["seed-rmsprop"])  # type: ignore[arg-type]
    rates = [learning_rate_at(options, epoch) for epoch in (0, 299, 300, 399, 400, 999, 1000)]
    assert rates == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 0.0001]


def _numpy_semihard(x: np.ndarray, labels: np.ndarray, margin: float) -> float:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    losses = []
    for a in range(len(x)):
        for p in range(len(x)):
            if a == p or labels[a] != labels[p]:
                continue
            negatives = d[a][labels != labels[a]]
            semi = negatives[negatives > d[a, p]]
            chosen = semi.min() if len(semi) else negatives.max()
            losses.append(max(d[a, p] - chosen + margin, 0.0))
    return float(np.mean(losses))


def test_triplet_semihard_matches_brute_force() -> None:
    from trainer.losses import triplet_semihard_loss

    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 8)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3).astype(np.int32)
    got = float(triplet_semihard_loss(tf.constant(x), tf.constant(labels), 0.2))
    assert math.isclose(got, _numpy_semihard(x, labels, 0.2), rel_tol=1e-4, abs_tol=1e-5)


def test_arcface_adds_the_angular_margin_to_the_true_class_only() -> None:
    from trainer.losses import ArcFaceHead

    head = ArcFaceHead(3, scale=64.0, margin=0.5)
    head.build((None, 4))
    centres = np.eye(4, 3, dtype=np.float32)
    head.centres.assign(centres)
    angle = 0.6
    x = np.array([[math.cos(angle), math.sin(angle), 0.0, 0.0]], dtype=np.float32)
    logits = head(tf.constant(x), tf.constant([0])).numpy()[0]
    assert math.isclose(logits[0], 64.0 * math.cos(angle + 0.5), rel_tol=1e-4)
    assert math.isclose(logits[1], 64.0 * math.sin(angle), rel_tol=1e-4)
    assert math.isclose(logits[2], 0.0, abs_tol=1e-4)


def test_distillation_loss_is_zero_only_for_the_teacher() -> None:
    from trainer.losses import distillation_loss

    rng = np.random.default_rng(2)
    teacher = rng.normal(size=(8, 128)).astype(np.float32)
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    same = float(distillation_loss(tf.constant(3.0 * teacher), tf.constant(teacher)))
    other = float(distillation_loss(tf.constant(teacher[::-1].copy()), tf.constant(teacher)))
    assert same < 1e-5 < other


def test_model_is_mobilefacenet_sized() -> None:
    from trainer.model import build_mobilefacenet

    for activation in ("relu6", "prelu"):
        model = build_mobilefacenet(activation)
        assert model.output_shape == (None, 128)
        assert 0.9e6 < model.count_params() < 1.2e6


def test_warm_start_from_an_exported_tflite_reproduces_its_embeddings(handful: Path) -> None:
    """``trainer train --init X.tflite``: the dequantised, batch-norm-unfolded network embeds
    held-out faces like the int8 file it came from (the project's last MobileFaceNet
    default, kept as a fixture since the imported MobileFace V2 replaced it)."""
    from trainer.data import load_prepared
    from trainer.model import build_mobilefacenet, keras_embed_fn
    from trainer.warmstart import load_tflite_weights

    shipped = FaceEmbedder.from_files(MOBILEFACENET)
    # The network is compared with one run of the file, whatever the manifest's averaging.
    one_run = FaceEmbedder(
        shipped.model, replace(shipped.manifest, mirror_average=False), shipped.sha256
    )
    crops = load_prepared(handful, progress=False).images
    calibration, held_out = crops[::2], crops[1::2]
    model = build_mobilefacenet("relu6")
    load_tflite_weights(model, MOBILEFACENET, calibration)
    cosines = (keras_embed_fn(model)(held_out) * one_run.embed_many(held_out)).sum(axis=1)
    assert cosines.mean() > 0.995 and cosines.min() > 0.98, (cosines.mean(), cosines.min())


def test_warm_start_refuses_a_foreign_tflite(handful: Path) -> None:
    from trainer.data import load_prepared
    from trainer.model import build_mobilefacenet
    from trainer.warmstart import load_tflite_weights

    reference = require_shared("models/reference/mobilefacenet_insightface_f32.tflite")
    crops = load_prepared(handful, progress=False).images[:8]
    with pytest.raises(PeepholeError, match=r"not a MobileFaceNet export|wants a"):
        load_tflite_weights(build_mobilefacenet("relu6"), reference, crops)


def test_evaluate_accepts_a_keras_checkpoint(trained: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trainer.cli import main

    celebrity = require_shared("data/celebrity112")
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        main,
        ["evaluate", "--model", str(trained), "--celebrity", str(celebrity),
         "--json", str(report)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "celebrity112 open-set" in result.output
    identification = json.loads(report.read_text())["identification"]
    assert identification["enrolled_probes"] + identification["stranger_probes"] > 1800
    weights = trained.parent / "last.weights.h5"
    result = CliRunner().invoke(
        main, ["evaluate", "--model", str(weights), "--activation", "prelu", "--celebrity",
               str(celebrity)],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"trainer: error: {weights}: these weights do not fit a MobileFaceNet with prelu "
        "(wrong --activation?)"
    ]
