"""Frame sources behind one interface: the only module that touches a camera library.

A spec string chooses the source:

- ``picamera2``: the Raspberry Pi camera (imported only when opened); a ``main``
  RGB stream for crops and a small ``lores`` YUV420 stream for detection.
- ``0``, ``1``, ...: a USB camera index (OpenCV ``VideoCapture``).
- ``rtsp://...``, ``http://...``: a network stream (OpenCV).
- a video file (mp4, gif, ...): read to its end, as fast as frames are asked
  for, or paced to its own frame rate with ``realtime``.
- a folder of images: each image once, in name order.

Live sources (cameras, streams) that fail or vanish are reopened with
exponential backoff and each failure is reported; files end cleanly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from device import command_name
from device.config import CameraConfig
from device.errors import ImageError, SourceError
from device.vision.imageio import expand_image_paths, read_image

logger = logging.getLogger(__name__)

# OpenCV's and FFmpeg's own lines (``[ WARN:0@0.6] ... can't open camera by index``,
# ``moov atom not found``) would come before peephole's one-line error: quiet them.
# FFmpeg's level is read when OpenCV first opens a file, so setting it here is in time.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    ``captured`` is ``time.monotonic()`` when the frame was obtained: latency is
    measured from it. ``detect_rgb`` is an optional smaller copy to run the
    detector on (picamera2's ``lores`` stream); boxes found on it are scaled to
    ``rgb`` by ``rgb.shape / detect_rgb.shape``.
    """

    rgb: np.ndarray
    index: int
    captured: float
    detect_rgb: np.ndarray | None = None


class FrameSource(Protocol):
    """What the loop needs from a source; ``read`` returns None at the end of a file."""

    description: str
    live: bool

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class VideoCaptureSource:
    """OpenCV ``VideoCapture``: a USB index, a stream URL or a video file."""

    def __init__(self, target: int | str, options: CameraConfig, live: bool) -> None:
        self.target = target
        self.options = options
        self.live = live
        self.description = f"camera {target}" if isinstance(target, int) else str(target)
        self._capture: Any = None
        self._index = 0
        self._started = 0.0
        self._fps = options.fps

    def open(self) -> None:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            hint = (
                f" (no camera here? give a video file instead: '{command_name()} run --source"
                f" FILE', '{command_name()} enroll --video FILE')"
                if isinstance(self.target, int)
                else " (not a video or image file this build can read)"
                if not self.live
                else ""
            )
            raise SourceError(f"cannot open {self.description}{hint}")
        if isinstance(self.target, int):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.options.width)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.options.height)
            capture.set(cv2.CAP_PROP_FPS, self.options.fps)
        native_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = native_fps if 0.0 < native_fps < 240.0 else self.options.fps
        self._capture = capture
        self._started = time.monotonic()

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceError(f"{self.description} is not open")
        ok, bgr = self._capture.read()
        if not ok or bgr is None:
            if self.live:
                raise SourceError(f"{self.description} delivered no frame")
            if self._index == 0:
                raise SourceError(f"{self.description} holds no frame (not a video or image?)")
            return None
        if self.options.realtime and not self.live:
            _sleep_until(self._started + self._index / self._fps)
        frame = Frame(
            rgb=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index=self._index, captured=time.monotonic()
        )
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FolderSource:
    """Every image in a folder once, in name order; unreadable images are reported and skipped."""

    live = False

    def __init__(self, folder: Path, options: CameraConfig) -> None:
        self.folder = folder
        self.options = options
        self.description = str(folder)
        self._paths: list[Path] = []
        self._position = 0
        self._index = 0
        self._started = 0.0

    def open(self) -> None:
        try:
            self._paths = expand_image_paths([self.folder])
        except ImageError as error:
            raise SourceError(str(error)) from None
        if not self._paths:
            raise SourceError(f"no images in folder {self.folder}")
        self._position = 0
        self._started = time.monotonic()

    def read(self) -> Frame | None:
        while self._position < len(self._paths):
            path = self._paths[self._position]
            self._position += 1
            try:
                rgb = read_image(path)
            except ImageError as error:
                logger.warning(f"skipping {error}")
                continue
            if self.options.realtime:
                _sleep_until(self._started + self._index / self.options.fps)
            frame = Frame(rgb=rgb, index=self._index, captured=time.monotonic())
            self._index += 1
            return frame
        return None

    def close(self) -> None:
        self._paths = []


