"""The distillation teacher: dlib's ResNet face model (public domain, trained without LFW).

dlib's network expects its own input: a 150x150 chip cut from the *original* image
by dlib's 5-point shape predictor (``get_face_chip``), not the device's 112x112
crop. The teacher therefore reads the source image again and finds the face with
dlib's HOG detector, falling back to the box the device detector found.
Embeddings are computed once and cached in the prepared folder (``trainer.prepared``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from device.errors import ModelError
from device.vision.imageio import read_image
from trainer.prepared import cache_listing, read_kept

CHIP_SIZE = 150
CHIP_PADDING = 0.25
TEACHER_DIM = 128


def _models_dir() -> Path:
    # face_recognition_models imports pkg_resources just to find its own files;
    # locating the package directly avoids a setuptools dependency.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the dlib teacher needs the trainer extra: pip install dlib-bin face-recognition-models"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class TeacherSample:
    """One face for the teacher: its source image and the device detector's box (x0,y0,x1,y1)."""

    source: Path
    box: tuple[float, float, float, float]


class DlibTeacher:
    """dlib's face recognition ResNet, as face_recognition runs it (128-d, L2 norm ~1)."""

    def __init__(self, mirror: bool = False) -> None:
        try:
            import dlib
        except ImportError:
            raise ModelError(
                "the dlib teacher needs the trainer extra: pip install dlib-bin"
            ) from None
        models = _models_dir()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )
        self._mirror = mirror

    def chip(self, image_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """dlib's own 150x150 aligned chip of the face nearest ``box``."""
        dlib = self._dlib
        found = self._detector(image_rgb, 0)
        x0, y0, x1, y1 = box
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        if len(found):
            distances = [
                np.linalg.norm(np.array([r.center().x, r.center().y]) - centre) for r in found
            ]
            rect = found[int(np.argmin(distances))]
        else:
            rect = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))
        shape = self._shape(image_rgb, rect)
        return np.asarray(
            dlib.get_face_chip(image_rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
        )

    def embed_chip(self, chip_rgb: np.ndarray) -> np.ndarray:
        vector = self._net.compute_face_descriptor(chip_rgb)
        return np.asarray(vector, dtype=np.float32)

    def embed(self, image_rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """dlib's raw descriptor, or with ``mirror`` its mean with the mirror image's."""
        chip = self.chip(image_rgb, box)
        vector = self.embed_chip(chip)
        if self._mirror:
            vector = (vector + self.embed_chip(np.ascontiguousarray(chip[:, ::-1]))) / 2
        return vector


def teacher_embeddings(
    samples: Sequence[TeacherSample],
    cache: Path,
    teacher_factory: Callable[[], DlibTeacher] = DlibTeacher,
    progress: bool = True,
    save_every: int = 200,
) -> np.ndarray:
    """(N, 128) teacher embeddings of ``samples``, cached in ``cache`` and resumable.

    The cache is an ``.npy`` file plus ``<cache>.txt`` listing the sources in order,
    so a changed sample list is recomputed instead of silently misaligned. Rows not
    computed yet are NaN (an interrupted pass resumes there); rows of faces the
    teacher cannot read are zero. Callers keep only finite, non-zero rows.
    """
    index_file = cache_listing(cache)
    listing = "\n".join(str(sample.source) for sample in samples) + "\n"
    result = np.full((len(samples), TEACHER_DIM), np.nan, dtype=np.float32)
    if cache.is_file() and index_file.is_file() and index_file.read_text() == listing:
        result = np.load(cache)
    todo = np.flatnonzero(np.isnan(result).any(axis=1))
    if not len(todo):
        return result
    cache.parent.mkdir(parents=True, exist_ok=True)
    index_file.write_text(listing)
    teacher = teacher_factory()
    for done, row in enumerate(tqdm(todo, desc="teacher", unit="face", disable=not progress), 1):
        sample = samples[row]
        try:
            result[row] = teacher.embed(read_image(sample.source), sample.box)
        except Exception:
            result[row] = 0.0
        if done % save_every == 0 or done == len(todo):
            _save_atomic(cache, result)
    return result


def _save_atomic(path: Path, array: np.ndarray) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as stream:
        np.save(stream, array)
    partial.replace(path)


def prepared_samples(folder: Path, shard: int = 0, shards: int = 1) -> list[TeacherSample]:
    """The kept faces of a prepared folder in a fixed random order, so any prefix is a fair subset."""
    kept = read_kept(folder)
    order = np.random.default_rng(0).permutation(len(kept))
    chosen = [kept[i] for i in order[shard::shards]]
    return [TeacherSample(Path(s.source), s.box) for s in chosen]
