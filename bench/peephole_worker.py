"""peephole's per-frame pipeline with one embedding model, measured in its own process.

Run by bench/compare.py, never imported by it.

    python bench/peephole_worker.py FRAMES.npz OUT.json --model M.tflite [--manifest M.json]
        --threads T --gallery-images PATHS.txt

Every frame set of FRAMES.npz goes through ``FacePipeline.analyse`` (detect,
face-mesh landmarks, align, gate, embed the faces that pass) and each embedding
is identified against a ``GalleryIndex`` of one enrollment photo per person.
Writes seconds per stage (summed over the faces of a frame) and per frame.

The ``sequence`` set (consecutive frames) also goes through the camera loop's
vision as ``peephole run`` has it: ``FaceFollower`` (the motion gate, and the
face followed by its mesh without the detector) and the ``VisitorTracker``
(which asks for an embedding only where a visit needs one, and identifies it
against the same gallery). Writes seconds per frame and which work each did.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from device.config import Config
from device.identity.gallery import EmbeddingRows
from device.identity.matching import GalleryIndex, Match
from device.service.tracker import VisitorTracker
from device.vision.embedder import FaceEmbedder
from device.vision.follow import FaceFollower
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline, StageTimer

STAGES = ("detect", "landmarks", "align", "gate", "embed", "match")
# The camera loop's set, and its frame rate (the shared clip's) for the tracker's clock.
SEQUENCE = "sequence"
SEQUENCE_FPS = 30.0


def build_index(pipeline: FacePipeline, paths: list[str]) -> GalleryIndex:
    names, vectors = [], []
    for path in paths:
        faces = [f for f in pipeline.analyse(read_image(path)) if f.embedding is not None]
        if faces:
            names.append(Path(path).stem)
            vectors.append(faces[0].embedding)
    rows = EmbeddingRows(
        names=names, person_index=np.arange(len(names)), vectors=np.array(vectors, np.float32)
    )
    return GalleryIndex(rows)


def time_frames(
    frames: np.ndarray,
    pipeline: FacePipeline,
    timer: StageTimer,
    index: GalleryIndex,
    threshold: float,
    margin: float,
) -> dict[str, list[float]]:
    """Seconds per stage and per frame; the first frame warms up and is not counted."""
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "frame", "faces")}
    for number, frame in enumerate(frames):
        timer.samples.clear()
        started = time.perf_counter()
        faces = pipeline.analyse(frame)
        embedded = [f.embedding for f in faces if f.embedding is not None]
        matched = time.perf_counter()
        for embedding in embedded:
            index.identify(embedding, threshold, margin)
        done = time.perf_counter()
        if number == 0:
            continue
        if embedded:
            timer.add("match", done - matched)
        for stage in STAGES:
            if timer.samples.get(stage):
                samples[stage].append(float(sum(timer.samples[stage])))
        samples["frame"].append(done - started)
        samples["faces"].append(float(len(embedded)))
    return samples


def time_camera_loop(
    frames: np.ndarray,
    config: Config,
    embedder: FaceEmbedder,
    index: GalleryIndex,
    threshold: float,
) -> dict[str, list[float] | list[str]]:
    """Seconds per frame of the camera loop's vision and tracker, and the work each frame had;
    the first frame warms up and is not counted."""
    pipeline = FacePipeline.from_config(config, embedder)
    follower = FaceFollower(pipeline, config.motion, config.tracking)

    def identify(embedding: np.ndarray) -> Match:
        return index.identify(embedding, threshold, config.model.margin)

    tracker = VisitorTracker(
        identify,
        config.runtime,
        threshold=threshold,
        liveness=config.liveness,
        keep_faces=config.visits.crops,
    )
    seconds: list[float] = []
    work: list[str] = []
    for number, frame in enumerate(frames):
        before = follower.work.copy()
        started = time.perf_counter()
        faces = follower.analyse(frame, bool(tracker.tracks))
        tracker.update(faces, number / SEQUENCE_FPS)
        done = time.perf_counter()
        if number == 0:
            continue
        seconds.append(done - started)
        (kind,) = (follower.work - before).keys()
        work.append(kind.value)
    return {"frame": seconds, "work": work}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("frames", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--manifest", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gallery-images", type=Path, required=True)
    args = parser.parse_args()
    config = Config()
    config.detector.num_threads = args.threads
    embedder = FaceEmbedder.from_files(args.model, args.manifest, num_threads=args.threads)
    pipeline = FacePipeline.from_config(config, embedder)
    index = build_index(pipeline, args.gallery_images.read_text().split())
    timer = StageTimer()
    pipeline.timer = timer
    threshold = embedder.manifest.identification_threshold or 0.4
    result: dict[str, object] = {"gallery_people": len(index.names), "sets": {}}
    with np.load(args.frames) as data:
        for name in data.files:
            result["sets"][name] = time_frames(  # type: ignore[index]
                data[name], pipeline, timer, index, threshold, config.model.margin
            )
        if SEQUENCE in data.files:
            result["camera_loop"] = time_camera_loop(
                data[SEQUENCE], config, embedder, index, threshold
            )
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
