"""Optional landmark refinement: MediaPipe's face mesh gives true 5-point alignment.

BlazeFace has one mouth point and a coarse nose tip; the 468-point face mesh
(``face_landmark.tflite``, shipped beside the detector) gives eye centres, the
nose tip and both mouth corners, the five points the ArcFace template is
defined on. It costs one more model run per face.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from device.errors import ModelError
from device.vision.detector import Detection, default_model_dir
from device.vision.tflite import TFLiteModel

MESH_FILE = "face_landmark.tflite"
_INPUT = 192
# The ROI is the detector box enlarged 1.5x, as in MediaPipe's face mesh graph.
_ROI_SCALE = 1.5
# Eye contours of the mesh: on the image's left, then on its right.
# Index arrays made once: a list built for every face costs more than the mean it indexes.
_LEFT_EYE = np.array((33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173))
_RIGHT_EYE = np.array(
    (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
)
_NOSE_TIP = 1
_MOUTH_LEFT, _MOUTH_RIGHT = 61, 291
# Below this face-presence probability the mesh is not trusted.
MIN_PRESENCE = 0.5
# BlazeFace's keypoints in the mesh: the mouth centre between the inner lips, the tragions
# at the face oval's widest points.
_MOUTH_CENTRE = np.array((13, 14))
_LEFT_TRAGION, _RIGHT_TRAGION = 234, 454
# BlazeFace's box against the mesh's bounding box: its centre shifted down by 4% of the
# mesh's height, 1.1 times as wide and 0.98 times as tall (medians over the 204 faces with
# a mesh in every other frame of the three shared clips; the spread, quartile to quartile,
# is 7% across, 6% down, 16% in width and 6% in height).
_BOX_SHIFT_DOWN = 0.04
_BOX_WIDTH, _BOX_HEIGHT = 1.1, 0.98


class FaceMesh:
    """Refines a detection's keypoints to the five ArcFace points."""

    def __init__(self, model: TFLiteModel) -> None:
        if model.inputs[0].shape != (1, _INPUT, _INPUT, 3):
            raise ModelError(f"{model.path} is not the MediaPipe face mesh model")
        self._model = model

    @classmethod
    def create(cls, model_dir: Path | None = None, num_threads: int = 2) -> FaceMesh:
        folder = model_dir or default_model_dir()
        return cls(TFLiteModel(folder / MESH_FILE, num_threads=num_threads))

    def five_points(self, image_rgb: np.ndarray, detection: Detection) -> np.ndarray | None:
        """(5, 2) eye centres, nose tip and mouth corners in frame pixels, or None if unsure."""
        mesh = self.mesh_points(image_rgb, detection)
        return None if mesh is None else five_from_mesh(mesh)

    def mesh_points(self, image_rgb: np.ndarray, detection: Detection) -> np.ndarray | None:
        """(468, 2) mesh points in frame pixels, or None if the mesh sees no face."""
        points, presence = self.locate(image_rgb, detection)
        return points if presence >= MIN_PRESENCE else None

    def locate(self, image_rgb: np.ndarray, detection: Detection) -> tuple[np.ndarray, float]:
        """(468, 2) mesh points in frame pixels and the mesh's face-presence probability."""
        to_roi = self._roi_transform(detection)
        patch = cv2.warpAffine(image_rgb, to_roi, (_INPUT, _INPUT), flags=cv2.INTER_LINEAR)
        # One float32 array, not a float32 copy and then its quotient: the same numbers.
        tensor = np.divide(patch, np.float32(255.0), dtype=np.float32)[np.newaxis]
        raw_mesh, raw_presence = self._model.run(tensor)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(raw_presence.ravel()[-1], -80, 80))))
        mesh = raw_mesh.reshape(-1, 3)[:, :2]
        back = cv2.invertAffineTransform(to_roi)
        points: np.ndarray = (mesh @ back[:, :2].T + back[:, 2]).astype(np.float32)
        return points, presence

    @staticmethod
    def _roi_transform(detection: Detection) -> np.ndarray:
        """Affine map from the frame to the 192x192 mesh input: a square ROI, eyes level."""
        x0, y0, x1, y1 = detection.box
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        side = max(x1 - x0, y1 - y0) * _ROI_SCALE
        left_eye, right_eye = detection.keypoints[0], detection.keypoints[1]
        angle = math.degrees(math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0]))
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, _INPUT / side)
        matrix[:, 2] += np.array([_INPUT / 2, _INPUT / 2]) - centre
        return matrix


def detection_from_mesh(mesh: np.ndarray, score: float) -> Detection:
    """The detection BlazeFace would likely have given for this mesh: its box and six
    keypoints, with ``score`` (the detector's last word on the face)."""
    x0, y0 = mesh.min(axis=0)
    x1, y1 = mesh.max(axis=0)
    centre_x = (x0 + x1) / 2
    centre_y = (y0 + y1) / 2 + _BOX_SHIFT_DOWN * (y1 - y0)
    half_w, half_h = _BOX_WIDTH * (x1 - x0) / 2, _BOX_HEIGHT * (y1 - y0) / 2
    keypoints = np.array(
        [
            mesh[_LEFT_EYE].mean(axis=0),
            mesh[_RIGHT_EYE].mean(axis=0),
            mesh[_NOSE_TIP],
            mesh[_MOUTH_CENTRE].mean(axis=0),
            mesh[_LEFT_TRAGION],
            mesh[_RIGHT_TRAGION],
        ],
        dtype=np.float32,
    )
    return Detection(
        box=(
            float(centre_x - half_w),
            float(centre_y - half_h),
            float(centre_x + half_w),
            float(centre_y + half_h),
        ),
        keypoints=keypoints,
        score=score,
    )


def five_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """The five ArcFace points (eye centres, nose tip, mouth corners) of a (468, 2) mesh."""
    return np.array(
        [
            mesh[_LEFT_EYE].mean(axis=0),
            mesh[_RIGHT_EYE].mean(axis=0),
            mesh[_NOSE_TIP],
            mesh[_MOUTH_LEFT],
            mesh[_MOUTH_RIGHT],
        ],
        dtype=np.float32,
    )
