"""Face embeddings from an aligned 112x112 crop, as the model's manifest says."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.vision.manifest import ModelManifest, embedding_key, file_sha256, load_manifest_for
from device.vision.tflite import TFLiteModel


def default_model_path() -> Path:
    """The embedding model shipped inside the device package."""
    return Path(__file__).parent.parent / "models" / "peephole_default_int8.tflite"


class FaceEmbedder:
    """Runs an embedding model and returns L2-normalised float32 embeddings.

    ``embedding_key`` tags the gallery rows it makes (see ``manifest.embedding_key``).
    """

    def __init__(self, model: TFLiteModel, manifest: ModelManifest, sha256: str) -> None:
        manifest.check_model(model, sha256)
        self.model = model
        self.manifest = manifest
        self.sha256 = sha256
        self.embedding_key = embedding_key(sha256, manifest.mirror_average)
        self._input = model.inputs[0]
        self._output = model.outputs[0]

    @classmethod
    def from_files(
        cls, model_path: str | Path, manifest_path: str | Path | None = None, num_threads: int = 2
    ) -> FaceEmbedder:
        model_path = Path(model_path)
        manifest = load_manifest_for(model_path, Path(manifest_path) if manifest_path else None)
        model = TFLiteModel(model_path, num_threads=num_threads)
        return cls(model, manifest, file_sha256(model_path))

    @property
    def embedding_size(self) -> int:
        return self.manifest.embedding_size

    def embed(self, crop_rgb: np.ndarray) -> np.ndarray:
        """Embedding of one aligned RGB uint8 crop (112, 112, 3).

        With the manifest's ``mirror_average``, the unit embeddings of the crop and
        of its mirror image are added and normalised again, so a face and its
        mirror image get the same embedding.
        """
        embedding = self._embed_view(crop_rgb)
        if self.manifest.mirror_average:
            mirrored = self._embed_view(crop_rgb[:, ::-1])
            embedding = _unit(embedding + mirrored)
        return embedding

    def embed_many(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of a stack of aligned crops (N, 112, 112, 3)."""
        if len(crops_rgb) == 0:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        return np.stack([self.embed(crop) for crop in crops_rgb])

    def _embed_view(self, crop_rgb: np.ndarray) -> np.ndarray:
        (raw,) = self.model.run(self._preprocess(crop_rgb))
        return self._postprocess(raw)

    def _preprocess(self, crop_rgb: np.ndarray) -> np.ndarray:
        size = self.manifest.input_size
        if crop_rgb.shape != (size, size, 3):
            raise ValueError(f"crop must be ({size}, {size}, 3), got {crop_rgb.shape}")
        pixels = crop_rgb[..., ::-1] if self.manifest.color_order == "BGR" else crop_rgb
        values = (pixels.astype(np.float32) - self.manifest.mean) / self.manifest.std
        spec = self._input
        if spec.quantized:
            info = np.iinfo(spec.dtype)
            values = np.clip(np.round(values / spec.scale + spec.zero_point), info.min, info.max)
        return values.astype(spec.dtype)[np.newaxis]

    def _postprocess(self, raw: np.ndarray) -> np.ndarray:
        spec = self._output
        values = raw.reshape(-1).astype(np.float32)
        if spec.quantized:
            values = (values - spec.zero_point) * spec.scale
        return _unit(values)


def _unit(values: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(values))
    return (values / norm if norm > 0 else values).astype(np.float32)
