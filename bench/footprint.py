"""What peephole costs to keep running: memory, start-up, event latency, disk.

``peephole run`` is started as a child process and its peak resident memory is
read from the kernel's high-water mark for that process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

POLL_SECONDS = 0.02


@dataclass(frozen=True)
class ChildRun:
    returncode: int
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_measured(command: list[str], env: dict[str, str], cwd: Path) -> ChildRun:
    """Run a command to its end; wall time and peak RSS of that process alone.

    The peak is the kernel's high-water mark of the child's own address space
    (``VmHWM``), polled while it runs: ``ru_maxrss`` would also count the parent's
    memory that the child inherits until its exec.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=cwd)
        peak_kb = 0
        status = Path(f"/proc/{process.pid}/status")
        while process.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(status))
            time.sleep(POLL_SECONDS)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return ChildRun(
            returncode=process.returncode,
            seconds=seconds,
            peak_rss_mb=peak_kb / 1024,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def _high_water_kb(status: Path) -> int:
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass
class RunFootprint:
    """``peephole run`` on a video file, and its start-up to the first processed frame."""

    model: str
    run: ChildRun
    first_frame_seconds: list[float]
    python_start_seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    events: int = 0

    @property
    def first_frame_median(self) -> float:
        return statistics.median(self.first_frame_seconds)


class PeepholeCli:
    """Runs ``python -m device`` with its own gallery, outbox and config folders."""

    def __init__(self, folder: Path, model: Path, manifest: Path | None, root: Path) -> None:
        self.folder, self.root, self.model = folder, root, model
        self.globals = ["--db", str(folder / "gallery.db"), "--model", str(model)]
        if manifest is not None:
            self.globals += ["--manifest", str(manifest)]
        self.env = {
            **os.environ,
            "XDG_CONFIG_HOME": str(folder / "config"),
            "XDG_DATA_HOME": str(folder / "data"),
        }
        self.env.pop("PEEPHOLE_CONFIG", None)

    def __call__(self, *args: str) -> ChildRun:
        command = [sys.executable, "-m", "device", *self.globals, *args]
        return run_measured(command, self.env, self.root)


def measure_run(
    cli: PeepholeCli,
    clip: Path,
    enroll: tuple[str, Path],
    stop_after_frames: int | None,
    first_frame_repeats: int,
) -> RunFootprint:
    name, photo = enroll
    enrolled = cli(
        "enroll", "--name", name, "--images", str(photo), "--samples", "1", "--min-samples", "1"
    )
    if enrolled.returncode != 0:
        raise RuntimeError(f"peephole enroll failed: {enrolled.stderr.strip()}")
    outbox = str(cli.folder / "outbox.db")
    limit = ["--stop-after-frames", str(stop_after_frames)] if stop_after_frames else []
    run = cli("run", "--source", str(clip), "--fast", "--outbox", outbox, *limit)
    if run.returncode != 0:
        raise RuntimeError(f"peephole run failed: {run.stderr.strip()}")
    first = [
        cli(
            "run", "--source", str(clip), "--fast", "--outbox", outbox, "--stop-after-frames", "1"
        ).seconds
        for _ in range(first_frame_repeats)
    ]
    bare = run_measured([sys.executable, "-c", "pass"], cli.env, cli.root).seconds
    footprint = RunFootprint(cli.model.name, run, first, bare)
    for line in run.stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        footprint.events += 1
        if isinstance(event, dict) and event.get("latency_ms") is not None:
            footprint.latencies_ms.append(float(event["latency_ms"]))
    return footprint


def lock_packages(lock: Path) -> list[str]:
    """Names of the packages a lock file installs on this platform."""
    names = []
    for raw in lock.read_text().splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate():
            names.append(requirement.name)
    return names


def installed_size(names: list[str]) -> tuple[int, list[str]]:
    """Bytes on disk of the named installed distributions (from their RECORD), and those missing."""
    total, missing = 0, []
    for name in names:
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        for file in distribution.files or []:
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                total += path.stat().st_size
    return total, missing


def tree_size(folder: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())
