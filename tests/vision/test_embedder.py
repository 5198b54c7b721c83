"""The embedder and its manifest, on the real reference models."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.errors import ManifestError, ModelError
from device.vision.embedder import FaceEmbedder
from device.vision.manifest import ModelManifest
from tests.conftest import read_bgr, require_shared


def celebrity(person: str, index: int) -> np.ndarray:
    folder = require_shared(f"data/celebrity112/{person}")
    path = sorted(folder.glob("*.png"))[index]
    return cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def float_embedder(reference_f32: tuple[Path, Path]) -> FaceEmbedder:
    return FaceEmbedder.from_files(*reference_f32)


def test_embeddings_are_unit_length_and_separate_people(float_embedder: FaceEmbedder) -> None:
    a1, a2 = (
        float_embedder.embed(celebrity("Will_Smith", 0)),
        float_embedder.embed(celebrity("Will_Smith", 1)),
    )
    b = float_embedder.embed(celebrity("Tina_Fey", 0))
    assert a1.shape == (128,) and a1.dtype == np.float32
    assert abs(float(np.linalg.norm(a1)) - 1.0) < 1e-5
    assert float(a1 @ a2) > float(a1 @ b) + 0.2


def test_uint8_model_agrees_with_float(
    float_embedder: FaceEmbedder, reference_uint8: tuple[Path, Path]
) -> None:
    """The third-party uint8 model is lossy (cosine ~0.8 to float) but must stay on the same face."""
    quantized = FaceEmbedder.from_files(*reference_uint8)
    people = ("Will_Smith", "Tina_Fey", "Hugh_Jackman")
    crops = [celebrity(p, i) for p in people for i in range(3)]
    floats = np.stack([float_embedder.embed(c) for c in crops])
    quantized_embeddings = np.stack([quantized.embed(c) for c in crops])
    cross = floats @ quantized_embeddings.T
    assert np.diag(cross).mean() > 0.75
    same_person = np.kron(np.eye(3), np.ones((3, 3))).astype(bool)
    for row in range(len(crops)):
        assert cross[row, row] > cross[row][~same_person[row]].max()


def test_refuses_a_model_that_is_not_the_manifests(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    model, manifest = reference_f32
    data = json.loads(manifest.read_text())
    data["sha256"] = "0" * 64
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="sha256"):
        FaceEmbedder.from_files(model, other)


def test_refuses_a_manifest_with_the_wrong_quantisation(
    tmp_path: Path, reference_uint8: tuple[Path, Path], reference_f32: tuple[Path, Path]
) -> None:
    model, _ = reference_uint8
    data = json.loads(reference_f32[1].read_text())
    data["sha256"] = json.loads(reference_uint8[1].read_text())["sha256"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="input is uint8, manifest says float32"):
        FaceEmbedder.from_files(model, wrong)


def test_finds_the_sidecar_manifest_beside_the_model(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    model, manifest = reference_f32
    shutil.copy(model, tmp_path / "face.tflite")
    with pytest.raises(ManifestError, match="no manifest"):
        FaceEmbedder.from_files(tmp_path / "face.tflite")
    shutil.copy(manifest, tmp_path / "face.json")
    assert FaceEmbedder.from_files(tmp_path / "face.tflite").embedding_size == 128


def test_mirror_average_gives_a_face_and_its_mirror_image_one_embedding(
    tmp_path: Path, reference_f32: tuple[Path, Path], float_embedder: FaceEmbedder
) -> None:
    model, manifest = reference_f32
    data = json.loads(manifest.read_text())
    data["mirror_average"] = True
    (tmp_path / "mirror.json").write_text(json.dumps(data))
    averaging = FaceEmbedder.from_files(model, tmp_path / "mirror.json")
    crop = celebrity("Will_Smith", 0)
    mirror = np.ascontiguousarray(crop[:, ::-1])
    averaged = averaging.embed(crop)
    plain, plain_mirror = float_embedder.embed(crop), float_embedder.embed(mirror)
    assert float(plain @ plain_mirror) < 0.99
    assert float(averaged @ averaging.embed(mirror)) > 0.9999
    expected = (plain + plain_mirror) / np.linalg.norm(plain + plain_mirror)
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    file_sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
    assert float_embedder.embedding_key == float_embedder.sha256 == averaging.sha256 == file_sha256
    mirror_key = hashlib.sha256(f"{file_sha256}+mirror".encode()).hexdigest()
    assert averaging.embedding_key == mirror_key != file_sha256


@pytest.mark.parametrize(
    "content", [b"", b"not a model at all", b"TFL3" + b"\x00" * 64], ids=["empty", "text", "header"]
)
def test_corrupt_model_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="cannot load model"):
        from device.vision.tflite import TFLiteModel

        TFLiteModel(path)


def test_manifest_validation_names_the_problem(tmp_path: Path) -> None:
    bad = ModelManifest(name="x", sha256="ab" * 32, color_order="YUV", quantization="int4")
    bad.save(tmp_path / "m.json")
    with pytest.raises(ManifestError, match="color_order") as error:
        ModelManifest.load(tmp_path / "m.json")
    assert "quantization" in str(error.value)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        ModelManifest.load(tmp_path / "junk.json")
    data = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "flag.json").write_text(
        json.dumps({**data, "color_order": "RGB", "quantization": "int8", "mirror_average": "yes"})
    )
    with pytest.raises(ManifestError, match="mirror_average 'yes' is not true or false"):
        ModelManifest.load(tmp_path / "flag.json")
