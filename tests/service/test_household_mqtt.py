"""Naming from Home Assistant over a real Mosquitto: commands, results, ACL, people, the door.

The household's visits are real photos through the shipped model
(tests/visit_helpers.py); a paho client plays Home Assistant. The door's side
(``HouseholdOverMqtt``) is stepped here as the camera loop steps it between
frames; the last test runs ``peephole run`` itself on the Hamilton clip.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device.config import Config
from device.identity.gallery import Gallery
from device.identity.visits import VisitStore
from device.service.discovery import person_slug
from device.service.household import Household
from device.service.household_mqtt import HouseholdOverMqtt
from device.service.mqtt import MqttLink
from device.site.model_choice import ModelChoice
from device.vision.pipeline import FacePipeline
from tests.broker import Broker, Subscriber
from tests.conftest import ROOT, require_shared
from tests.runtime_helpers import clip_passes, start_run, wait_until, write_config
from tests.service.test_visits_e2e import listed
from tests.visit_helpers import ALEX, LIN, photo_visit

ALEX_VISIT, SUSPECT_VISIT, LIN_VISIT = "a1ex00000001", "5u5pec700001", "11n000000001"
LIN_NAME = "Lin-Manuel Miranda"
RESULT = "peephole/door/command_result"


@pytest.fixture(scope="module")
def visits_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline = FacePipeline.from_config(Config(), ModelChoice(Config()).embedder())
    path = tmp_path_factory.mktemp("visits") / "visits.db"
    start = 1_800_000_000.0
    with VisitStore.open(path) as store:
        store.save(photo_visit(pipeline, require_shared(ALEX), ALEX_VISIT, first_seen=start))
        store.save(
            photo_visit(
                pipeline,
                require_shared(LIN),
                SUSPECT_VISIT,
                liveness="suspect",
                first_seen=start + 100,
            )
        )
        store.save(
            photo_visit(pipeline, require_shared(LIN), LIN_VISIT, copies=2, first_seen=start + 200)
        )
    return path


@dataclass
class DoorSide:
    """The door's household over the broker, stepped as the loop steps it."""

    config: Config
    household: Household
    link: MqttLink
    bridge: HouseholdOverMqtt

    def people(self) -> list[str]:
        return [p.name for p in self.household.people()]

    def stop(self) -> None:
        self.link.stop()


def door_side(
    tmp_path: Path,
    broker: Broker,
    *,
    names_on_broker: bool = True,
    credentials: tuple[str, str] | None = None,
) -> DoorSide:
    config = Config()
    config.gallery.path = str(tmp_path / "gallery.db")
    config.mqtt.host, config.mqtt.port, config.mqtt.device_id = broker.host, broker.port, "door"
    config.mqtt.reconnect_max_delay = 1
    if credentials is not None:
        config.mqtt.username, config.mqtt.password = credentials
    household = Household(config, ModelChoice(config))
    link = MqttLink(config.mqtt, names_on_broker=names_on_broker)
    bridge = HouseholdOverMqtt(household, link, names_on_broker=names_on_broker)
    link.start()
    assert wait_until(lambda: link.subscribed, timeout=10)
    return DoorSide(config, household, link, bridge)


@pytest.fixture
def visits(tmp_path: Path, visits_template: Path) -> Path:
    path = tmp_path / "visits.db"
    path.write_bytes(visits_template.read_bytes())
    return path


@pytest.fixture
def door(tmp_path: Path, broker: Broker, visits: Path) -> Iterator[DoorSide]:
    side = door_side(tmp_path, broker)
    yield side
    side.stop()


