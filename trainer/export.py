"""``trainer export-tflite``: a trained Keras model to a full-integer int8 TFLite embedder.

Weights, activations, input and output are all int8, calibrated on a
representative set of aligned crops, so XNNPACK runs the whole graph in int8.
Then the export is checked against its own float version, through the device's
embedder code, and the command fails when they drift apart:

- mean cosine between int8 and float embeddings of held-out crops (crops that
  were not in the representative set) must be at least ``min_cosine``;
- with LFW given, the int8 model's 10-fold accuracy must not be more than
  ``max_accuracy_drop`` below the float model's.

Only a model that passes gets its sidecar manifest, whose verification threshold
is the mean of the int8 model's ten LFW fold thresholds, and whose identification
threshold is calibrated open-set on celebrity112 when that folder is given.
"""

from __future__ import annotations

import datetime
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import PeepholeError
from device.vision.embedder import FaceEmbedder
from trainer.constants import INPUT_SIZE, MEAN, STD, normalise_pixels
from trainer.evaluate import LfwOptions, evaluate_lfw
from trainer.import_mxnet import PROVENANCE_FILE
from trainer.prepared import sample_crops
from trainer.strangers import calibrate_identification
from trainer.write_manifest import draft_embedder, with_thresholds


@dataclass(frozen=True)
class ExportOptions:
    model: Path
    output: Path
    crops: Path
    name: str = "peephole MobileFaceNet int8"
    representative_count: int = 400
    holdout_count: int = 300
    lfw: LfwOptions | None = None
    celebrity: Path | None = None
    min_cosine: float = 0.99
    max_accuracy_drop: float = 0.003
    float_output: Path | None = None
    mirror_average: bool = False
    threads: int = 2
    profile: bool = True
    seed: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportReport:
    int8_path: Path
    int8_bytes: int
    parity_cosine_mean: float
    parity_cosine_min: float
    lfw_float: float | None = None
    lfw_int8: float | None = None
    verification_threshold: float | None = None
    identification: dict[str, Any] = field(default_factory=dict)
    identification_provenance: str = ""
    profile_int8: GraphProfile | None = None
    profile_float: GraphProfile | None = None
    manifest_path: Path | None = None
    failures: list[str] = field(default_factory=list)


