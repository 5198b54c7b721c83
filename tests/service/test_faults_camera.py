"""The camera vanishes mid-run and comes back: reported, retried with backoff, resumed.

The loop is the real one (pipeline, tracker, outbox, notifier on a real unix
socket); the camera is a real video whose "cable" the test pulls and plugs back.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from device.config import CameraConfig
from device.errors import SourceError
from device.service.sdnotify import SystemdNotifier
from device.vision.sources import Frame, ReopeningSource, VideoCaptureSource
from tests.conftest import require_shared
from tests.runtime_helpers import make_door, wait_until
from tests.service.test_service import notify_socket

CLIP = "data/video/short_hamilton_clip.mp4"


def drain(receiver: socket.socket, within: float = 0.3) -> list[str]:
    """What the notify socket holds now (and gets within ``within`` s): pings never stop it."""
    messages, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            messages.append(receiver.recv(4096).decode())
        except TimeoutError:
            break
    return messages


class UnpluggableCamera:
    """A live camera (a looping real video) that fails to read and to open while unplugged."""

    live = True
    description = "door camera"

    def __init__(self, video: Path) -> None:
        self.video = VideoCaptureSource(str(video), CameraConfig(), live=False)
        self.plugged = threading.Event()
        self.plugged.set()
        self.opens = 0

    def open(self) -> None:
        if not self.plugged.is_set():
            raise SourceError("cannot open door camera (no such device)")
        self.video.open()
        self.opens += 1

    def read(self) -> Frame | None:
        if not self.plugged.is_set():
            raise SourceError("door camera delivered no frame")
        frame = self.video.read()
        if frame is None:  # loop the clip like an endless camera
            self.video.close()
            self.video.open()
            frame = self.video.read()
        return frame

    def close(self) -> None:
        self.video.close()


def test_camera_lost_and_back_is_reported_retried_with_backoff_and_resumed(
    tmp_path: Path, reference_f32: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.vision.sources")
    receiver = notify_socket(tmp_path / "notify.sock")
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "60000"}
    )
    camera = UnpluggableCamera(require_shared(CLIP))
    stop = threading.Event()
    options = CameraConfig(backoff_initial=0.05, backoff_max=0.4, read_failures_before_reopen=3)
    source = ReopeningSource(camera, options, stop)
    source.open()
    door = make_door(tmp_path, reference_f32, source, notifier=notifier, stop=stop)
    loop = door.loop()
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        assert wait_until(lambda: loop.stats.frames >= 10, timeout=60)
        flowing = drain(receiver)
        camera.plugged.clear()
        # Once the source reports the failure, the loop waits in read(): no more pings or frames.
        assert wait_until(lambda: source.failures >= 1, timeout=30)
        frames_at_unplug = loop.stats.frames
        drain(receiver)
        time.sleep(2.0)  # the window under test: about 30 watchdog periods without a camera
        during_outage = drain(receiver)
        frames_during_outage = loop.stats.frames - frames_at_unplug
        camera.plugged.set()
        assert wait_until(lambda: loop.stats.frames >= frames_at_unplug + 10, timeout=60)
        after = drain(receiver)
    finally:
        stop.set()
        runner.join(timeout=30)
        door.close()
        receiver.close()
    assert not runner.is_alive()
    assert "WATCHDOG=1" in flowing
    assert "WATCHDOG=1" not in during_outage, during_outage
    assert frames_during_outage == 0
    assert "WATCHDOG=1" in after
    reports = [r.getMessage() for r in caplog.records if r.name == "device.vision.sources"]
    assert any("delivered no frame; reopening" in r for r in reports), reports
    delays = [float(d) for r in reports for d in re.findall(r"retrying in ([0-9.]+) s", r)]
    assert len(delays) >= 3, reports
    assert delays == sorted(delays) and delays[-1] == options.backoff_max, delays
    assert any(r == "door camera reopened" for r in reports), reports
    assert camera.opens >= 2
