"""The MQTT link against a real Mosquitto: availability, discovery, acked events, reconnects."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.errors import ConfigError
from device.service.discovery import discovery_messages, node_id
from device.service.mqtt import MqttLink, parse_broker
from device.service.topics import Topics
from tests.broker import Broker, Subscriber
from tests.runtime_helpers import wait_until


def settings_for(broker: Broker, **overrides: object) -> MqttConfig:
    values: dict[str, object] = {
        "host": broker.host,
        "port": broker.port,
        "device_id": "door",
        "reconnect_max_delay": 1,
    }
    values.update(overrides)
    return MqttConfig(**values)  # type: ignore[arg-type]


def all_acknowledged(acks: queue.SimpleQueue[int], mids: list[int], timeout: float = 10) -> bool:
    """Whether the broker acknowledges every one of ``mids`` within ``timeout`` seconds."""
    acked: set[int] = set()

    def done() -> bool:
        while not acks.empty():
            acked.add(acks.get_nowait())
        return set(mids) <= acked

    return wait_until(done, timeout)


def test_online_is_retained_on_connect_and_offline_on_stop(broker: Broker) -> None:
    link = MqttLink(settings_for(broker))
    link.start()
    assert wait_until(lambda: link.connected, timeout=10)
    late = Subscriber(broker, ["peephole/door/availability"]).connect()
    online = late.wait_for(lambda ms: bool(ms), timeout=5)
    assert [(m.text, m.retain) for m in online] == [("online", True)]
    link.stop()
    late.wait_for(lambda ms: len(ms) >= 2, timeout=5)
    late.disconnect()
    assert [m.text for m in late.messages] == ["online", "offline"]


def test_events_are_qos1_not_retained_and_every_puback_is_reported(
    broker: Broker,
) -> None:
    watcher = Subscriber(broker, ["peephole/door/visitor"]).connect()
    link = MqttLink(settings_for(broker))
    acks = link.acknowledgements()
    link.start()
    # Connected first: what paho queues before the connection may go out in another order
    # (that case is the outbox's, tested in test_outbox_delivery.py).
    assert wait_until(lambda: link.connected, timeout=10)
    mids = [link.publish_event("peephole/door/visitor", json.dumps({"n": n})) for n in range(20)]
    assert all_acknowledged(acks, mids)
    watcher.wait_for(lambda ms: len(ms) >= 20, timeout=5)
    link.stop()
    watcher.disconnect()
    assert [json.loads(m.payload)["n"] for m in watcher.messages] == list(range(20))
    assert all(m.qos == 1 and not m.retain for m in watcher.messages)
    # A late subscriber gets nothing: events are never retained.
    late = Subscriber(broker, ["peephole/door/visitor"]).connect()
    assert late.wait_for(lambda ms: bool(ms), timeout=0.5) == []
    late.disconnect()


def test_discovery_is_sent_on_connect_and_again_when_home_assistant_comes_online(
    broker: Broker,
) -> None:
    watcher = Subscriber(broker, ["homeassistant/+/door/+/config"]).connect()
    link = MqttLink(settings_for(broker, snapshots=True))
    link.start()
    # Visitor event, last visitor, last visitor liveness, at the door, frame rate,
    # events waiting, snapshot.
    first = watcher.wait_for(lambda ms: len(ms) >= 7, timeout=10)
    assert len(first) == 7
    home_assistant = Subscriber(broker, []).connect()
    home_assistant.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    again = watcher.wait_for(lambda ms: len(ms) >= 14, timeout=10)
    link.stop()
    watcher.disconnect()
    home_assistant.disconnect()
    assert [m.topic for m in again[7:]] == [m.topic for m in first]
    image = json.loads(next(m.payload for m in again if "/image/" in m.topic))
    assert image["image_topic"] == "peephole/door/snapshot"


def test_link_reconnects_after_a_broker_restart_and_delivers_what_waited(
    broker: Broker,
) -> None:
    audit = Subscriber(broker, ["peephole/door/visitor"], "audit", clean_session=False).connect()
    audit.disconnect()
    link = MqttLink(settings_for(broker))
    acks = link.acknowledgements()
    link.start()
    assert wait_until(lambda: link.connected, timeout=10)
    broker.stop()
    assert wait_until(lambda: not link.connected, timeout=10)
    mids = [link.publish_event("peephole/door/visitor", str(n)) for n in range(5)]
    broker.start()
    assert wait_until(lambda: link.connected, timeout=15)
    assert all_acknowledged(acks, mids)
    link.stop()
    audit = Subscriber(broker, ["peephole/door/visitor"], "audit", clean_session=False).connect()
    audit.wait_for(lambda ms: len(ms) >= 5, timeout=5)
    audit.disconnect()
    assert [m.text for m in audit.messages] == ["0", "1", "2", "3", "4"]


def test_parse_broker() -> None:
    assert parse_broker("mqtt.local") == ("mqtt.local", None)
    assert parse_broker("127.0.0.1:1884") == ("127.0.0.1", 1884)
    assert parse_broker("[::1]:8883") == ("::1", 8883)
    for bad in ("", ":1883", "host:port", "host:70000"):
        with pytest.raises(ConfigError):
            parse_broker(bad)


@pytest.mark.parametrize(
    ("field", "value"),
    [("device_id", "front/door"), ("device_id", "door#"), ("topic_prefix", "a+b"), ("port", 0)],
)
def test_settings_refuse_topics_with_wildcards_and_bad_ports(field: str, value: object) -> None:
    config = MqttConfig(host="localhost")
    setattr(config, field, value)
    with pytest.raises(ConfigError):
        config.validate()


def test_tls_with_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    settings = MqttConfig(host="localhost", tls=True, ca_file=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(ConfigError, match="TLS"):
        MqttLink(settings)


def test_discovery_payloads_tie_every_entity_to_availability() -> None:
    messages = dict(discovery_messages(Topics("peephole", "front door"), "homeassistant", False))
    node = node_id("front door")
    assert node == "front_door"
    assert messages[f"homeassistant/image/{node}/snapshot/config"] == ""
    for topic, payload in messages.items():
        if payload:
            config = json.loads(payload)
            assert config["availability"][0]["topic"] == "peephole/front door/availability"
            assert config["unique_id"].startswith(f"peephole_{node}_")
            assert topic.endswith("/config")


def test_diagnostic_sensors_read_the_retained_status() -> None:
    messages = dict(discovery_messages(Topics("peephole", "door"), "homeassistant", False))
    for object_id, field in (("fps", "fps"), ("outbox_backlog", "outbox_backlog")):
        config = json.loads(messages[f"homeassistant/sensor/door/{object_id}/config"])
        assert config["state_topic"] == "peephole/door/status"
        assert config["entity_category"] == "diagnostic"
        assert field in config["value_template"]
