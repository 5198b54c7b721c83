"""``peephole run`` as a service: sd_notify, signals, availability and the last will, the unit file."""

from __future__ import annotations

import configparser
import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from device.service.sdnotify import SystemdNotifier
from device.vision.sources import Frame, open_source
from tests.broker import Broker, Subscriber
from tests.conftest import ROOT, missing, require_shared
from tests.runtime_helpers import make_door, run_to_end, start_run, wait_until, write_config

CLIP = "data/video/short_hamilton_clip.mp4"
UNIT = ROOT / "systemd" / "peephole.service"


def notify_socket(path: Path) -> socket.socket:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(0.2)
    return receiver


class NotifyListener:
    """Reads the notify socket while the service runs, as systemd does."""

    def __init__(self, path: Path) -> None:
        self.receiver = notify_socket(path)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.receiver.recv(4096).decode())

    def lines(self) -> list[str]:
        """Every line of the messages so far (one datagram may carry several)."""
        return [line for message in list(self.messages) for line in message.splitlines()]

    def close(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.messages.extend(drain(self.receiver))
        self.receiver.close()
        return self.messages


def drain(receiver: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(receiver.recv(4096).decode())
        except TimeoutError:
            return messages


def collect_lines(stream: IO[str]) -> list[str]:
    """A child's output lines so far: a daemon thread appends each as it comes."""
    lines: list[str] = []

    def read() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def test_notify_socket_sees_ready_then_repeated_watchdog_and_status(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    config = write_config(
        tmp_path / "config.toml", gallery=tmp_path / "gallery.db", outbox=tmp_path / "outbox.db"
    )
    listener = NotifyListener(tmp_path / "notify.sock")
    result = run_to_end(
        config,
        reference_f32,
        "--source",
        str(require_shared(CLIP)),
        "--stop-after-frames",
        "150",
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        WATCHDOG_USEC="150000",
    )
    messages = listener.close()
    assert result.returncode == 0, result.stderr
    lines = [line for message in messages for line in message.splitlines()]
    assert "READY=1" in lines
    ready = lines.index("READY=1")
    watchdogs = [i for i, line in enumerate(lines) if line == "WATCHDOG=1"]
    assert len(watchdogs) >= 3, lines
    assert min(watchdogs) > ready
    assert any(line.startswith("STATUS=") and "fps" in line for line in lines), lines
    assert lines[-1] == "STOPPING=1"


class HangingSource:
    """A real video source that hangs (like a stuck camera driver) after some frames."""

    live = True
    description = "hanging camera"

    def __init__(self, video: Path, frames_before_hang: int, release: threading.Event) -> None:
        self.inner = open_source(str(video))
        self.left = frames_before_hang
        self.release = release
        self.hanging = threading.Event()

    def open(self) -> None:
        return None

    def read(self) -> Frame | None:
        if self.left == 0:
            self.hanging.set()
            self.release.wait()
            return None
        self.left -= 1
        return self.inner.read()

    def close(self) -> None:
        self.inner.close()


def test_a_hung_camera_stops_the_watchdog(tmp_path: Path, reference_f32: tuple[Path, Path]) -> None:
    receiver = notify_socket(tmp_path / "notify.sock")
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "60000"}
    )
    release = threading.Event()
    source = HangingSource(require_shared(CLIP), 30, release)
    door = make_door(tmp_path, reference_f32, source, notifier=notifier)
    loop = door.loop()
    runner = threading.Thread(target=loop.run)
    runner.start()
    try:
        # Once the loop waits in read(), the last frame's ping is in the socket already.
        assert source.hanging.wait(timeout=30)
        assert loop.stats.frames == 30
        flowing = drain(receiver)
        time.sleep(0.5)  # the window under test: the camera hangs for over 8 watchdog periods
        during_hang = drain(receiver)
    finally:
        release.set()
        runner.join(timeout=10)
        door.close()
        receiver.close()
    assert "WATCHDOG=1" in flowing
    assert "WATCHDOG=1" not in during_hang


def start_with_broker(
    tmp_path: Path,
    broker: Broker,
    reference_f32: tuple[Path, Path],
    **env: str,
) -> tuple[subprocess.Popen[str], Subscriber]:
    config = write_config(
        tmp_path / "config.toml",
        gallery=tmp_path / "gallery.db",
        outbox=tmp_path / "outbox.db",
        broker=broker,
    )
    watcher = Subscriber(broker, ["peephole/door/availability"]).connect()
    process = start_run(
        config, reference_f32, "--source", str(require_shared(CLIP)), "--realtime", **env
    )
    online = watcher.wait_for(lambda ms: any(m.text == "online" for m in ms), timeout=30)
    if not any(m.text == "online" for m in online):
        process.kill()
        raise AssertionError(f"never online: {process.communicate()[1]}")
    return process, watcher


def retained_availability(broker: Broker) -> str:
    late = Subscriber(broker, ["peephole/door/availability"]).connect()
    messages = late.wait_for(lambda ms: bool(ms), timeout=5)
    late.disconnect()
    assert messages and messages[0].retain
    return messages[0].text


def test_sigterm_exits_0_within_5_seconds_and_publishes_offline(
    tmp_path: Path,
    broker: Broker,
    reference_f32: tuple[Path, Path],
) -> None:
    listener = NotifyListener(tmp_path / "notify.sock")
    process, watcher = start_with_broker(
        tmp_path,
        broker,
        reference_f32,
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        WATCHDOG_USEC="3000000",
    )
    try:
        # Stop it mid-stream: once a frame has gone through the loop (and fed the watchdog).
        assert wait_until(lambda: "WATCHDOG=1" in listener.lines(), timeout=30), listener.lines()
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
        listener.close()
    elapsed = time.monotonic() - signalled
    assert returncode == 0, process.communicate()[1]
    assert elapsed < 5.0
    states = [m.text for m in watcher.wait_for(lambda ms: ms[-1].text == "offline", timeout=5)]
    watcher.disconnect()
    assert states[-1] == "offline"
    assert retained_availability(broker) == "offline"


def test_kill_9_leaves_offline_through_the_last_will(
    tmp_path: Path,
    broker: Broker,
    reference_f32: tuple[Path, Path],
) -> None:
    process, watcher = start_with_broker(tmp_path, broker, reference_f32)
    process.kill()
    process.wait()
    states = [m.text for m in watcher.wait_for(lambda ms: ms[-1].text == "offline", timeout=10)]
    watcher.disconnect()
    assert states[-1] == "offline"
    assert retained_availability(broker) == "offline"


def test_sigterm_without_a_reachable_broker_still_exits_0(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    unreachable = Broker(Path("/bin/false"), tmp_path)  # configured, never started
    config = write_config(
        tmp_path / "config.toml",
        gallery=tmp_path / "gallery.db",
        outbox=tmp_path / "outbox.db",
        broker=unreachable,
    )
    listener = NotifyListener(tmp_path / "notify.sock")
    process = start_run(
        config,
        reference_f32,
        "--source",
        str(require_shared(CLIP)),
        "--realtime",
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
    )
    assert process.stderr is not None
    errors = collect_lines(process.stderr)
    try:
        # Stop it once its loop runs and it has found the broker unreachable.
        assert wait_until(
            lambda: "READY=1" in listener.lines() and any("unreachable" in e for e in errors),
            timeout=60,
        ), errors
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
        listener.close()


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_unit_is_a_notify_service_with_watchdog_restart_and_directories() -> None:
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "peephole"
    assert service["ConfigurationDirectory"] == "peephole"
    assert service["User"] == "peephole"
    assert "video" in service["SupplementaryGroups"].split()
    assert service["ExecStart"].endswith("peephole run")


def test_unit_is_hardened_but_keeps_the_camera() -> None:
    service = unit()["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    families = set(service["RestrictAddressFamilies"].split())
    assert families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert "PrivateDevices" not in service
    # systemd stops with SIGTERM and waits longer than peephole's 5 s.
    assert int(service["TimeoutStopSec"]) > 5


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    if not shutil.which("systemd-analyze"):
        missing("systemd-analyze is not installed (apt install systemd)")
    # verify wants ExecStart to exist: point it at a stand-in inside tmp_path.
    stand_in = tmp_path / "peephole"
    stand_in.write_text("#!/bin/sh\n")
    stand_in.chmod(0o755)
    copy = tmp_path / "peephole.service"
    copy.write_text(UNIT.read_text().replace("/opt/peephole/venv/bin/peephole", str(stand_in)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        if "peephole.service" in line and "Failed to" not in line and "user" not in line.lower()
    ]
    assert not problems, result.stderr


def test_notifier_outside_systemd_is_silent() -> None:
    quiet = SystemdNotifier({})
    assert not quiet.enabled
    assert quiet.notify("READY=1") is False
    assert quiet.watchdog_interval is None


def test_watchdog_interval_is_a_third_of_watchdog_usec_and_only_for_this_process(
    tmp_path: Path,
) -> None:
    socket_path = str(tmp_path / "n.sock")
    assert SystemdNotifier(
        {"NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": "3000000"}
    ).watchdog_interval == pytest.approx(1.0)
    other_process = {"NOTIFY_SOCKET": socket_path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "1"}
    assert SystemdNotifier(other_process).watchdog_interval is None


def test_watchdog_pings_are_rate_limited(tmp_path: Path) -> None:
    receiver = notify_socket(tmp_path / "n.sock")
    notifier = SystemdNotifier(
        {"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "3000000"}
    )
    for now in (100.0, 100.5, 100.9, 101.1, 101.5, 102.2):
        notifier.watchdog(now)
    notifier.close()
    assert drain(receiver) == ["WATCHDOG=1"] * 3
    receiver.close()
