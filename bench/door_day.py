"""A door's day: what the motion gate and tracking without redetection save, and what they keep.

Two doors watch the same frames, interleaved frame by frame in one process on one
thread: one with ``[motion]`` and ``[tracking]`` off (every frame detected, as
before), one with both on (the defaults). A frame's cost is the thread's CPU time
(``time.thread_time``: what the machine's other jobs do not add to) in
``FaceFollower.analyse`` plus the tracker's update (``VisitorTracker``, identities from the shipped model
against Lin-Manuel Miranda and Alex Lacamoire enrolled from their photos).

- **the day** (full-range detector, 480x270): empty doorstep stretches made by
  ``bench/doorstep.py`` (the walking clip's hall without its people, a sensor's
  noise, the light falling by a third over the day, a swaying patch in one
  stretch) between the three shared clips (the Hamilton clip scaled to 480x270):
  the share of frames that ran the detector, the mean cost per frame, the visits
  found by each door.
- **the figures** (the default short-range detector): an empty doorstep frame,
  a frame of the Hamilton clip whose face is followed, and the CPU share of one
  core an empty doorstep takes at 15 fps (thread CPU time of the gate and the
  safety detections, per second of frames).

    python -m bench.door_day [--empty-seconds 60] [--repeats 1] [--doorstep-seconds 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bench.doorstep import Doorstep, empty_plate
from bench.frame_sets import read_clip
from bench.machine import cpu_name
from device.config import Config
from device.identity.gallery import EmbeddingRows
from device.identity.matching import GalleryIndex, Match
from device.service.tracker import Track, VisitorTracker
from device.vision.embedder import FaceEmbedder, default_model_path
from device.vision.follow import FaceFollower, Work
from device.vision.imageio import read_image
from device.vision.pipeline import FacePipeline, StageTimer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
FPS = 15
PEOPLE = {
    "Lin-Manuel Miranda": "data/video/lin-manuel-miranda.png",
    "Alex Lacamoire": "data/video/alex-lacamoire.png",
}
CLIPS = (
    "data/video/face-demographics-walking-and-pause.gif",
    "data/video/head-pose-face-detection-female-and-male.gif",
    "data/video/short_hamilton_clip.mp4",
)


@dataclass
class Door:
    """One door's vision and tracker, and what its frames cost."""

    label: str
    follower: FaceFollower
    tracker: VisitorTracker
    cpu_ms: list[float] = field(default_factory=list)
    work: list[Work] = field(default_factory=list)
    visits: list[Track] = field(default_factory=list)

    def see(self, frame: np.ndarray, captured: float) -> None:
        before = self.follower.work.copy()
        cpu = time.thread_time()
        faces = self.follower.analyse(frame, bool(self.tracker.tracks))
        step = self.tracker.update(faces, captured)
        self.cpu_ms.append((time.thread_time() - cpu) * 1000)
        (done,) = (self.follower.work - before).keys()
        self.work.append(done)
        self.visits += step.decided

    def finish(self) -> None:
        self.visits += self.tracker.finish().decided


def make_doors(variant: str, embedder: FaceEmbedder, index: GalleryIndex) -> list[Door]:
    doors = []
    for label, on in (("off", False), ("on", True)):
        config = Config()
        config.detector.variant = variant
        config.detector.num_threads = 1
        config.motion.enabled = config.tracking.enabled = on
        pipeline = FacePipeline.from_config(config, embedder)
        threshold = embedder.manifest.identification_threshold or 0.5

        def identify(
            embedding: np.ndarray, threshold: float = threshold, margin: float = config.model.margin
        ) -> Match:
            return index.identify(embedding, threshold, margin)

        tracker = VisitorTracker(
            identify, config.runtime, threshold=threshold, liveness=config.liveness
        )
        doors.append(Door(label, FaceFollower(pipeline, config.motion, config.tracking), tracker))
        # A fresh interpreter's first runs are slow: not counted.
        warm = read_image(SHARED / PEOPLE["Lin-Manuel Miranda"])
        for _ in range(3):
            pipeline.analyse(warm)
    return doors


def household(embedder: FaceEmbedder) -> GalleryIndex:
    """Both people of the clip's folder, enrolled from their one photo each."""
    config = Config()
    config.detector.num_threads = 1
    pipeline = FacePipeline.from_config(config, embedder)
    vectors = []
    for photo in PEOPLE.values():
        (face, *_) = pipeline.analyse(read_image(SHARED / photo))
        assert face.embedding is not None, photo
        vectors.append(face.embedding)
    return GalleryIndex(
        EmbeddingRows(names=list(PEOPLE), person_index=np.arange(2), vectors=np.stack(vectors))
    )


def day(plate: np.ndarray, empty_frames: int) -> Iterator[tuple[str, np.ndarray]]:
    """The day's frames with what they show: empty stretches between the clips."""
    height, width = plate.shape[:2]
    count = len(CLIPS) + 1
    # One light for the whole day, a third darker by its end; the third stretch is windy.
    stretches = [
        Doorstep(
            plate,
            seed=seed,
            light_drop=1 / 3,
            light_frames=empty_frames * count,
            sway=20.0 if seed == 2 else 0.0,
        )
        for seed in range(count)
    ]
    t = 0
    for number, stretch in enumerate(stretches):
        for _ in range(empty_frames):
            yield ("swaying" if stretch.sway else "empty"), stretch.frame(t)
            t += 1
        if number < len(CLIPS):
            for frame in read_clip(SHARED / CLIPS[number]):
                if frame.shape[:2] != (height, width):
                    frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
                yield "clip", frame


