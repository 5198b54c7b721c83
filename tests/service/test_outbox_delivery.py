"""The outbox end to end: events made while the broker is down arrive later, once each, in order."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from tests.broker import Broker, Subscriber
from tests.conftest import require_shared
from tests.runtime_helpers import enroll_people, start_run, wait_until, write_config

CLIP = "data/video/short_hamilton_clip.mp4"


class LineReader:
    """Collects a child's stdout JSON lines as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.events: list[dict[str, object]] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{"):
                self.events.append(json.loads(line))

    def join(self) -> None:
        self._thread.join(timeout=30)


@pytest.fixture
def setup(
    broker: Broker,
    tmp_path: Path,
    reference_f32: tuple[Path, Path],
) -> tuple[Broker, Path]:
    """An enrolled gallery, a config, and a persistent audit session; the broker left stopped."""
    gallery = tmp_path / "gallery.db"
    enroll_people(gallery, reference_f32)
    config = write_config(
        tmp_path / "config.toml", gallery=gallery, outbox=tmp_path / "outbox.db", broker=broker
    )
    audit = Subscriber(broker, ["peephole/door/+"], client_id="audit", clean_session=False)
    audit.connect()
    audit.disconnect()
    broker.stop()
    return broker, config


def collect_events(broker: Broker, expected: int) -> list[str]:
    """Event ids the audit session was sent, in arrival order."""
    audit = Subscriber(broker, ["peephole/door/+"], client_id="audit", clean_session=False)
    audit.connect()
    audit.wait_for(lambda messages: len(_events(messages)) >= expected, timeout=20)
    # Anything duplicated would arrive right behind; give it a moment.
    audit.wait_for(lambda messages: False, timeout=1.0)
    audit.disconnect()
    return _events(audit.messages)


def _events(messages: list) -> list[str]:  # type: ignore[type-arg]
    return [
        json.loads(m.payload)["event_id"]
        for m in messages
        if m.topic.endswith(("/visitor", "/visitor_left"))
    ]


def in_order(expected: list[str], received: list[str]) -> bool:
    positions = [received.index(event_id) for event_id in expected]
    return positions == sorted(positions)


def test_events_made_while_the_broker_is_down_arrive_once_in_order(
    setup: tuple[Broker, Path], reference_f32: tuple[Path, Path]
) -> None:
    broker, config = setup
    process = start_run(
        config,
        reference_f32,
        "--source",
        str(require_shared(CLIP)),
        "--realtime",
        "--stop-after-frames",
        "150",
    )
    reader = LineReader(process)
    try:
        assert wait_until(lambda: len(reader.events) >= 3, timeout=30), "no events while down"
        made_while_down = [e["event_id"] for e in reader.events]
        broker.start()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join()
    printed = [str(e["event_id"]) for e in reader.events]
    assert set(made_while_down) <= set(printed)
    received = collect_events(broker, len(printed))
    assert sorted(received) == sorted(printed)
    assert len(received) == len(set(received))
    assert in_order(printed, received)


def test_events_survive_kill_9_and_restart_while_the_broker_is_down(
    setup: tuple[Broker, Path], reference_f32: tuple[Path, Path]
) -> None:
    broker, config = setup
    source = str(require_shared(CLIP))
    first = start_run(config, reference_f32, "--source", source, "--realtime")
    first_reader = LineReader(first)
    try:
        assert wait_until(lambda: len(first_reader.events) >= 2, timeout=30)
    finally:
        first.kill()
        first.wait()
    first_reader.join()
    before_crash = [str(e["event_id"]) for e in first_reader.events]

    second = start_run(
        config, reference_f32, "--source", source, "--realtime", "--stop-after-frames", "120"
    )
    second_reader = LineReader(second)
    try:
        assert wait_until(lambda: len(second_reader.events) >= 1, timeout=30)
        broker.start()
        assert second.wait(timeout=60) == 0
    finally:
        if second.poll() is None:
            second.kill()
    second_reader.join()
    after_restart = [str(e["event_id"]) for e in second_reader.events]

    received = collect_events(broker, len(before_crash) + len(after_restart))
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert set(before_crash) <= set(received), "an event made before kill -9 was lost"
    assert set(after_restart) <= set(received)
    assert in_order(before_crash + after_restart, received)
