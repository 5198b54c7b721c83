"""A simulated site: many doors sharing one gallery over two bridged Mosquitto brokers.

Each simulated door is a paho client that speaks the door's replication
protocol (device/site/): it subscribes to the site's people records, opens
each with the site key (AES-GCM), decodes it and keeps the later stamp per
record, as ``SiteReplica.apply`` decides. It keeps no gallery file: that part
costs the same on every door and is not what grows with the site. Half the
doors use broker A, half broker B (bridged both ways, as tests/broker.py does).

Measured:
- cold start: every door connects to a site of ``--people`` people and
  receives all their retained records;
- enrollment: one new person published at the site; the time until every door
  has accepted it, and the bytes delivered for it (counted by the doors: what
  the brokers sent them; the bridge adds one copy);
- the replication state of one real door: its ``site_records`` rows, and the
  memory a simulated door holds.

    python -m bench.site_scale [--doors 300] [--people 20] [--crops 10] [--enrollments 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device.identity.export_format import ExportedCrop, ExportedPerson
from device.identity.gallery import Gallery, Sample, name_key
from device.service.topics import SiteTopics
from device.site.clock import HybridClock, Stamp
from device.site.key import SiteKey
from device.site.records import PersonRecord, decode_record, encode_record
from device.site.replica import SiteReplica
from tests.broker import Broker, bridge_section, wait_for_bridge

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PEEPHOLE_SHARED", ROOT.parent / "shared"))


class SimulatedDoor:
    """One door's side of the protocol, without camera or gallery file."""

    def __init__(self, name: str, broker: Broker, key: SiteKey, topics: SiteTopics) -> None:
        self.key = key
        self.stamps: dict[str, Stamp] = {}
        self.accepted_at: dict[tuple[str, Stamp], float] = {}
        self.received_bytes = 0
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self.client.on_connect = lambda c, *a: c.subscribe(topics.people, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=60)
        self.client.loop_start()

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        record_id = message.topic.rsplit("/", 1)[-1]
        record = decode_record(self.key.open(bytes(message.payload), message.topic), record_id)
        with self._lock:
            self.received_bytes += len(message.payload)
            held = self.stamps.get(record_id)
            if held is None or record.stamp > held:
                self.stamps[record_id] = record.stamp
                self.accepted_at[(record_id, record.stamp)] = time.monotonic()

    def holds(self, record_id: str, stamp: Stamp) -> bool:
        with self._lock:
            return self.stamps.get(record_id) == stamp

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def crops_of(count: int, seed: int) -> list[bytes]:
    """``count`` real aligned crops (PNG) from celebrity112, a different person per seed."""
    people = sorted(p for p in (SHARED / "data/celebrity112").iterdir() if p.is_dir())
    folder = people[seed % len(people)]
    return [p.read_bytes() for p in sorted(folder.glob("*.png"))[:count]]


def person(name: str, crops: list[bytes]) -> ExportedPerson:
    now = time.time()
    return ExportedPerson(
        name=name,
        created=now,
        last_seen=None,
        crops=tuple(ExportedCrop(png, 0.9, f"photo:{i}", now) for i, png in enumerate(crops)),
        embeddings=(),
    )


