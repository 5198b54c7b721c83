"""Helpers for tests that run a door: ``peephole run`` as a real process, or a ``Door`` in a thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from click.testing import CliRunner

from device.cli import main
from device.config import Config
from device.service.door import Door
from device.service.sdnotify import SystemdNotifier
from device.site.model_choice import ModelChoice
from device.vision.sources import FrameSource
from tests.broker import Broker
from tests.conftest import ROOT, require_shared

CLIP = "data/video/short_hamilton_clip.mp4"
PEOPLE = {
    "Lin-Manuel Miranda": "data/video/lin-manuel-miranda.png",
    "Alex Lacamoire": "data/video/alex-lacamoire.png",
}


def model_options(reference: tuple[Path, Path] | None) -> list[str]:
    """Command-line options for this model and manifest; none for the shipped default."""
    if reference is None:
        return []
    model, manifest = reference
    return ["--model", str(model), "--manifest", str(manifest)]


def enroll_arguments(name: str) -> list[str]:
    """``enroll`` of one person of the clip's folder from their one photo."""
    return [
        "enroll",
        "--name",
        name,
        "--images",
        str(require_shared(PEOPLE[name])),
        "--min-samples",
        "1",
    ]


def enroll_people(gallery: Path, reference: tuple[Path, Path] | None) -> None:
    """Enroll both people of the clip's folder from their one photo each."""
    runner = CliRunner()
    for name in PEOPLE:
        result = runner.invoke(
            main, ["--db", str(gallery), *model_options(reference), *enroll_arguments(name)]
        )
        assert result.exit_code == 0, result.output


def name_lin_from_his_visit(gallery: Path, workdir: Path) -> str:
    """What a household does to teach the door from what it saw: the Hamilton clip runs
    once (no broker), and Lin's visit is named as him (``visits name --append``). His one
    photo names him on that pass by the narrowest of margins, if at all (half his single
    faces reach the shipped threshold, the other half fall short:
    device/models/MODEL_CARD.md), so his visit is the one the door named him on or, if it
    did not, the stranger's it came closest to naming. Returns the visit id."""
    config = write_config(workdir / "teach.toml", gallery=gallery, outbox=workdir / "teach.db")
    done = run_to_end(config, None, "--source", str(require_shared(CLIP)))
    assert done.returncode == 0, done.stderr
    runner = CliRunner()
    listed = runner.invoke(main, ["--config", str(config), "visits", "list", "--json"])
    his = [
        visit
        for visit in map(json.loads, listed.stdout.splitlines())
        if visit["outcome"] == "stranger" or visit["person"] == "Lin-Manuel Miranda"
    ]
    visit = max(his, key=lambda v: v["similarity"])["visit_id"]
    named = runner.invoke(
        main,
        [
            "--config",
            str(config),
            "visits",
            "name",
            visit,
            "--as",
            "Lin-Manuel Miranda",
            "--append",
        ],
    )
    assert named.exit_code == 0, named.output
    return str(visit)


def make_door(
    folder: Path,
    reference: tuple[Path, Path],
    source: FrameSource,
    *,
    config: Config | None = None,
    **parts: Any,
) -> Door:
    """A door with its gallery and outbox in ``folder``, this model at threshold 0.4, and
    ``source`` as its camera; ``parts`` as :meth:`Door.from_config` takes them."""
    config = config or Config()
    config.gallery.path = str(folder / "gallery.db")
    config.runtime.outbox_path = str(folder / "outbox.db")
    config.model.threshold = 0.4
    config.mqtt.device_id = "door"
    parts.setdefault("notifier", SystemdNotifier({}))
    return Door.from_config(config, ModelChoice(config, *reference), source=source, **parts)


def write_config(
    path: Path,
    *,
    gallery: Path,
    outbox: Path,
    broker: Broker | None = None,
    device_id: str = "door",
    extra: str = "",
    mqtt_extra: str = "",
) -> Path:
    mqtt = (
        f'host = "{broker.host}"\nport = {broker.port}\n'
        "reconnect_min_delay = 1\nreconnect_max_delay = 1\n"
        if broker
        else ""
    )
    path.write_text(
        f'[gallery]\npath = "{gallery}"\n\n'
        f'[runtime]\noutbox_path = "{outbox}"\n\n'
        f'[mqtt]\ndevice_id = "{device_id}"\n{mqtt}{mqtt_extra}\n'
        f"{extra}"
    )
    path.chmod(0o600)
    return path


def run_command(config: Path, reference: tuple[Path, Path] | None, *args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from device.cli import main; main()",
        "--config",
        str(config),
        *model_options(reference),
        "run",
        *args,
    ]


def child_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def start_run(
    config: Path, reference: tuple[Path, Path] | None, *args: str, **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        run_command(config, reference, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(**env),
        cwd=ROOT,
    )


def run_to_end(
    config: Path,
    reference: tuple[Path, Path] | None,
    *args: str,
    timeout: float = 180,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        run_command(config, reference, *args),
        capture_output=True,
        text=True,
        env=child_environment(**env),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def wait_until(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds, polling it every ``interval``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def clip_passes(path: Path, passes: int, gap_seconds: float = 0.0) -> Path:
    """The Hamilton clip ``passes`` times over, ``gap_seconds`` of empty grey doorway
    between passes (MJPG in AVI)."""
    capture = cv2.VideoCapture(str(require_shared(CLIP)))
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    doorway = [np.full_like(frames[0], 128)] * round(fps * gap_seconds)
    for index in range(passes):
        for frame in (doorway if index else []) + frames:
            writer.write(frame)
    writer.release()
    return path


class StderrLines:
    """A child's stderr lines as they come, each with the time it was read."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self.events: list[dict[str, Any]] = []
        self._threads = [
            threading.Thread(target=self._read, args=(process.stderr, self.lines), daemon=True),
            threading.Thread(target=self._events, args=(process,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream: Any, into: list[tuple[float, str]]) -> None:
        for line in stream:
            into.append((time.monotonic(), line.rstrip("\n")))

    def _events(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))