class HomeAssistant:
    """A client that sends commands and reads the door's results."""

    def __init__(self, broker: Broker, credentials: tuple[str, str] | None = None) -> None:
        self.results = Subscriber(broker, [RESULT], credentials=credentials).connect()

    def send(self, command: str, payload: str | dict[str, Any], retain: bool = False) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self.results.client.publish(
            f"peephole/door/command/{command}", text, qos=1, retain=retain
        ).wait_for_publish(5)

    def result(self, door: DoorSide, count: int, timeout: float = 20.0) -> dict[str, Any]:
        """The ``count``-th result, stepping the door until it comes."""
        assert wait_until(
            lambda: door.bridge.step() is not None and len(self.results.messages) >= count,
            timeout,
        ), [m.text for m in self.results.messages]
        return dict(json.loads(self.results.messages[count - 1].payload))

    def close(self) -> None:
        self.results.disconnect()


@pytest.fixture
def home_assistant(broker: Broker) -> Iterator[HomeAssistant]:
    client = HomeAssistant(broker)
    yield client
    client.close()


def test_the_text_entity_names_the_last_unknown_visitor_once_and_the_button_undoes_it(
    door: DoorSide, home_assistant: HomeAssistant
) -> None:
    home_assistant.send("name_last_unknown", LIN_NAME)
    named = home_assistant.result(door, 1)
    assert named["ok"] and named["changed"] and named["visit_id"] == LIN_VISIT
    assert named["person"] == LIN_NAME and named["message"].startswith(f"visit {LIN_VISIT} named")
    assert door.people() == [LIN_NAME]
    # The same command again (Home Assistant resending, a double submit): nothing changes.
    home_assistant.send("name_last_unknown", LIN_NAME)
    again = home_assistant.result(door, 2)
    assert again["ok"] and not again["changed"] and "already named" in again["message"]
    assert door.household.people()[0].samples == 1  # two identical crops: one sample
    home_assistant.send("undo_naming", "PRESS")
    undone = home_assistant.result(door, 3)
    assert undone["ok"] and undone["changed"] and undone["visit_id"] == LIN_VISIT
    assert door.people() == []


def test_a_retained_press_or_name_is_ignored_at_connect(
    tmp_path: Path, broker: Broker, visits: Path, home_assistant: HomeAssistant
) -> None:
    first = door_side(tmp_path, broker)
    home_assistant.send("name_last_unknown", LIN_NAME)
    assert home_assistant.result(first, 1)["changed"]
    first.stop()
    # Retained while the door was away: the button and the text act only as they are sent.
    home_assistant.send("undo_naming", "PRESS", retain=True)
    home_assistant.send("name_last_unknown", "Somebody Else", retain=True)
    second = door_side(tmp_path, broker)
    try:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert not second.bridge.step()
            time.sleep(0.05)
        assert len(home_assistant.results.messages) == 1
        assert second.people() == [LIN_NAME]
    finally:
        second.stop()
        for command in ("undo_naming", "name_last_unknown"):
            home_assistant.send(command, "", retain=True)


def test_name_visit_by_id_is_idempotent_and_an_undo_by_id_undoes_one_naming(
    door: DoorSide, home_assistant: HomeAssistant
) -> None:
    command = {"visit_id": ALEX_VISIT, "name": "Alex Lacamoire"}
    home_assistant.send("name_visit", command)
    assert home_assistant.result(door, 1)["changed"]
    home_assistant.send("name_visit", {"visit_id": LIN_VISIT, "name": LIN_NAME})
    assert home_assistant.result(door, 2)["changed"]
    home_assistant.send("name_visit", command)  # replayed
    replay = home_assistant.result(door, 3)
    assert replay["ok"] and not replay["changed"]
    home_assistant.send("undo_naming", {"visit_id": LIN_VISIT})
    assert home_assistant.result(door, 4)["changed"]
    home_assistant.send("undo_naming", {"visit_id": LIN_VISIT})  # replayed: Alex's stays
    refused = home_assistant.result(door, 5)
    assert not refused["ok"] and not refused["changed"]
    assert refused["message"] == (
        f"the last naming is of visit {ALEX_VISIT}, not {LIN_VISIT}; nothing was undone"
    )
    assert door.people() == ["Alex Lacamoire"]


