"""The frames every stack is timed on, written once to one .npz so each worker reads the same pixels.

- ``clip``: frames of the shared 640x360 video, evenly spaced.
- ``sequence``: the same video's frames one after the other, as a camera
  delivers them (the camera loop's motion gate and tracking need consecutive frames).
- ``lfw``: LFW images (250x250) scaled to 480x480 and centred on a black 640x480 frame.
- ``faces1``/``faces2``/``faces4``: 640x480 grey frames holding 1, 2 or 4 LFW
  images (240x240 tiles, one person each) for the cost per extra face.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from device.vision.imageio import read_image

FRAME_W, FRAME_H = 640, 480
TILE = 240
TILE_ORIGINS = [(80, 0), (320, 0), (80, 240), (320, 240)]  # (x, y) of a 2x2 grid


def read_clip(path: Path) -> list[np.ndarray]:
    """Every frame of a video file, RGB."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def clip_frames(clip: Path, count: int) -> np.ndarray:
    frames = read_clip(clip)
    if not frames:
        raise RuntimeError(f"no frames in {clip}")
    picks = np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int)
    return np.stack([frames[i] for i in picks])


def lfw_people(lfw_dir: Path, count: int, seed: int) -> list[Path]:
    """One image each of ``count`` different people, chosen reproducibly."""
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir())
    random.Random(seed).shuffle(people)
    return [sorted(person.glob("*.jpg"))[0] for person in people[:count]]


def letterbox(image: np.ndarray) -> np.ndarray:
    side = FRAME_H
    scaled = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    frame = np.zeros((FRAME_H, FRAME_W, 3), dtype=np.uint8)
    left = (FRAME_W - side) // 2
    frame[:, left : left + side] = scaled
    return frame


def tiled(images: list[np.ndarray]) -> np.ndarray:
    frame = np.full((FRAME_H, FRAME_W, 3), 128, dtype=np.uint8)
    for image, (x, y) in zip(images, TILE_ORIGINS, strict=False):
        frame[y : y + TILE, x : x + TILE] = cv2.resize(image, (TILE, TILE))
    return frame


def write_frame_sets(
    out: Path,
    clip: Path,
    lfw_dir: Path,
    counts: tuple[int, int, int, int | None],
) -> dict[str, int]:
    """Write the frame sets; returns frames per set. Each set has one extra warm-up frame first.

    ``counts``: frames of the clip, LFW frames, tiled frames per face count, and
    consecutive frames of the clip (None: all of it).
    """
    clip_count, lfw_count, tile_count, sequence_count = counts
    sets = {
        "clip": clip_frames(clip, clip_count + 1),
        "sequence": np.stack(
            read_clip(clip)[: None if sequence_count is None else sequence_count + 1]
        ),
    }
    lfw_images = [read_image(p) for p in lfw_people(lfw_dir, lfw_count + 1, seed=6)]
    sets["lfw"] = np.stack([letterbox(image) for image in lfw_images])
    faces = [read_image(p) for p in lfw_people(lfw_dir, 4 * (tile_count + 1), seed=7)]
    for per_frame in (1, 2, 4):
        sets[f"faces{per_frame}"] = np.stack(
            [tiled(faces[4 * i : 4 * i + per_frame]) for i in range(tile_count + 1)]
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **sets)  # type: ignore[arg-type]  # numpy's stub fears a key named allow_pickle
    return {name: len(frames) - 1 for name, frames in sets.items()}