def visit_summary(tracks: list[Track]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for track in tracks:
        decision = track.decision
        assert decision is not None
        liveness = decision.liveness.value if decision.liveness else "-"
        who = decision.person or decision.outcome.value
        counts[f"{who} ({liveness})"] += 1
    return counts


def run_day(embedder: FaceEmbedder, index: GalleryIndex, empty_seconds: float) -> None:
    plate = empty_plate(SHARED)
    doors = make_doors("full", embedder, index)
    kinds: list[str] = []
    for frame_number, (kind, frame) in enumerate(day(plate, round(empty_seconds * FPS))):
        kinds.append(kind)
        # Alternate which door goes first, so neither always finds the caches warm.
        for door in doors if frame_number % 2 else doors[::-1]:
            door.see(frame, frame_number / FPS)
    for door in doors:
        door.finish()
    print(
        f"\n#### The day: {len(kinds)} frames (480x270, full-range detector; "
        f"{kinds.count('empty')} empty, {kinds.count('swaying')} with a swaying patch, "
        f"{kinds.count('clip')} of the three clips)\n"
    )
    print(
        "| door | frames that ran the detector (empty / swaying / clips) | followed | skipped "
        "| mean CPU ms/frame (empty / swaying / clips) |"
    )
    print("|---|---|---|---|---|")
    for door in doors:
        counts = Counter(door.work)
        share = {w: 100 * counts[w] / len(door.work) for w in Work}
        detected, means = [], []
        for kind in ("empty", "swaying", "clip"):
            rows = [
                (ms, w) for ms, w, k in zip(door.cpu_ms, door.work, kinds, strict=True) if k == kind
            ]
            detected.append(f"{100 * sum(w is Work.DETECT for _, w in rows) / len(rows):.1f}%")
            means.append(f"{statistics.fmean(ms for ms, _ in rows):.3f}")
        print(
            f"| {door.label} | {share[Work.DETECT]:.1f}% ({' / '.join(detected)}) "
            f"| {share[Work.FOLLOW]:.1f}% | {share[Work.SKIP]:.1f}% "
            f"| {statistics.fmean(door.cpu_ms):.3f} ({' / '.join(means)}) |"
        )
    print("\n| door | visits | who (liveness): visits |\n|---|---|---|")
    for door in doors:
        summary = visit_summary(door.visits)
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(summary.items()))
        print(f"| {door.label} | {len(door.visits)} | {shown} |")
    same = visit_summary(doors[0].visits) == visit_summary(doors[1].visits)
    print(f"\nSame visits, names and liveness verdicts with and without: {'yes' if same else 'NO'}")


def run_figures(
    embedder: FaceEmbedder, index: GalleryIndex, repeats: int, doorstep_seconds: float
) -> None:
    plate = empty_plate(SHARED)
    clip = read_clip(SHARED / CLIPS[2])
    empty: dict[str, list[float]] = {"off": [], "on": []}
    face: dict[str, list[float]] = {"off": [], "on": []}
    timer = StageTimer()
    for repeat in range(repeats):
        doors = make_doors("short", embedder, index)
        doorstep = Doorstep(plate, seed=100 + repeat)
        for t in range(round(FPS * doorstep_seconds)):
            frame = doorstep.frame(t)
            for door in doors if t % 2 else doors[::-1]:
                door.see(frame, t / FPS)
        for door in doors:
            empty[door.label] += door.cpu_ms
        doors = make_doors("short", embedder, index)
        doors[1].follower.pipeline.timer = timer
        for t, frame in enumerate(clip):
            for door in doors if t % 2 else doors[::-1]:
                door.see(frame, t / 30)
        off, on = doors
        for off_ms, on_ms, done in zip(off.cpu_ms, on.cpu_ms, on.work, strict=True):
            if done is Work.FOLLOW:
                face["off"].append(off_ms)
                face["on"].append(on_ms)
    print(
        "\n#### Per frame, interleaved, 1 thread (the default short-range detector; "
        "the thread's CPU time, which a busy machine's other jobs do not add to)\n"
    )
    print("| frame | frames | off: mean / median ms | on: mean / median ms | ratio of means |")
    print("|---|---|---|---|---|")
    for label, values in (
        ("empty doorstep (480x270, noise)", empty),
        ("followed face (Hamilton clip, the frames the mesh followed)", face),
    ):
        off_mean, on_mean = statistics.fmean(values["off"]), statistics.fmean(values["on"])
        print(
            f"| {label} | {len(values['on'])} | {off_mean:.3f} / {statistics.median(values['off']):.3f} "
            f"| {on_mean:.3f} / {statistics.median(values['on']):.3f} | {off_mean / on_mean:.1f}x |"
        )
    stages = ", ".join(
        f"{stage} {statistics.fmean(values) * 1000:.2f} ms"
        for stage, values in timer.samples.items()
    )
    print(f"\nThe door with both on, on the clip, mean per run of each stage: {stages}")
    share = statistics.fmean(empty["on"]) * FPS / 1000 * 100
    print(
        f"\nCPU share of one core on an empty doorstep at {FPS} fps (thread CPU time of the "
        f"gate, the safety detections and the tracker; frames not counted): {share:.2f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--empty-seconds", type=float, default=60.0, help="each empty stretch")
    parser.add_argument("--repeats", type=int, default=1, help="passes of the per-frame figures")
    parser.add_argument(
        "--doorstep-seconds", type=float, default=60.0, help="empty doorstep per figures pass"
    )
    args = parser.parse_args()
    cv2.setNumThreads(1)
    embedder = FaceEmbedder.from_files(default_model_path(), num_threads=1)
    index = household(embedder)
    load = os.getloadavg()[0]
    print(
        f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} cores, 1 thread, "
        f"load average {load:.1f} at the start; model {default_model_path().name}"
    )
    run_day(embedder, index, args.empty_seconds)
    run_figures(embedder, index, args.repeats, args.doorstep_seconds)


if __name__ == "__main__":
    main()