class PiCameraSource:
    """The Raspberry Pi camera through picamera2 (Debian's ``python3-picamera2``)."""

    live = True
    description = "picamera2"

    # The detector sees at most 128-192 px, so a small lores stream is plenty.
    # It keeps the main stream's aspect ratio so faces are not squashed.
    LORES_WIDTH = 320

    def __init__(self, options: CameraConfig) -> None:
        self.options = options
        self._camera: Any = None
        self._index = 0

    @property
    def lores_size(self) -> tuple[int, int]:
        height = round(self.LORES_WIDTH * self.options.height / self.options.width / 2) * 2
        return self.LORES_WIDTH, max(2, height)

    def open(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise SourceError(
                "picamera2 is not installed: apt install python3-picamera2 and create the "
                "virtual environment with --system-site-packages"
            ) from None
        try:
            camera = Picamera2()
            config = camera.create_video_configuration(
                main={"size": (self.options.width, self.options.height), "format": "RGB888"},
                lores={"size": self.lores_size, "format": "YUV420"},
                controls={"FrameRate": self.options.fps},
            )
            camera.configure(config)
            camera.start()
        except Exception as error:  # picamera2 raises bare RuntimeError/IndexError/OSError
            raise SourceError(f"cannot open picamera2: {error}") from None
        self._camera = camera

    def read(self) -> Frame | None:
        if self._camera is None:
            raise SourceError("picamera2 is not open")
        try:
            request = self._camera.capture_request()
            try:
                # picamera2's "RGB888" is BGR in memory order.
                main = cv2.cvtColor(request.make_array("main"), cv2.COLOR_BGR2RGB)
                lores_yuv = request.make_array("lores")
            finally:
                request.release()
        except Exception as error:
            raise SourceError(f"picamera2 capture failed: {error}") from None
        lores = cv2.cvtColor(lores_yuv, cv2.COLOR_YUV420p2RGB)
        frame = Frame(rgb=main, index=self._index, captured=time.monotonic(), detect_rgb=lores)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._camera is not None:
            try:
                self._camera.stop()
                self._camera.close()
            except Exception as error:
                logger.warning(f"picamera2 close failed: {error}")
            self._camera = None


class ReopeningSource:
    """Wraps a live source: on failure, report, wait with backoff, reopen; until stopped.

    ``read`` returns None only when ``stop`` is set. While the camera is away no
    frame reaches the loop, so the loop does not feed the systemd watchdog.
    """

    def __init__(
        self,
        inner: FrameSource,
        options: CameraConfig,
        stop: threading.Event,
    ) -> None:
        self.inner = inner
        self.options = options
        self.stop = stop
        self.description = inner.description
        self.live = inner.live
        self.failures = 0
        self._open = False

    def open(self) -> None:
        self.inner.open()
        self._open = True

    def read(self) -> Frame | None:
        delay = self.options.backoff_initial
        consecutive = 0
        while not self.stop.is_set():
            if not self._open:
                try:
                    self.inner.open()
                    self._open = True
                    logger.info(f"{self.description} reopened")
                except SourceError as error:
                    self.failures += 1
                    logger.warning(f"{error}; retrying in {delay:.1f} s")
                    self.stop.wait(delay)
                    delay = min(delay * 2, self.options.backoff_max)
                    continue
            try:
                frame = self.inner.read()
            except SourceError as error:
                consecutive += 1
                if consecutive < self.options.read_failures_before_reopen:
                    continue
                self.failures += 1
                logger.warning(f"{error}; reopening in {delay:.1f} s")
                self._close_inner()
                self.stop.wait(delay)
                delay = min(delay * 2, self.options.backoff_max)
                consecutive = 0
                continue
            if frame is not None:
                return frame
        return None

    def close(self) -> None:
        self._close_inner()

    def _close_inner(self) -> None:
        if self._open:
            self.inner.close()
            self._open = False


def open_source(
    spec: str,
    options: CameraConfig | None = None,
    stop: threading.Event | None = None,
) -> FrameSource:
    """The source a spec names, opened; a SourceError says why it could not be."""
    options = options or CameraConfig()
    source = make_source(spec, options)
    if source.live:
        source = ReopeningSource(source, options, stop or threading.Event())
    source.open()
    return source


def make_source(spec: str, options: CameraConfig) -> FrameSource:
    """The unopened source a spec names (see the module docstring)."""
    spec = spec.strip()
    if not spec:
        raise SourceError("empty source: give a camera index, picamera2, a URL, a file or a folder")
    if spec == "picamera2":
        return PiCameraSource(options)
    if spec.isdigit():
        return VideoCaptureSource(int(spec), options, live=True)
    if "://" in spec:
        return VideoCaptureSource(spec, options, live=True)
    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, options)
    if path.is_file():
        return VideoCaptureSource(str(path), options, live=False)
    raise SourceError(f"no such file, folder or camera: {spec}")


def _sleep_until(deadline: float) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
