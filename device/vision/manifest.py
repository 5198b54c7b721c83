"""The sidecar manifest that travels with every embedding model.

A manifest says how to feed the model (input size, colour order, normalisation,
quantisation, alignment template), what comes out (embedding size), which
thresholds were calibrated for it, and the sha256 of the exact file it describes.
It lives beside the model as ``<model stem>.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import ManifestError
from device.vision.tflite import TFLiteModel

FORMAT = "peephole-embedder/1"
_QUANTIZATIONS = {"float32": np.float32, "uint8": np.uint8, "int8": np.int8}


@dataclass(frozen=True)
class ModelManifest:
    """What a device must know to run an embedding model correctly.

    Attributes:
        name: a human-readable model name.
        sha256: hash of the .tflite file; a different file is refused.
        input_size: side of the square aligned crop, in pixels.
        color_order: "RGB" or "BGR", the channel order the model expects.
        mean, std: the crop's 0-255 pixels become ``(pixel - mean) / std``
            before quantisation (mean 0, std 1 for models normalising inside).
        template: alignment template name ("arcface112").
        quantization: dtype of the model's input and output tensors.
        embedding_size: length of the embedding.
        mirror_average: embed the crop and its mirror image and average the two
            (twice the embedding time; measured on LFW it is more accurate). The
            thresholds are calibrated in this mode, so it belongs to the model's
            manifest, not to the device's configuration.
        verification_threshold: cosine threshold from 10-fold LFW cross-validation.
        identification_threshold: cosine threshold for naming a visitor, calibrated
            for open-set identification at ``identification_far_target``.
        identification_far_target: the stranger-named rate that threshold targets.
        provenance: free-form facts about training and calibration.
    """

    name: str
    sha256: str
    input_size: int = 112
    color_order: str = "RGB"
    mean: float = 127.5
    std: float = 128.0
    template: str = "arcface112"
    quantization: str = "int8"
    embedding_size: int = 128
    mirror_average: bool = False
    verification_threshold: float | None = None
    identification_threshold: float | None = None
    identification_far_target: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    @classmethod
    def load(cls, path: str | Path) -> ModelManifest:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"model manifest not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ManifestError(f"model manifest {path} is not valid JSON: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ManifestError(f"{path} is not a peephole model manifest (format {FORMAT!r})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"model manifest {path} has unknown keys: {', '.join(unknown)}")
        try:
            manifest = cls(**data)
        except TypeError as error:
            raise ManifestError(f"model manifest {path} is incomplete: {error}") from None
        manifest.validate(path)
        return manifest

    def validate(self, where: str | Path = "manifest") -> None:
        problems = []
        if self.color_order not in ("RGB", "BGR"):
            problems.append(f"color_order {self.color_order!r} is not RGB or BGR")
        if self.quantization not in _QUANTIZATIONS:
            problems.append(
                f"quantization {self.quantization!r} is not one of {sorted(_QUANTIZATIONS)}"
            )
        if self.template != "arcface112" or self.input_size != 112:
            problems.append("only the arcface112 template at input_size 112 is supported")
        if not self.std:
            problems.append("std must not be zero")
        if not isinstance(self.mirror_average, bool):
            problems.append(f"mirror_average {self.mirror_average!r} is not true or false")
        if len(self.sha256) != 64:
            problems.append("sha256 must be 64 hex digits")
        for name in ("verification_threshold", "identification_threshold"):
            value = getattr(self, name)
            if value is not None and not -1.0 <= value <= 1.0:
                problems.append(f"{name} {value} is not a cosine in [-1, 1]")
        if problems:
            raise ManifestError(f"invalid model manifest {where}: " + "; ".join(problems))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    def check_model(self, model: TFLiteModel, file_sha256: str) -> None:
        """Refuse a model that is not the one this manifest describes."""
        problems = []
        if file_sha256 != self.sha256:
            problems.append(f"sha256 is {file_sha256[:12]}..., manifest says {self.sha256[:12]}...")
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            problems.append("model must have one input and one output")
        else:
            expected_input = (1, self.input_size, self.input_size, 3)
            if model.inputs[0].shape != expected_input:
                problems.append(
                    f"input shape is {model.inputs[0].shape}, manifest says {expected_input}"
                )
            dtype = np.dtype(_QUANTIZATIONS[self.quantization])
            for spec, role in ((model.inputs[0], "input"), (model.outputs[0], "output")):
                if spec.dtype != dtype:
                    problems.append(f"{role} is {spec.dtype}, manifest says {self.quantization}")
            if model.outputs[0].shape[-1] != self.embedding_size:
                problems.append(
                    f"embedding size is {model.outputs[0].shape[-1]}, manifest says {self.embedding_size}"
                )
        if problems:
            raise ManifestError(
                f"model {model.path} does not match its manifest: " + "; ".join(problems)
            )


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def embedding_key(model_sha256: str, mirror_average: bool) -> str:
    """The tag of the embeddings a model file gives when run as its manifest says.

    One view per crop: the file's sha256. Mirror-averaged: the sha256 of
    ``"<file sha256>+mirror"``. The same file run both ways gives two different
    embedding functions, so gallery rows made one way are never matched against
    probes embedded the other way; ``gallery reembed`` redoes them from the crops.
    """
    if not mirror_average:
        return model_sha256
    return hashlib.sha256(f"{model_sha256}+mirror".encode()).hexdigest()


def load_manifest_for(model_path: Path, manifest_path: Path | None = None) -> ModelManifest:
    """The manifest of ``model_path``: ``manifest_path``, else the sidecar beside the model."""
    manifest_file = manifest_path if manifest_path else manifest_path_for(model_path)
    if not manifest_file.is_file():
        raise ManifestError(
            f"no manifest for model {model_path}: expected {manifest_file} "
            "(or pass --manifest FILE; 'trainer write-manifest' writes one)"
        )
    return ModelManifest.load(manifest_file)


def manifest_path_for(model_path: str | Path) -> Path:
    """The sidecar manifest's conventional place: ``<model stem>.json`` beside it."""
    model_path = Path(model_path)
    return model_path.with_suffix(".json")