def convert(model: Any, representative: np.ndarray | None) -> bytes:
    """TFLite flatbuffer: float32 when ``representative`` is None, else full-integer int8."""
    import tensorflow as tf

    # Through a SavedModel: converting a Keras 3 model's concrete function directly
    # leaves its variables as READ_VARIABLE ops that int8 calibration cannot run.
    with tempfile.TemporaryDirectory(prefix="export-savedmodel-") as saved:
        model.export(
            saved,
            format="tf_saved_model",
            input_signature=[tf.TensorSpec([1, INPUT_SIZE, INPUT_SIZE, 3], tf.float32)],
            verbose=False,
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        if representative is not None:

            def samples() -> Any:
                for crop in representative:
                    yield [normalise_pixels(crop)[np.newaxis]]

            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = samples
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        return bytes(converter.convert())


def parity(
    float_embedder: FaceEmbedder, int8_embedder: FaceEmbedder, crops: np.ndarray
) -> np.ndarray:
    """Cosine between the float and int8 embedding of each crop."""
    return np.asarray(
        np.einsum("ij,ij->i", float_embedder.embed_many(crops), int8_embedder.embed_many(crops))
    )


@dataclass(frozen=True)
class GraphProfile:
    """How a .tflite runs here: XNNPACK delegate partitions and single-thread latency."""

    partitions: int
    latency_ms: float

    def line(self) -> str:
        return f"{self.latency_ms:.2f} ms/face (1 thread), {self.partitions} XNNPACK partition(s)"


def profile_graph(path: Path, runs: int = 100) -> GraphProfile:
    """Median single-thread latency and the number of delegate partitions (1: fully fused)."""
    import time

    from device.vision.tflite import interpreter_class

    _, interpreter_cls = interpreter_class()
    interpreter = interpreter_cls(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    # Each XNNPACK partition appears as one DELEGATE node in the execution plan.
    partitions = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    detail = interpreter.get_input_details()[0]
    crop = np.zeros(detail["shape"], dtype=detail["dtype"])
    timings = []
    for _ in range(runs + 10):
        interpreter.set_tensor(detail["index"], crop)
        started = time.perf_counter()
        interpreter.invoke()
        timings.append(time.perf_counter() - started)
    return GraphProfile(partitions, 1000 * float(np.median(timings[10:])))


def export(options: ExportOptions) -> ExportReport:
    """The int8 file, checked against its float twin; its manifest only when it passes."""
    from trainer.model import load_keras_model

    if options.celebrity is not None and options.lfw is None:
        raise PeepholeError(
            "--celebrity needs --lfw and --pairs: LFW's identities are the strangers"
        )
    model = load_keras_model(options.model, str(options.provenance.get("activation", "relu6")))
    total = options.representative_count + options.holdout_count
    crops = sample_crops(options.crops, total, options.seed)
    if len(crops) < total:
        raise PeepholeError(f"{options.crops}: need {total} crops, found {len(crops)}")
    representative, holdout = (
        crops[: options.representative_count],
        crops[options.representative_count :],
    )

    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_bytes(convert(model, representative))
    with tempfile.TemporaryDirectory(prefix="export-") as workdir:
        float_path = options.float_output or Path(workdir) / "float32.tflite"
        float_path.write_bytes(convert(model, None))
        report = check_against_float(options, float_path, holdout)
    if not report.failures:
        report.manifest_path = write_manifest(options, report)
    return report


def check_against_float(
    options: ExportOptions, float_path: Path, holdout: np.ndarray
) -> ExportReport:
    """Parity on held-out crops, speed, and with LFW accuracy and the thresholds."""
    mirror = options.mirror_average
    int8 = draft_embedder(options.output, options.name, MEAN, STD, "RGB", mirror, options.threads)
    float32 = draft_embedder(
        float_path, options.name + " (float)", MEAN, STD, "RGB", mirror, options.threads
    )
    cosines = parity(float32, int8, holdout)
    report = ExportReport(
        int8_path=options.output,
        int8_bytes=options.output.stat().st_size,
        parity_cosine_mean=float(cosines.mean()),
        parity_cosine_min=float(cosines.min()),
    )
    if options.profile:
        report.profile_int8 = profile_graph(options.output)
        report.profile_float = profile_graph(float_path)
    if report.parity_cosine_mean < options.min_cosine:
        report.failures.append(
            f"int8 drifts from float: mean cosine {report.parity_cosine_mean:.4f} "
            f"< {options.min_cosine} on {len(holdout)} held-out crops"
        )
    if options.lfw is not None:
        pairs, aligned = options.lfw.load(options.threads)
        float_result, _ = evaluate_lfw(pairs, aligned, float32.embed_many)
        int8_result, _ = evaluate_lfw(pairs, aligned, int8.embed_many)
        report.lfw_float = float_result.verification.accuracy_mean
        report.lfw_int8 = int8_result.verification.accuracy_mean
        report.verification_threshold = round(int8_result.verification.threshold, 4)
        if report.lfw_float - report.lfw_int8 > options.max_accuracy_drop:
            report.failures.append(
                f"int8 loses LFW accuracy: {100 * report.lfw_int8:.2f}% against float "
                f"{100 * report.lfw_float:.2f}% (allowed drop {100 * options.max_accuracy_drop:.1f} points)"
            )
        if options.celebrity is not None:
            report.identification, report.identification_provenance = calibrate_identification(
                int8.embed_many, options.celebrity, aligned.crops
            )
    return report


def write_manifest(options: ExportOptions, report: ExportReport) -> Path:
    provenance: dict[str, Any] = dict(options.provenance)
    provenance.update(
        {
            "exported": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
            "export": "trainer export-tflite: full-integer int8 (weights, activations, input, output), "
            f"{options.representative_count} representative crops from {options.crops}",
            "parity": f"int8 vs float mean cosine {report.parity_cosine_mean:.4f} "
            f"(min {report.parity_cosine_min:.4f}) on {options.holdout_count} held-out crops",
        }
    )
    if report.profile_int8 and report.profile_float:
        provenance["latency"] = (
            f"int8 {report.profile_int8.line()}; float32 {report.profile_float.line()} "
            "(one run of the graph, at export, on the exporting machine)"
        )
    if options.mirror_average:
        provenance["mirror_average"] = (
            "each face is embedded with its mirror image and the two averaged (two runs of "
            "the graph per face); parity and thresholds were measured that way"
        )
    if report.lfw_int8 is not None and report.lfw_float is not None:
        provenance["verification_threshold"] = (
            "mean of the 10 LFW fold thresholds of the int8 model through the device pipeline; "
            f"LFW int8 {100 * report.lfw_int8:.2f}%, float {100 * report.lfw_float:.2f}%"
        )
    identification = report.identification
    if identification.get("threshold") is not None:
        provenance["identification_threshold"] = report.identification_provenance
    draft = draft_embedder(
        options.output, options.name, MEAN, STD, mirror_average=options.mirror_average
    ).manifest
    manifest = with_thresholds(draft, report.verification_threshold, identification, provenance)
    path = options.output.with_suffix(".json")
    manifest.save(path)
    return path


def run_provenance(model_path: Path) -> dict[str, Any]:
    """What the training run (options.json) or the import (provenance.json) recorded next to
    the model, for the manifest; a run started from an imported model carries its import's."""
    imported = model_path.parent / PROVENANCE_FILE
    if imported.is_file():
        return dict(json.loads(imported.read_text()))
    options_file = model_path.parent / "options.json"
    if not options_file.is_file():
        return {}
    options = json.loads(options_file.read_text())
    keep = (
        "loss", "activation", "optimizer", "learning_rate", "schedule", "epochs", "batch_size",
        "data", "init_weights", "teacher_mirror",
    )  # fmt: skip
    provenance: dict[str, Any] = {key: options[key] for key in keep if options.get(key)}
    init = Path(str(options.get("init_weights", "")))
    if (init.parent / PROVENANCE_FILE).is_file():
        provenance["init_provenance"] = json.loads((init.parent / PROVENANCE_FILE).read_text())
    state_file = model_path.parent / "state.json"
    if state_file.is_file():
        provenance["steps"] = json.loads(state_file.read_text()).get("step")
    return provenance
