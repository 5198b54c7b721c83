"""Soak: ``peephole run`` on the looping clip for a long time while the broker bounces.

The clip's frames are extracted once and linked over and over into an image
folder, which ``peephole run`` reads paced at ``--fps`` (like a camera). A real
Mosquitto is stopped for ``--down-for`` seconds every ``--bounce-every``
seconds. Throughout, the run's memory (RSS from /proc) is sampled and its
frame rate read from the ``STATUS=`` lines it sends to a notify socket, as it
would to systemd. At the end every event printed on stdout must have reached a
persistent MQTT subscriber, in order; QoS 1 may repeat a message whose
acknowledgement a broker restart cut off (counted; consumers drop repeats by
``event_id``), so each event_id counts once.

    python -m bench.soak --minutes 30 [--bounce-every 180] [--down-for 10] [--json FILE]

Prints one JSON object: memory slope (MiB per hour, fitted after the first
fifth of the run), frame-rate statistics, and event counts (printed, received,
duplicated, lost, out of order).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2

from tests.broker import MOSQUITTO, Broker, Subscriber

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))
CLIP = SHARED / "data/video/short_hamilton_clip.mp4"
REFERENCE = SHARED / "models/reference/mobilefacenet_insightface_f32.tflite"
REFERENCE_MANIFEST = ROOT / "tests/fixtures/mobilefacenet_insightface_f32.json"
PEOPLE = {
    "Lin-Manuel Miranda": SHARED / "data/video/lin-manuel-miranda.png",
    "Alex Lacamoire": SHARED / "data/video/alex-lacamoire.png",
}
DEVICE = "soak"


@dataclass(frozen=True)
class SoakOptions:
    minutes: float = 30.0
    bounce_every: float = 180.0
    down_for: float = 10.0
    fps: float = 15.0
    model: Path = REFERENCE
    manifest: Path = REFERENCE_MANIFEST
    sample_every: float = 2.0
    # No bounce in the last seconds: they are for delivering what waits.
    settle: float = 30.0


@dataclass
class SoakResult:
    seconds: float = 0.0
    returncode: int | None = None
    frames_linked: int = 0
    bounces: int = 0
    rss_mib: list[tuple[float, float]] = field(default_factory=list)
    fps: list[tuple[float, float]] = field(default_factory=list)
    printed: int = 0
    received: int = 0
    # QoS 1 is at-least-once: a message whose PUBACK a broker restart cut off is sent
    # again. Consumers drop repeats by event_id; a repeat must be the same message.
    duplicates: int = 0
    duplicates_that_differ: int = 0
    # Where repeats came from, from the broker's log (DUP flag): the device re-sending
    # an event, or the broker re-sending to the subscriber.
    repeats_from_device: int = 0
    repeats_to_subscriber: int = 0
    lost: int = 0
    out_of_order: int = 0
    left_in_outbox: int = 0
    reconnects: int = 0
    summary: str = ""

    @property
    def rss_slope_mib_per_hour(self) -> float:
        """Least-squares slope of RSS over time, after the first fifth (warm-up)."""
        if len(self.rss_mib) < 3:
            return float("nan")
        start = self.rss_mib[-1][0] / 5
        points = [p for p in self.rss_mib if p[0] >= start] or self.rss_mib
        return slope(points) * 3600.0

    def report(self) -> dict[str, Any]:
        rss = [value for _, value in self.rss_mib]
        fps = [value for at, value in self.fps if at > 10.0]  # the first status includes start-up
        record = asdict(self)
        record.pop("rss_mib")
        record.pop("fps")
        record.update(
            rss_start_mib=round(rss[0], 1) if rss else None,
            rss_end_mib=round(rss[-1], 1) if rss else None,
            rss_max_mib=round(max(rss), 1) if rss else None,
            rss_slope_mib_per_hour=round(self.rss_slope_mib_per_hour, 2),
            fps_median=round(statistics.median(fps), 2) if fps else None,
            fps_min=round(min(fps), 2) if fps else None,
            fps_max=round(max(fps), 2) if fps else None,
            fps_cv=round(statistics.pstdev(fps) / statistics.mean(fps), 3) if fps else None,
            fps_reports=len(fps),
        )
        return record


def slope(points: list[tuple[float, float]]) -> float:
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def python_peephole(*args: str) -> list[str]:
    return [sys.executable, "-c", "from device.cli import main; main()", *args]


def child_environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def enroll(workdir: Path, options: SoakOptions) -> Path:
    gallery = workdir / "gallery.db"
    for name, photo in PEOPLE.items():
        subprocess.run(
            python_peephole(
                "--db", str(gallery), "--model", str(options.model),
                "--manifest", str(options.manifest),
                "enroll", "--name", name, "--images", str(photo), "--min-samples", "1",
            ),
            check=True, capture_output=True, env=child_environment(), cwd=ROOT,
        )  # fmt: skip
    return gallery


def looping_folder(workdir: Path, frames_needed: int) -> Path:
    """An image folder that plays the clip over and over (links to its extracted frames)."""
    frames = workdir / "clip"
    frames.mkdir()
    capture = cv2.VideoCapture(str(CLIP))
    count = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        cv2.imwrite(str(frames / f"{count:04d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        count += 1
    capture.release()
    if count == 0:
        raise RuntimeError(f"cannot read {CLIP}")
    loop = workdir / "loop"
    loop.mkdir()
    for index in range(frames_needed):
        (loop / f"{index:07d}.jpg").symlink_to(frames / f"{index % count:04d}.jpg")
    return loop


class StatusListener:
    """The notify socket: keeps the frame rate of every STATUS line, with its time."""

    STATUS = re.compile(r"STATUS=([0-9.]+) fps")

    def __init__(self, path: Path, started: float) -> None:
        self.receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.receiver.bind(str(path))
        self.receiver.settimeout(0.2)
        self.started = started
        self.fps: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.receiver.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            for match in self.STATUS.finditer(message):
                self.fps.append((time.monotonic() - self.started, float(match.group(1))))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.receiver.close()


class OutputReader:
    """The child's stdout event ids and stderr lines, read as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.event_ids: list[str] = []
        self.errors: list[str] = []
        assert process.stdout is not None and process.stderr is not None
        self._threads = [
            threading.Thread(target=self._events, args=(process.stdout,), daemon=True),
            threading.Thread(target=self._lines, args=(process.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _events(self, stream: Any) -> None:
        for line in stream:
            if line.startswith("{"):
                self.event_ids.append(json.loads(line)["event_id"])

    def _lines(self, stream: Any) -> None:
        for line in stream:
            self.errors.append(line.rstrip("\n"))

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)


def rss_mib(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024.0 if match else None


def audit_subscriber(broker: Broker) -> Subscriber:
    audit = Subscriber(
        broker, [f"peephole/{DEVICE}/+"], client_id="soak-audit", clean_session=False
    )
    audit.client.reconnect_delay_set(1, 1)
    return audit.connect()


def delivered_ids(audit: Subscriber) -> list[str]:
    return [
        json.loads(m.payload)["event_id"]
        for m in list(audit.messages)
        if m.topic.endswith(("/visitor", "/visitor_left"))
    ]


def count_differing_repeats(audit: Subscriber) -> int:
    first: dict[str, bytes] = {}
    differing = 0
    for message in list(audit.messages):
        if message.topic.endswith(("/visitor", "/visitor_left")):
            event_id = json.loads(message.payload)["event_id"]
            differing += first.setdefault(event_id, message.payload) != message.payload
    return differing


def count_dup_flags(log: Path) -> tuple[int, int]:
    lines = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "(d1," in line and ("/visitor'" in line or "/visitor_left'" in line)
    ]
    from_device = sum(f"Received PUBLISH from peephole-{DEVICE} " in line for line in lines)
    to_subscriber = sum("Sending PUBLISH to soak-audit " in line for line in lines)
    return from_device, to_subscriber


def count_out_of_order(printed: list[str], received: list[str]) -> int:
    first_seen: dict[str, int] = {}
    for position, event_id in enumerate(received):
        first_seen.setdefault(event_id, position)
    positions = [first_seen[e] for e in printed if e in first_seen]
    return sum(1 for a, b in itertools.pairwise(positions) if b < a)


def soak(options: SoakOptions, workdir: Path, log: Any = None) -> SoakResult:
    say = log or (lambda message: print(f"soak: {message}", file=sys.stderr, flush=True))
    result = SoakResult()
    duration = options.minutes * 60.0
    gallery = enroll(workdir, options)
    result.frames_linked = math.ceil((duration + 30.0) * options.fps)
    folder = looping_folder(workdir, result.frames_linked)
    (workdir / "mosquitto").mkdir()
    broker = Broker(MOSQUITTO, workdir / "mosquitto")
    broker.start()
    audit = audit_subscriber(broker)
    config = workdir / "config.toml"
    config.write_text(
        f'[camera]\nsource = "{folder}"\nfps = {options.fps}\nrealtime = true\n\n'
        f'[gallery]\npath = "{gallery}"\n\n'
        f'[runtime]\noutbox_path = "{workdir / "outbox.db"}"\n\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\ndevice_id = "{DEVICE}"\n'
        "reconnect_min_delay = 1\nreconnect_max_delay = 2\n"
    )
    config.chmod(0o600)
    started = time.monotonic()
    status = StatusListener(workdir / "notify.sock", started)
    process = subprocess.Popen(
        python_peephole(
            "--config", str(config), "--model", str(options.model),
            "--manifest", str(options.manifest), "run",
        ),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=child_environment(NOTIFY_SOCKET=str(workdir / "notify.sock")),
    )  # fmt: skip
    output = OutputReader(process)
    try:
        next_sample, next_bounce = 0.0, options.bounce_every
        while process.poll() is None:
            now = time.monotonic() - started
            if now >= duration:
                process.send_signal(signal.SIGTERM)
                break
            if now >= next_sample:
                memory = rss_mib(process.pid)
                if memory is not None:
                    result.rss_mib.append((now, memory))
                next_sample = now + options.sample_every
            if now >= next_bounce and now + options.down_for + options.settle < duration:
                say(f"{now:.0f} s: broker down for {options.down_for:.0f} s")
                broker.stop()
                time.sleep(options.down_for)
                broker.start()
                result.bounces += 1
                next_bounce = now + options.bounce_every
            time.sleep(0.2)
        result.returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        status.close()
    output.join()
    result.seconds = time.monotonic() - started
    result.fps = status.fps
    printed = output.event_ids
    audit.wait_for(lambda _: set(printed) <= set(delivered_ids(audit)), timeout=30)
    audit.wait_for(lambda _: False, timeout=2.0)  # a duplicate would arrive right behind
    audit.disconnect()
    broker.stop()
    received = delivered_ids(audit)
    result.printed = len(printed)
    result.received = len(set(received))
    result.duplicates = len(received) - len(set(received))
    result.duplicates_that_differ = count_differing_repeats(audit)
    result.repeats_from_device, result.repeats_to_subscriber = count_dup_flags(broker.log)
    result.lost = len(set(printed) - set(received))
    result.out_of_order = count_out_of_order(printed, received)
    result.reconnects = sum("connected to MQTT broker" in line for line in output.errors)
    result.summary = next((line for line in reversed(output.errors) if " frames in " in line), "")
    with sqlite3.connect(workdir / "outbox.db") as db:
        result.left_in_outbox = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    if result.returncode != 0:
        say("run failed:\n" + "\n".join(output.errors[-20:]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--bounce-every", type=float, default=180.0, help="Seconds.")
    parser.add_argument("--down-for", type=float, default=10.0, help="Seconds.")
    parser.add_argument("--fps", type=float, default=15.0, help="Pace of the looping clip.")
    parser.add_argument("--model", type=Path, default=REFERENCE)
    parser.add_argument("--manifest", type=Path, default=REFERENCE_MANIFEST)
    parser.add_argument("--json", type=Path, help="Also write the result here.")
    args = parser.parse_args()
    options = SoakOptions(
        minutes=args.minutes,
        bounce_every=args.bounce_every,
        down_for=args.down_for,
        fps=args.fps,
        model=args.model,
        manifest=args.manifest,
    )
    with tempfile.TemporaryDirectory(prefix="peephole-soak-") as folder:
        result = soak(options, Path(folder))
    report = result.report()
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
        samples = {"rss_mib": result.rss_mib, "fps": result.fps}
        args.json.with_suffix(".samples.json").write_text(json.dumps(samples) + "\n")
    ok = result.returncode == 0 and result.lost == 0 and result.duplicates_that_differ == 0
    sys.exit(0 if ok and result.out_of_order == 0 else 1)


if __name__ == "__main__":
    main()
