"""Broker failover on a bridged site, and the retained health status.

Two real Mosquitto brokers, B bridged to A (every topic, both ways), and one
``peephole run`` with ``hosts = [A, B]`` watching the Hamilton clip in real
time. Broker A is killed (SIGKILL) while events flow; every event the device printed
must reach a subscriber on B (over the bridge while A lives, directly after
the switch), none lost, and any duplicate only a repeat of an ``event_id``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.service.mqtt import MqttLink
from tests.broker import Broker, Received, Subscriber, free_port
from tests.conftest import require_shared
from tests.runtime_helpers import enroll_people, start_run, wait_until, write_config
from tests.service.test_outbox_delivery import LineReader

CLIP = "data/video/short_hamilton_clip.mp4"
STATUS_FIELDS = {
    "device_id",
    "version",
    "model_file",
    "embedding_key",
    "gallery_generation",
    "people",
    "fps",
    "last_frame",
    "outbox_backlog",
    "broker",
    "status_interval",
    "time",
    "site",
    "site_key",
    "site_records_refused",
    "model_refused",
}


def event_ids(messages: list[Received]) -> list[str]:
    return [
        str(json.loads(m.payload)["event_id"])
        for m in messages
        if m.topic.endswith(("/visitor", "/visitor_left"))
    ]


def statuses(messages: list[Received]) -> list[dict[str, object]]:
    return [json.loads(m.payload) for m in messages if m.topic.endswith("/status")]


def test_a_link_skips_an_unreachable_broker_and_rotates_when_its_broker_goes(
    bridged_brokers: tuple[Broker, Broker],
) -> None:
    a, b = bridged_brokers
    nowhere = f"127.0.0.1:{free_port()}"
    settings = MqttConfig(
        hosts=[nowhere, f"{a.host}:{a.port}", f"{b.host}:{b.port}"],
        device_id="door",
        reconnect_min_delay=1,
        reconnect_max_delay=1,
    )
    link = MqttLink(settings)
    link.start()
    try:
        assert wait_until(lambda: link.connected, timeout=15)
        assert link.broker == f"{a.host}:{a.port}"
        a.stop()
        assert wait_until(lambda: link.connected and link.connections == 2, timeout=15)
        assert link.broker == f"{b.host}:{b.port}"
    finally:
        link.stop()


@pytest.fixture
def site(
    bridged_brokers: tuple[Broker, Broker], tmp_path: Path, reference_f32: tuple[Path, Path]
) -> tuple[Broker, Broker, Path]:
    a, b = bridged_brokers
    gallery = tmp_path / "gallery.db"
    enroll_people(gallery, reference_f32)
    config = write_config(
        tmp_path / "config.toml",
        gallery=gallery,
        outbox=tmp_path / "outbox.db",
        mqtt_extra=(
            f'hosts = ["{a.host}:{a.port}", "{b.host}:{b.port}"]\n'
            "reconnect_min_delay = 1\nreconnect_max_delay = 1\nstatus_interval = 2\n"
        ),
    )
    return a, b, config


def test_events_reach_the_other_broker_when_the_first_goes_away(
    site: tuple[Broker, Broker, Path], reference_f32: tuple[Path, Path]
) -> None:
    a, b, config = site
    watcher = Subscriber(b, ["peephole/door/#"]).connect()
    process = start_run(config, reference_f32, "--source", str(require_shared(CLIP)), "--realtime")
    reader = LineReader(process)
    try:
        # The first event crossed the bridge from A: the device is on A and events flow.
        assert wait_until(lambda: event_ids(watcher.messages), timeout=60), "nothing reached B"
        on_a = statuses(watcher.messages)
        a.kill()
        printed_before_stop = len(reader.events)
        assert process.wait(timeout=90) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
    reader.join()
    printed = [str(e["event_id"]) for e in reader.events]
    assert len(printed) > printed_before_stop, "no event was made after broker A went away"
    received = event_ids(watcher.wait_for(lambda ms: set(printed) <= set(event_ids(ms)), 20))
    watcher.wait_for(lambda ms: False, timeout=1.0)  # a late duplicate would come right behind
    received = event_ids(watcher.messages)
    watcher.disconnect()
    assert set(printed) - set(received) == set(), "an event was lost in the failover"
    assert set(received) <= set(printed), "the subscriber got an event nobody made"

    # Health: first from A over the bridge, then from B itself; the last one stays retained.
    assert on_a and on_a[0]["broker"] == f"{a.host}:{a.port}"
    late = Subscriber(b, ["peephole/door/status"]).connect()
    retained = late.wait_for(bool, timeout=5)
    late.disconnect()
    assert retained and retained[0].retain
    status = json.loads(retained[0].payload)
    assert set(status) == STATUS_FIELDS
    assert status["broker"] == f"{b.host}:{b.port}"
    assert status["device_id"] == "door"
    assert status["people"] == 2
    assert status["model_file"] == reference_f32[0].name
    assert re.fullmatch(r"[0-9a-f]{12}", str(status["embedding_key"]))
    assert isinstance(status["gallery_generation"], int)
    assert isinstance(status["outbox_backlog"], int)
    assert isinstance(status["fps"], float | int) and status["fps"] > 0
    assert status["last_frame"] and status["status_interval"] == 2.0
    assert (status["site"], status["site_key"], status["site_records_refused"]) == ("", "", 0)
    assert status["model_refused"] == ""
