"""The face_recognition stack (dlib HOG detector, 5-point landmarks, ResNet), measured in its own process.

Run by bench/compare.py, never imported by it: dlib's thread pools follow the
OMP/OPENBLAS variables of this process, which compare.py sets per run.

    python bench/facerec_worker.py frames FRAMES.npz OUT.json [--gallery-images PATHS.txt]
    python bench/facerec_worker.py lfw PATHS.txt CACHE.npz

``frames``: per-stage and per-frame wall time on every frame set of FRAMES.npz
(face_locations with HOG, face_encodings for every face found, face_distance
against a gallery of one encoding per person). ``lfw``: one encoding per image
(the face nearest the centre; an image without a detection is encoded from the
median box of the others and counted), cached in CACHE.npz and resumable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

with warnings.catch_warnings():
    # face_recognition_models finds its files through the deprecated pkg_resources.
    warnings.simplefilter("ignore")
    import face_recognition

Box = tuple[int, int, int, int]  # face_recognition's (top, right, bottom, left)
SAVE_EVERY = 200


def nearest_centre(boxes: list[Box], width: int, height: int) -> Box:
    def distance(box: Box) -> float:
        top, right, bottom, left = box
        return float(np.hypot((left + right) / 2 - width / 2, (top + bottom) / 2 - height / 2))

    return min(boxes, key=distance)


def time_frames(frames: np.ndarray, gallery: np.ndarray) -> dict[str, list[float]]:
    """Seconds per stage and per frame; the first frame warms up and is not counted."""
    samples: dict[str, list[float]] = {"detect": [], "encode": [], "match": [], "frame": []}
    faces: list[int] = []
    for index, frame in enumerate(frames):
        started = time.perf_counter()
        locations = face_recognition.face_locations(frame)
        located = time.perf_counter()
        encodings = face_recognition.face_encodings(frame, known_face_locations=locations)
        encoded = time.perf_counter()
        for encoding in encodings:
            int(np.argmin(face_recognition.face_distance(gallery, encoding)))
        done = time.perf_counter()
        if index == 0:
            continue
        samples["detect"].append(located - started)
        if encodings:
            samples["encode"].append(encoded - located)
            samples["match"].append(done - encoded)
        samples["frame"].append(done - started)
        faces.append(len(encodings))
    return {**samples, "faces": [float(n) for n in faces]}


def gallery_encodings(paths: list[str]) -> np.ndarray:
    """One encoding per enrollment photo (the gallery the frames are matched against)."""
    encodings = []
    for path in paths:
        found = face_recognition.face_encodings(face_recognition.load_image_file(path))
        if found:
            encodings.append(found[0])
    return np.array(encodings)


def run_frames(frames_file: Path, out_file: Path, gallery_list: Path) -> None:
    gallery = gallery_encodings(gallery_list.read_text().split())
    result: dict[str, object] = {"gallery_people": len(gallery), "sets": {}}
    with np.load(frames_file) as data:
        for name in data.files:
            result["sets"][name] = time_frames(data[name], gallery)  # type: ignore[index]
    out_file.write_text(json.dumps(result))


def run_lfw(paths_file: Path, cache_file: Path) -> None:
    paths = paths_file.read_text().split()
    done: dict[str, tuple[np.ndarray, Box, bool]] = {}
    if cache_file.exists():
        with np.load(cache_file) as cache:
            for path, encoding, box, found in zip(
                cache["paths"], cache["encodings"], cache["boxes"], cache["found"], strict=True
            ):
                done[str(path)] = (encoding, tuple(int(v) for v in box), bool(found))  # type: ignore[assignment]
    missing: list[tuple[str, np.ndarray]] = []
    for count, path in enumerate(paths, 1):
        if path in done:
            continue
        image = face_recognition.load_image_file(path)
        boxes = face_recognition.face_locations(image)
        if not boxes:
            missing.append((path, image))
            continue
        box = nearest_centre(boxes, image.shape[1], image.shape[0])
        encoding = face_recognition.face_encodings(image, known_face_locations=[box])[0]
        done[path] = (encoding, box, True)
        if count % SAVE_EVERY == 0:
            save_cache(cache_file, done)
            print(f"lfw: {len(done)}/{len(paths)}", file=sys.stderr, flush=True)
    if missing:
        box = typical_box(done, cache_file.parent)
        for path, image in missing:
            encoding = face_recognition.face_encodings(image, known_face_locations=[box])[0]
            done[path] = (encoding, box, False)  # type: ignore[assignment]
    save_cache(cache_file, done)


def typical_box(done: dict[str, tuple[np.ndarray, Box, bool]], folder: Path) -> Box:
    """The median face box of this run and of the other caches in the folder."""
    boxes = [box for _, box, found in done.values() if found]
    for cache in folder.glob("facerec_lfw*.npz"):
        if cache.name.endswith(".partial.npz"):
            continue
        with np.load(cache) as data:
            boxes += [
                (int(t), int(r), int(b), int(le)) for t, r, b, le in data["boxes"][data["found"]]
            ]
    typical = np.median(np.array(boxes), axis=0)
    return (int(typical[0]), int(typical[1]), int(typical[2]), int(typical[3]))


def save_cache(cache_file: Path, done: dict[str, tuple[np.ndarray, Box, bool]]) -> None:
    paths = sorted(done)
    partial = cache_file.with_name(cache_file.stem + ".partial.npz")
    np.savez(
        partial,
        paths=np.array(paths),
        encodings=np.array([done[p][0] for p in paths], dtype=np.float32).reshape(-1, 128),
        boxes=np.array([done[p][1] for p in paths], dtype=np.int32).reshape(-1, 4),
        found=np.array([done[p][2] for p in paths], dtype=bool),
    )
    partial.replace(cache_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["frames", "lfw"])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--gallery-images", type=Path)
    args = parser.parse_args()
    if args.mode == "frames":
        run_frames(args.source, args.out, args.gallery_images)
    else:
        run_lfw(args.source, args.out)


if __name__ == "__main__":
    main()
