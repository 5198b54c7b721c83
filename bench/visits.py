"""What keeping visits costs: per frame in the loop, on disk per visit, and naming to known.

Per frame: two doors (``device.service.door.Door``) over the same analysed
Hamilton frames, one with ``[visits] enabled`` and one without, fed frame by
frame in turns (which goes first alternates), the loop's whole ``process``
timed: tracking, best faces and doorstep copies, events, the hand-over to the
recorder thread. The analysis (detection to embedding) is done once up front
and replayed to both, so what differs is only what visits add; the recorder's
own thread encodes and writes meanwhile, as on the door. OpenCV and TFLite
on one thread.

    python -m bench.visits [--passes 4]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from bench.machine import cpu_name
from device.config import Config
from device.identity.visits import VisitStore
from device.service.door import Door
from device.service.sdnotify import SystemdNotifier
from device.site.model_choice import ModelChoice
from device.vision.pipeline import FaceAnalysis, FacePipeline
from device.vision.sources import Frame, open_source

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data" / "video" / "short_hamilton_clip.mp4"


class Replay:
    """A pipeline that answers each frame with the faces analysed for it beforehand."""

    def __init__(self, pipeline: FacePipeline, faces: dict[int, list[FaceAnalysis]]) -> None:
        self.embedder = pipeline.embedder
        self._faces = faces

    def analyse(
        self, image_rgb: np.ndarray, detect_rgb: np.ndarray | None = None
    ) -> list[FaceAnalysis]:
        return self._faces[id(image_rgb)]


class NoFrames:
    description = "replayed frames"
    live = False

    def open(self) -> None:
        return None

    def read(self) -> Frame | None:
        return None

    def close(self) -> None:
        return None


def clip_frames() -> list[Frame]:
    source = open_source(str(CLIP))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    source.close()
    return frames


def door(folder: Path, visits: bool, pipeline: FacePipeline, models: ModelChoice) -> Door:
    config = Config()
    config.gallery.path = str(folder / "gallery.db")
    config.runtime.outbox_path = str(folder / "outbox.db")
    config.runtime.status_path = str(folder / "status.json")
    config.visits.enabled = visits
    return Door.from_config(
        config,
        models,
        source=NoFrames(),
        pipeline=pipeline,
        notifier=SystemdNotifier({}),
        out=io.StringIO(),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=4, help="times through the clip")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    config = Config()
    config.detector.num_threads = config.model.num_threads = 1
    models = ModelChoice(config)
    analysis = FacePipeline.from_config(config, models.embedder())
    frames = clip_frames()
    faces = {id(f.rgb): analysis.analyse(f.rgb) for f in frames}
    replay = cast(FacePipeline, Replay(analysis, faces))
    seconds: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as folder:
        doors = {on: door(Path(folder) / str(on), on, replay, models) for on in (False, True)}
        loops = {}
        for on, each in doors.items():
            each.start()
            loops[on] = each.loop()
        index = 0
        for _ in range(args.passes):
            for frame in frames:
                order = (False, True) if index % 2 else (True, False)
                for on in order:
                    numbered = Frame(frame.rgb, index, time.monotonic())
                    started = time.perf_counter()
                    loops[on].process(numbered)
                    seconds[on].append(time.perf_counter() - started)
                index += 1
        for each in doors.values():
            each.close()
        store = VisitStore.open(Path(folder) / "True" / "visits.db")
        stored, size = len(store), store.total_bytes()
        store.close()
    mean = {m: 1000 * statistics.mean(seconds[m]) for m in seconds}
    p95 = {m: 1000 * float(np.percentile(seconds[m], 95)) for m in seconds}
    print(f"{time.strftime('%Y-%m-%d')}, {cpu_name()}, {os.cpu_count()} CPUs, one thread")
    print(f"{len(frames)} clip frames x {args.passes} passes, interleaved; analysis replayed\n")
    print("| loop.process | mean ms/frame | p95 ms/frame |")
    print("|---|---|---|")
    print(f"| visits off | {mean[False]:.4f} | {p95[False]:.4f} |")
    print(f"| visits on | {mean[True]:.4f} | {p95[True]:.4f} |")
    added = mean[True] - mean[False], p95[True] - p95[False]
    print(f"| added by keeping visits | {added[0]:.4f} | {added[1]:.4f} |")
    per_visit = size / max(stored, 1) / 1024
    print(f"\nvisits stored: {stored}; {per_visit:.1f} KiB per visit on disk (images)")


if __name__ == "__main__":
    main()