def wait_all(doors: list[SimulatedDoor], record_id: str, stamp: Stamp, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(d.holds(record_id, stamp) for d in doors):
        if time.monotonic() > deadline:
            missing = sum(not d.holds(record_id, stamp) for d in doors)
            raise RuntimeError(f"{missing} doors never got record {record_id[:8]}")
        time.sleep(0.01)


def site_records_bytes(people: int, crops: int) -> tuple[int, int]:
    """A real door's replication rows for ``people`` people: bytes of site_records, of crops."""
    folder = Path(tempfile.mkdtemp())
    try:
        key = SiteKey.generate()[0]
        with Gallery.open(folder / "gallery.db") as gallery:
            for index in range(people):
                samples = [
                    Sample(np.ones(256, np.float32) / 16, 0.9, f"photo:{i}", png)
                    for i, png in enumerate(crops_of(crops, index))
                ]
                gallery.add_person_samples(f"person {index}", samples, "k" * 64, append=False)
            SiteReplica(gallery, key, HybridClock("door")).stamp_local_changes()
            rows = gallery.db.execute(
                "SELECT SUM(LENGTH(record_id) + LENGTH(stamp) + LENGTH(digest) + 2) FROM site_records"
            ).fetchone()[0]
            png = gallery.db.execute("SELECT SUM(LENGTH(png)) FROM crops").fetchone()[0]
        return int(rows), int(png)
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doors", type=int, default=300)
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--crops", type=int, default=10, help="crops per person (enroll's default)")
    parser.add_argument("--enrollments", type=int, default=5)
    args = parser.parse_args()
    mosquitto = Path(shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    workdir = Path(tempfile.mkdtemp())
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    a = Broker(mosquitto, workdir / "a")
    b = Broker(mosquitto, workdir / "b", extra=bridge_section(a, "bridge-b-to-a"))
    a.start()
    b.start()
    key = SiteKey.generate()[0]
    topics = SiteTopics("peephole", "bench")
    clock = HybridClock("seed")
    doors: list[SimulatedDoor] = []
    try:
        wait_for_bridge(a, b)
        seeder = paho.Client(CallbackAPIVersion.VERSION2, client_id="seeder")
        seeder.connect(a.host, a.port)
        seeder.loop_start()

        def publish(index: int) -> tuple[str, Stamp, int]:
            record = PersonRecord(
                key.record_id(name_key(f"person {index}")),
                clock.tick(),
                person(f"person {index}", crops_of(args.crops, index)),
            )
            topic = topics.person(record.record_id)
            payload = key.seal(encode_record(record), topic)
            seeder.publish(topic, payload, qos=1, retain=True).wait_for_publish(30)
            return record.record_id, record.stamp, len(payload)

        seeded = [publish(index) for index in range(args.people)]
        record_sizes = [size for _, _, size in seeded]

        tracemalloc.start()
        started = time.monotonic()
        doors = [
            SimulatedDoor(f"door-{i}", a if i % 2 == 0 else b, key, topics)
            for i in range(args.doors)
        ]
        for record_id, stamp, _ in seeded:
            wait_all(doors, record_id, stamp, timeout=600)
        cold_start = time.monotonic() - started
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        start_delivered = sum(d.received_bytes for d in doors)

        latencies, delivered, sizes = [], [], []
        for n in range(args.enrollments):
            mark = sum(d.received_bytes for d in doors)
            t0 = time.monotonic()
            record_id, stamp, size = publish(args.people + n)
            wait_all(doors, record_id, stamp, timeout=120)
            latencies.append(max(d.accepted_at[(record_id, stamp)] for d in doors) - t0)
            delivered.append(sum(d.received_bytes for d in doors) - mark)
            sizes.append(size)
        rows, crops_bytes = site_records_bytes(args.people, args.crops)
    finally:
        for door in doors:
            door.stop()
        b.stop()
        a.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    mib = 1024 * 1024
    print(
        f"site of {args.doors} simulated doors ({args.doors // 2 + args.doors % 2} on broker A, "
        f"{args.doors // 2} on B, bridged), {args.people} people x {args.crops} crops; "
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print("| measure | value |")
    print("|---|---:|")
    print(
        f"| sealed record per person (median) | {statistics.median(record_sizes) / 1024:.0f} KiB |"
    )
    print(f"| retained on each broker for the site | {sum(record_sizes) / mib:.1f} MiB |")
    print(f"| cold start: every door holds all {args.people} people | {cold_start:.1f} s |")
    print(f"| cold start: record bytes delivered to the doors | {start_delivered / mib:.0f} MiB |")
    print(
        f"| enrollment reaches every door: median / max of {args.enrollments} | "
        f"{statistics.median(latencies) * 1000:.0f} / {max(latencies) * 1000:.0f} ms |"
    )
    per_enrollment = statistics.median(delivered)
    print(f"| record bytes delivered per enrollment (all doors) | {per_enrollment / mib:.1f} MiB |")
    print(
        "| into the brokers per enrollment (publish + one bridge copy) | "
        f"{2 * statistics.median(sizes) / 1024:.0f} KiB |"
    )
    print(f"| one real door's site_records rows ({args.people} people) | {rows / 1024:.1f} KiB |")
    print(f"| its gallery crops, for scale | {crops_bytes / mib:.1f} MiB |")
    print(
        "| Python heap per simulated door after the cold start (paho client included) | "
        f"{held / args.doors / 1024:.1f} KiB |"
    )


if __name__ == "__main__":
    main()
