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
_LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
_RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
_NOSE_TIP = 1
_MOUTH_LEFT, _MOUTH_RIGHT = 61, 291
# Below this face-presence probability the mesh is not trusted.
_MIN_PRESENCE = 0.5


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
        to_roi = self._roi_transform(detection)
        patch = cv2.warpAffine(image_rgb, to_roi, (_INPUT, _INPUT), flags=cv2.INTER_LINEAR)
        tensor = (patch.astype(np.float32) / 255.0)[np.newaxis]
        raw_mesh, raw_presence = self._model.run(tensor)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(raw_presence.ravel()[-1], -80, 80))))
        if presence < _MIN_PRESENCE:
            return None
        mesh = raw_mesh.reshape(-1, 3)[:, :2]
        back = cv2.invertAffineTransform(to_roi)
        points: np.ndarray = (mesh @ back[:, :2].T + back[:, 2]).astype(np.float32)
        return points

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


def five_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """The five ArcFace points (eye centres, nose tip, mouth corners) of a (468, 2) mesh."""
    return np.array(
        [
            mesh[list(_LEFT_EYE)].mean(axis=0),
            mesh[list(_RIGHT_EYE)].mean(axis=0),
            mesh[_NOSE_TIP],
            mesh[_MOUTH_LEFT],
            mesh[_MOUTH_RIGHT],
        ],
        dtype=np.float32,
    )
