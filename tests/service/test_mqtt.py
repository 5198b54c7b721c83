"""The MQTT link against a real Mosquitto: availability, discovery, acked events, reconnects."""

from __future__ import annotations

import json
import queue
import re
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.errors import ConfigError
from device.service.discovery import DiscoveryOptions, device_discovery, legacy_topics
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
    watcher = Subscriber(broker, ["homeassistant/#"]).connect()
    link = MqttLink(settings_for(broker, snapshots=True))
    link.start()
    first = watcher.wait_for(lambda ms: len(ms) >= 1, timeout=10)
    home_assistant = Subscriber(broker, []).connect()
    home_assistant.client.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    again = watcher.wait_for(lambda ms: len(ms) >= 3, timeout=10)
    late = Subscriber(broker, ["homeassistant/device/#"]).connect()
    retained = late.wait_for(lambda ms: len(ms) >= 1, timeout=5)
    link.stop()
    for client in (watcher, home_assistant, late):
        client.disconnect()
    configs = [m for m in again if m.topic != "homeassistant/status"]
    # One device payload each time, and nothing on the old per-entity topics.
    assert first[0].topic == "homeassistant/device/door/config"
    assert [m.topic for m in configs] == ["homeassistant/device/door/config"] * 2
    assert [(m.topic, m.retain) for m in retained] == [("homeassistant/device/door/config", True)]
    image = json.loads(configs[0].payload)["cmps"]["snapshot"]
    assert image["p"] == "image" and image["image_topic"] == "peephole/door/snapshot"


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


def legacy_payload(topic: str) -> str:
    """A per-entity config as versions before device-based discovery retained it."""
    node, object_id = topic.split("/")[2:4]
    return json.dumps(
        {"name": object_id, "unique_id": f"peephole_{node}_{object_id}", "device": {"ids": [node]}}
    )


def test_per_entity_configs_of_earlier_versions_move_into_the_device_config(
    broker: Broker,
) -> None:
    old = [t for t in legacy_topics("homeassistant", "door") if "/image/" not in t]
    earlier = Subscriber(broker, []).connect()
    for topic in old:
        earlier.client.publish(topic, legacy_payload(topic), qos=1, retain=True).wait_for_publish(5)
    earlier.disconnect()
    watcher = Subscriber(broker, ["homeassistant/#"]).connect()
    watcher.wait_for(lambda ms: len(ms) >= len(old), timeout=5)  # the retained old configs
    before = len(watcher.messages)
    link = MqttLink(settings_for(broker))
    link.start()
    watcher.wait_for(lambda ms: sum(m.payload == b"" for m in ms) >= len(old), timeout=10)
    link.stop()
    sequence = [(m.topic, m.payload) for m in watcher.messages[before:]]
    watcher.disconnect()
    device = "homeassistant/device/door/config"
    for topic in old:
        # As Home Assistant documents: mark for migration, the device config, then clear.
        marked = sequence.index((topic, b'{"migrate_discovery": true}'))
        cleared = sequence.index((topic, b""))
        assert any(t == device for t, _ in sequence[marked:cleared]), (topic, sequence)
    config = json.loads(next(p for t, p in reversed(sequence) if t == device))
    for topic in old:
        platform, node, object_id = topic.split("/")[1:4]
        kept = config["cmps"][object_id]
        assert kept["p"] == platform and kept["unique_id"] == f"peephole_{node}_{object_id}"
    # What stays retained: only the device config; a later start migrates nothing.
    late = Subscriber(broker, ["homeassistant/#"]).connect()
    retained = late.wait_for(lambda ms: len(ms) >= 1, timeout=5)
    late.wait_for(lambda ms: False, timeout=0.5)
    assert [m.topic for m in late.messages] == [device], retained
    link = MqttLink(settings_for(broker))
    link.start()
    late.wait_for(lambda ms: len(ms) >= 2, timeout=10)
    late.wait_for(lambda ms: False, timeout=1.0)
    link.stop()
    late.disconnect()
    assert [m.topic for m in late.messages] == [device, device]


