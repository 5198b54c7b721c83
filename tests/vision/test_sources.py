"""Frame sources: video files, GIFs, image folders, bad specs, and reopening a failing camera."""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from device.config import CameraConfig
from device.errors import SourceError
from device.vision.sources import (
    FolderSource,
    Frame,
    PiCameraSource,
    ReopeningSource,
    VideoCaptureSource,
    make_source,
    open_source,
)
from tests.conftest import require_shared

CLIP = "data/video/short_hamilton_clip.mp4"


def read_all(source: object) -> list[Frame]:
    frames = []
    while (frame := source.read()) is not None:  # type: ignore[attr-defined]
        frames.append(frame)
    source.close()  # type: ignore[attr-defined]
    return frames


def source_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "device.vision.sources"]


def test_video_file_gives_every_frame_as_rgb_then_ends() -> None:
    source = open_source(str(require_shared(CLIP)))
    assert not source.live
    frames = read_all(source)
    assert len(frames) == 275
    assert frames[0].rgb.shape == (360, 640, 3) and frames[0].rgb.dtype == np.uint8
    assert [f.index for f in frames] == list(range(275))
    captured = [f.captured for f in frames]
    assert captured == sorted(captured)


def test_realtime_paces_a_file_to_its_frame_rate() -> None:
    source = open_source(str(require_shared(CLIP)), CameraConfig(realtime=True))
    started = time.monotonic()
    for _ in range(16):
        source.read()
    elapsed = time.monotonic() - started
    source.close()
    assert elapsed >= 15 / 29.97 - 0.02


def test_gif_is_read_as_video() -> None:
    frames = read_all(
        open_source(str(require_shared("data/video/face-demographics-walking-and-pause.gif")))
    )
    assert len(frames) == 41
    assert frames[0].rgb.shape == (270, 480, 3)


def test_folder_gives_each_image_once_in_name_order_and_skips_bad_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.vision.sources")
    clip = cv2.VideoCapture(str(require_shared(CLIP)))
    for n in range(3):
        ok, bgr = clip.read()
        assert ok
        cv2.imwrite(str(tmp_path / f"frame{n}.png"), bgr)
    clip.release()
    (tmp_path / "frame1b.jpg").write_bytes(b"not an image")
    source = FolderSource(tmp_path, CameraConfig())
    source.open()
    frames = read_all(source)
    assert len(frames) == 3
    (report,) = source_records(caplog)
    assert report.levelno == logging.WARNING and "frame1b.jpg" in report.getMessage()


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path))


def test_spec_chooses_the_source_kind(tmp_path: Path) -> None:
    options = CameraConfig()
    assert isinstance(make_source("picamera2", options), PiCameraSource)
    camera = make_source("0", options)
    assert isinstance(camera, VideoCaptureSource) and camera.live and camera.target == 0
    stream = make_source("rtsp://127.0.0.1:8554/door", options)
    assert isinstance(stream, VideoCaptureSource) and stream.live
    assert isinstance(make_source(str(tmp_path), options), FolderSource)
    for bad in ("", str(tmp_path / "missing.mp4")):
        with pytest.raises(SourceError):
            make_source(bad, options)


def test_a_file_that_is_not_a_video_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        open_source(str(junk))


class FlakyCamera:
    """A live source over the real clip that fails to read, then to open, then recovers."""

    live = True
    description = "flaky camera"

    def __init__(self, video: Path) -> None:
        self.video = video
        self.inner = VideoCaptureSource(str(video), CameraConfig(), live=False)
        self.opens = 0
        self.reads = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens == 2:  # the first reopen fails: the camera is still away
            raise SourceError("flaky camera is gone")
        self.inner.open()

    def read(self) -> Frame | None:
        self.reads += 1
        if 5 <= self.reads < 15:
            raise SourceError("flaky camera delivered no frame")
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def test_a_failing_camera_is_reported_and_reopened_with_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="device.vision.sources")
    camera = FlakyCamera(require_shared(CLIP))
    options = CameraConfig(backoff_initial=0.1, backoff_max=0.4, read_failures_before_reopen=3)
    source = ReopeningSource(camera, options, threading.Event())
    source.open()
    frames = [source.read() for _ in range(10)]
    source.close()
    assert all(frame is not None for frame in frames)
    # Reads 5-14 fail, three at a time: three reopens, the first needing a second try.
    assert camera.opens == 5
    reports = [r.getMessage() for r in source_records(caplog)]
    assert [r.split(";")[0] for r in reports] == [
        "flaky camera delivered no frame",
        "flaky camera is gone",
        "flaky camera reopened",
        "flaky camera delivered no frame",
        "flaky camera reopened",
        "flaky camera delivered no frame",
        "flaky camera reopened",
    ]
    # Until a frame comes through, the wait doubles after each failure, up to backoff_max.
    waits = [r.split(" in ")[-1] for r in reports if " in " in r]
    assert waits == ["0.1 s", "0.2 s", "0.4 s", "0.4 s"]
    # Failures are warnings; the camera coming back is news.
    levels = {r.getMessage().split(";")[0]: r.levelno for r in source_records(caplog)}
    assert levels == {
        "flaky camera delivered no frame": logging.WARNING,
        "flaky camera is gone": logging.WARNING,
        "flaky camera reopened": logging.INFO,
    }


def test_stop_interrupts_the_backoff() -> None:
    class GoneCamera(FlakyCamera):
        def open(self) -> None:
            self.opens += 1
            if self.opens > 1:
                raise SourceError("gone")

        def read(self) -> Frame | None:
            raise SourceError("no frame")

    stop = threading.Event()
    source = ReopeningSource(
        GoneCamera(require_shared(CLIP)),
        CameraConfig(backoff_initial=5.0, read_failures_before_reopen=1),
        stop,
    )
    source.open()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - started < 2.0


def test_picamera2_lores_stream_keeps_the_main_aspect_ratio() -> None:
    assert PiCameraSource(CameraConfig(width=1280, height=720)).lores_size == (320, 180)
    assert PiCameraSource(CameraConfig(width=640, height=480)).lores_size == (320, 240)


def test_picamera2_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hide picamera2 whether or not it is installed: a None entry makes its import fail.
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(SourceError, match="python3-picamera2"):
        open_source("picamera2")