def test_a_suspect_visit_needs_allow_suspect_and_bad_commands_get_one_line(
    door: DoorSide, home_assistant: HomeAssistant
) -> None:
    home_assistant.send("name_visit", {"visit_id": SUSPECT_VISIT, "name": LIN_NAME})
    refused = home_assistant.result(door, 1)
    assert not refused["ok"] and "liveness: suspect" in refused["message"]
    assert door.people() == []
    bad: list[tuple[str, str | dict[str, Any]]] = [
        ("name_visit", "not json"),
        ("name_visit", {"visit_id": LIN_VISIT}),
        ("name_visit", {"visit_id": "nosuchvisit0", "name": "X"}),
        ("undo_naming", "nonsense"),
        ("name_last_unknown", "   "),
    ]
    for count, (command, payload) in enumerate(bad, start=2):
        home_assistant.send(command, payload)
        result = home_assistant.result(door, count)
        assert not result["ok"] and "\n" not in result["message"] and result["message"], result
    home_assistant.send(
        "name_visit", {"visit_id": SUSPECT_VISIT, "name": LIN_NAME, "allow_suspect": True}
    )
    assert home_assistant.result(door, 7)["changed"]
    assert door.people() == [LIN_NAME]


def test_where_names_stay_home_no_name_is_taken_from_the_broker_or_sent_to_it(
    tmp_path: Path, broker: Broker, visits: Path, home_assistant: HomeAssistant
) -> None:
    everything = Subscriber(broker, ["#"]).connect()
    side = door_side(tmp_path, broker, names_on_broker=False)
    try:
        home_assistant.send("name_last_unknown", LIN_NAME)
        refused = home_assistant.result(side, 1)
        assert not refused["ok"] and refused["person"] is None
        assert "names_on_broker = false" in refused["message"]
        side.household.name_visit(LIN_VISIT, LIN_NAME)  # named at the door instead
        side.bridge.publish_people()
        home_assistant.send("undo_naming", "PRESS")
        undone = home_assistant.result(side, 2)
        assert undone["ok"] and undone["person"] is None
        everything.wait_for(lambda ms: False, timeout=0.5)
    finally:
        side.stop()
        everything.disconnect()
    from_door = [m for m in everything.messages if "/command/" not in m.topic]
    assert from_door and not [m.topic for m in from_door if b"Lin" in m.payload]


def test_enrolled_people_get_last_seen_sensors_that_follow_the_gallery(
    door: DoorSide, broker: Broker
) -> None:
    watcher = Subscriber(broker, ["homeassistant/device/door/config", "peephole/door/person/#"])
    watcher.connect()
    door.household.name_visit(LIN_VISIT, LIN_NAME)
    door.bridge.publish_people()
    with Gallery.open(Path(door.config.gallery.path)) as gallery:
        gallery.touch_last_seen(LIN_NAME, 1_900_000_000.0)
    door.bridge.publish_people()
    topic = f"peephole/door/person/{person_slug(LIN_NAME)}/last_seen"
    seen = watcher.wait_for(lambda ms: any(m.payload.startswith(b"2030") for m in ms), timeout=10)
    config = json.loads([m for m in seen if m.topic.startswith("homeassistant/")][-1].payload)
    sensor = config["cmps"][f"last_seen_{person_slug(LIN_NAME)}"]
    assert sensor["state_topic"] == topic and sensor["device_class"] == "timestamp"
    assert [m.text for m in seen if m.topic == topic][-1] == "2030-03-17T17:46:40.000Z"
    door.household.undo_last_naming()  # Lin was created by that naming: he is gone
    door.bridge.publish_people()
    gone = watcher.wait_for(lambda ms: ms[-1].topic == topic and ms[-1].payload == b"", timeout=10)
    watcher.disconnect()
    configs = [m for m in gone if m.topic.startswith("homeassistant/")]
    assert f"last_seen_{person_slug(LIN_NAME)}" not in json.loads(configs[-1].payload)["cmps"]