# What Home Assistant's MQTT platforms take (the keys this door uses), and what each requires.
PLATFORM_KEYS = {
    "event": {"state_topic", "event_types", "value_template"},
    "sensor": {
        "state_topic", "value_template", "json_attributes_topic", "unit_of_measurement",
        "state_class", "device_class",
    },
    "binary_sensor": {"state_topic", "payload_on", "payload_off", "device_class"},
    "image": {"image_topic", "content_type"},
    "button": {"command_topic", "payload_press"},
    "text": {"command_topic", "min", "max", "mode", "pattern"},
}  # fmt: skip
REQUIRED_KEYS = {
    "event": {"state_topic", "event_types"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "image": {"image_topic"},
    "button": {"command_topic"},
    "text": {"command_topic"},
}
COMMON_KEYS = {"p", "name", "unique_id", "default_entity_id", "icon", "entity_category"}


def test_the_device_payload_follows_home_assistants_rules() -> None:
    options = DiscoveryOptions(snapshots=True, people=("Lin-Manuel Miranda", "Zoë"))
    topic, payload = device_discovery(Topics("peephole", "front door"), "homeassistant", options)
    assert topic == "homeassistant/device/front_door/config"
    config = json.loads(payload)
    assert set(config) == {"dev", "o", "availability", "cmps"}
    assert config["dev"]["ids"] == ["peephole_front_door"] and config["dev"]["name"]
    assert config["o"]["name"] == "peephole" and config["o"]["sw_version"]
    assert config["availability"][0]["topic"] == "peephole/front door/availability"
    for component_id, component in config["cmps"].items():
        platform = component["p"]
        assert re.fullmatch(r"[A-Za-z0-9_-]+", component_id)
        assert set(component) <= COMMON_KEYS | PLATFORM_KEYS[platform], component_id
        assert REQUIRED_KEYS[platform] <= set(component), component_id
        # object_id is deprecated: the entity id is suggested by default_entity_id.
        assert component["default_entity_id"] == f"{platform}.peephole_front_door_{component_id}"
        assert component["unique_id"] == f"peephole_front_door_{component_id}"
        if component.get("device_class") == "timestamp":
            assert component["state_topic"].startswith("peephole/front door/person/")
    seen = {c["name"] for c in config["cmps"].values() if c.get("device_class") == "timestamp"}
    assert seen == {"Lin-Manuel Miranda last seen", "Zoë last seen"}
    assert {"name_last_unknown", "undo_naming", "people_enrolled"} <= set(config["cmps"])


def test_where_names_stay_home_discovery_names_nobody() -> None:
    options = DiscoveryOptions(names_on_broker=False, people=("Lin-Manuel Miranda",))
    config = json.loads(device_discovery(Topics("peephole", "door"), "homeassistant", options)[1])
    assert "Lin" not in json.dumps(config)
    assert "name_last_unknown" not in config["cmps"] and "undo_naming" in config["cmps"]
    off = DiscoveryOptions(commands=False)
    config = json.loads(device_discovery(Topics("peephole", "door"), "homeassistant", off)[1])
    assert not {"name_last_unknown", "undo_naming", "last_command"} & set(config["cmps"])


def test_diagnostic_sensors_read_the_retained_status() -> None:
    payload = device_discovery(Topics("peephole", "door"), "homeassistant", DiscoveryOptions())[1]
    components = json.loads(payload)["cmps"]
    for object_id, field in (
        ("fps", "fps"),
        ("outbox_backlog", "outbox_backlog"),
        ("people_enrolled", "people"),
    ):
        config = components[object_id]
        assert config["state_topic"] == "peephole/door/status"
        assert config["entity_category"] == "diagnostic"
        assert f"value_json.{field} " in config["value_template"]