def acl_lines() -> str:
    """The Mosquitto ACL docs/mqtt.md gives under "Who may send commands"."""
    text = (ROOT / "docs" / "mqtt.md").read_text()
    section = text[text.index("### Who may send commands") :]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block is not None
    return block.group(1)


@pytest.fixture
def acl_broker(mosquitto_path: Path, tmp_path: Path) -> Iterator[Broker]:
    folder = tmp_path / "acl-broker"
    folder.mkdir()
    passwords = folder / "passwords"
    for number, user in enumerate(("homeassistant", "door", "guest")):
        flags = ["-b", "-c"] if number == 0 else ["-b"]
        subprocess.run(
            ["mosquitto_passwd", *flags, str(passwords), user, f"{user}-secret"],
            check=True,
            capture_output=True,
        )
    (folder / "acl").write_text(acl_lines())
    broker = Broker(
        mosquitto_path,
        folder,
        extra=f"allow_anonymous false\npassword_file {passwords}\nacl_file {folder / 'acl'}\n",
    )
    broker.start()
    yield broker
    broker.stop()


def test_the_documented_acl_lets_only_home_assistant_command_the_door(
    tmp_path: Path, acl_broker: Broker, visits: Path
) -> None:
    side = door_side(tmp_path, acl_broker, credentials=("door", "door-secret"))
    home_assistant = HomeAssistant(acl_broker, ("homeassistant", "homeassistant-secret"))
    guest = HomeAssistant(acl_broker, ("guest", "guest-secret"))
    try:
        guest.send("name_last_unknown", "Mallory")
        guest.send("name_visit", {"visit_id": ALEX_VISIT, "name": "Mallory"})
        home_assistant.send("name_last_unknown", LIN_NAME)
        named = home_assistant.result(side, 1)
        assert named["ok"] and named["person"] == LIN_NAME
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            side.bridge.step()
        # The guest's commands never reached the door, and the guest cannot read results.
        assert len(home_assistant.results.messages) == 1 and guest.results.messages == []
        assert side.people() == [LIN_NAME]
    finally:
        side.stop()
        home_assistant.close()
        guest.close()


def test_a_running_door_named_from_home_assistant_knows_him_on_the_next_pass(
    tmp_path: Path, broker: Broker
) -> None:
    video = clip_passes(tmp_path / "twice.avi", 2, gap_seconds=1.0)
    config = write_config(
        tmp_path / "config.toml",
        gallery=tmp_path / "gallery.db",
        outbox=tmp_path / "outbox.db",
        broker=broker,
    )
    events = Subscriber(broker, ["peephole/door/visitor"]).connect()
    home_assistant = HomeAssistant(broker)
    door = start_run(config, None, "--source", str(video), "--realtime")
    try:
        assert wait_until(
            lambda: (
                (tmp_path / "visits.db").exists() and any(v["frames"] > 0 for v in listed(config))
            ),
            timeout=60,
            interval=0.2,
        ), door.stderr
        home_assistant.send("name_last_unknown", LIN_NAME)
        result = home_assistant.results.wait_for(lambda ms: bool(ms), timeout=20)
        door.wait(timeout=120)
    finally:
        if door.poll() is None:
            door.kill()
        home_assistant.close()
    events.wait_for(lambda ms: False, timeout=0.5)
    events.disconnect()
    named = json.loads(result[0].payload)
    assert named["ok"] and named["changed"] and named["person"] == LIN_NAME, named
    known = [json.loads(m.payload) for m in events.messages]
    assert [e["person"] for e in known if e["known"]] == [LIN_NAME]
    assert door.stderr is not None
    log = door.stderr.read()
    assert f"command name_last_unknown from the broker: visit {named['visit_id']}" in log
