"""Property-based tests of what strangers and users can feed the device.

Config files (as TOML text and as parsed tables), MQTT messages on the topic the
device listens to, discovery and event payloads for any device id or name, and
the names given to ``peephole enroll``. None may crash, and none may corrupt the
gallery. Case counts are fixed (``derandomize``) and quoted in docs/security.md.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from device.cli.app import AppContext, PeepholeGroup
from device.cli.enroll import enroll
from device.config import Config, MqttConfig, load_config, parse_config
from device.errors import ConfigError, GalleryError
from device.identity.gallery import Gallery, name_key, normalise_name
from device.service.discovery import DiscoveryOptions, device_discovery, node_id
from device.service.events import VisitorEvent
from device.service.mqtt import MqttLink
from device.service.topics import Topics
from tests.broker import Broker, Subscriber
from tests.conftest import require_shared
from tests.runtime_helpers import wait_until

CONFIG_TABLE_CASES = 600
CONFIG_TEXT_CASES = 400
DISCOVERY_CASES = 300
EVENT_CASES = 300
STATUS_MESSAGE_CASES = 300
ENROLL_NAME_CASES = 60


def cases(count: int, **extra: Any) -> settings:
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        **extra,
    )


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message and "Traceback" not in message


# Config -------------------------------------------------------------------

SECTIONS = {
    name: sorted(vars(section)) for name, section in vars(Config()).items()
}  # every section and option the parser knows

toml_scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 10**400]),  # TOML integers have no size limit here
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def config_tables(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly known sections and options (so values reach validation), sometimes anything."""
    raw: dict[str, Any] = {}
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(sorted(SECTIONS)) | st.text(max_size=10))
        options = SECTIONS.get(section, [])
        table: dict[str, Any] = {}
        for _ in range(draw(st.integers(0, 4))):
            key = (
                draw(st.sampled_from(options) | st.text(max_size=10))
                if options
                else draw(st.text(max_size=10))
            )
            table[key] = draw(toml_scalars if draw(st.integers(0, 4)) else toml_values)
        raw[section] = table if draw(st.integers(0, 9)) else draw(toml_values)
    return raw


@cases(CONFIG_TABLE_CASES)
@given(config_tables())
def test_config_tables_parse_or_are_refused_in_one_line(raw: dict[str, Any]) -> None:
    try:
        config = parse_config(raw, "config.toml")
    except ConfigError as error:
        assert one_line(str(error)) and str(error).startswith(("config.toml", "[")), error
        return
    assert isinstance(config, Config)
    for section in vars(config).values():
        for value in vars(section).values():
            if isinstance(value, float):
                assert math.isfinite(value)
    try:
        config.mqtt.validate()
    except ConfigError as error:
        assert one_line(str(error))


@cases(CONFIG_TEXT_CASES)
@given(
    st.text(max_size=300)
    | st.builds(
        lambda section, key, value: f"[{section}]\n{key} = {value}\n",
        st.sampled_from(sorted(SECTIONS)),
        st.sampled_from(sorted({k for keys in SECTIONS.values() for k in keys})),
        st.sampled_from(["1", "-1", "1e400", "nan", "inf", '"x"', "true", "[1]", "{a=1}", "9" * 40])
        | st.text(max_size=20),
    )
)
def test_config_files_load_or_are_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    path.chmod(0o600)
    try:
        load_config(path)
    except ConfigError as error:
        assert one_line(str(error)), error


# Discovery and event payloads ---------------------------------------------

topic_words = st.text(min_size=1, max_size=20).filter(lambda t: not set("+#\0") & set(t))
device_ids = topic_words.filter(lambda t: "/" not in t)


def storable(name: str) -> bool:
    """Whether the gallery takes ``name`` as a person's name."""
    try:
        normalise_name(name)
    except GalleryError:
        return False
    return True


@cases(DISCOVERY_CASES)
@given(
    topic_words,
    device_ids,
    topic_words,
    st.booleans(),
    st.lists(
        st.text(min_size=1, max_size=40).filter(storable).map(normalise_name),
        max_size=6,
        unique_by=name_key,
    ),
)
def test_discovery_payloads_are_json_under_the_prefix_for_any_device_id_and_names(
    prefix: str, device_id: str, discovery_prefix: str, snapshots: bool, people: list[str]
) -> None:
    topics = Topics(prefix, device_id)
    options = DiscoveryOptions(snapshots=snapshots, people=tuple(people))
    topic, payload = device_discovery(topics, discovery_prefix, options)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", node_id(device_id))
    assert topic == f"{discovery_prefix}/device/{node_id(device_id)}/config"
    assert not set("+#") & set(topic)
    config = json.loads(payload)
    assert config["availability"][0]["topic"] == topics.availability
    components = config["cmps"]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", cid) for cid in components)
    assert len({c["unique_id"] for c in components.values()}) == len(components)
    seen_by = [c for cid, c in components.items() if cid.startswith("last_seen_")]
    assert len(seen_by) == len(people)
    assert all(not set("+#") & set(c["state_topic"]) for c in seen_by)
    assert ("snapshot" in components) == snapshots


finite = st.floats(-1.0, 1.0, allow_nan=False)


@cases(EVENT_CASES)
@given(
    st.sampled_from(["visitor", "visitor_left"]),
    device_ids,
    st.none() | st.text(max_size=120),
    st.none() | finite,
    st.integers(0, 10**6),
)
def test_event_payloads_are_strict_json_without_biometrics(
    kind: str, device_id: str, person: str | None, similarity: float | None, frames: int
) -> None:
    event = VisitorEvent(
        event=kind,
        event_type=kind,
        event_id="e" * 32,
        device_id=device_id,
        timestamp="2026-01-01T00:00:00.000Z",
        track_id=frames,
        person=person,
        known=person is not None,
        similarity=similarity,
        margin=similarity,
        frames=frames,
        quality=0.5,
    )
    text = event.to_json()
    decoded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert decoded == event.payload()
    assert "\n" not in text
    assert not any(isinstance(value, (list, dict)) for value in decoded.values())


# MQTT messages to the device -------------------------------------------------


class DiscoveryCounter:
    """Counts discovery rounds the device publishes (one retained device config each)."""

    def __init__(self, broker: Broker) -> None:
        self.watcher = Subscriber(broker, ["homeassistant/device/+/config"]).connect()

    @property
    def rounds(self) -> int:
        return len(self.watcher.messages)


@pytest.fixture
def listening_device(broker: Broker) -> Iterator[tuple[MqttLink, Broker]]:
    link = MqttLink(MqttConfig(host=broker.host, port=broker.port, device_id="door"))
    link.start()
    assert wait_until(lambda: link.connected, timeout=10)
    yield link, broker
    link.stop()


def test_any_message_on_the_command_topic_is_survived(
    listening_device: tuple[MqttLink, Broker],
) -> None:
    """Stranger payloads on homeassistant/status through the real broker and callback."""
    link, broker = listening_device
    counter = DiscoveryCounter(broker)
    assert wait_until(lambda: counter.rounds == 1, timeout=10)  # the retained one from connect
    sender = paho.Client(CallbackAPIVersion.VERSION2)
    sender.connect(broker.host, broker.port)
    sender.loop_start()
    payloads: list[bytes] = []

    @cases(STATUS_MESSAGE_CASES)
    @given(
        st.binary(max_size=512) | st.sampled_from([b"online", b"offline", b"ONLINE", b"online\n"])
    )
    def send(payload: bytes) -> None:
        payloads.append(payload)
        sender.publish("homeassistant/status", payload, qos=1).wait_for_publish(5)

    send()
    onlines = sum(p == b"online" for p in payloads)
    sender.publish("homeassistant/status", b"online", qos=1).wait_for_publish(5)
    assert wait_until(lambda: counter.rounds >= 2 + onlines, timeout=20), counter.rounds
    sender.loop_stop()
    sender.disconnect()
    assert len(payloads) >= STATUS_MESSAGE_CASES
    assert link.connected
    assert counter.rounds == 2 + onlines  # re-sent for exactly "online", nothing else


# Names given to enroll --------------------------------------------------------

PHOTO = "data/lfw/images/Aaron_Eckhart/Aaron_Eckhart_0001.jpg"

names = st.one_of(
    st.text(max_size=130),
    st.sampled_from(
        ["", " ", "\t", "../../etc/passwd", "/tmp/x", "a/b\\c", "C:\\x", "-rf", "Ann\x00e",
         "名前", "Zoë", "Zoe\u0308", "ZOË", "x" * 100, "x" * 101, "\u202eevil", "Robert'); --"]
    ),
)  # fmt: skip


def rows(gallery_path: Path) -> tuple[int, int, int]:
    with sqlite3.connect(gallery_path) as db:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("people", "embeddings", "crops")
        )


@pytest.fixture(scope="module")
def enroll_app(reference_f32: tuple[Path, Path]) -> AppContext:
    """One loaded model for every example (each enroll otherwise loads it again)."""
    app = AppContext.create(Config(), *reference_f32)
    app.embedder()
    app.pipeline()
    return app


def test_any_name_given_to_enroll_is_stored_or_refused_without_corruption(
    tmp_path: Path, enroll_app: AppContext
) -> None:
    photo = require_shared(PHOTO)
    gallery_path = tmp_path / "gallery.db"
    enroll_app.config.gallery.path = str(gallery_path)
    group = PeepholeGroup(commands={"enroll": enroll})
    runner = CliRunner()
    stored: dict[str, str] = {}
    outcomes = {"stored": 0, "refused": 0}

    @cases(ENROLL_NAME_CASES)
    @given(names)
    def try_name(name: str) -> None:
        before = rows(gallery_path) if gallery_path.exists() else (0, 0, 0)
        # One photo under every name: the refusal of a lookalike has its own test.
        result = runner.invoke(
            group,
            ["enroll", f"--name={name}", "--allow-lookalike", "--images", str(photo)],
            obj=enroll_app,
        )
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        after = rows(gallery_path) if gallery_path.exists() else (0, 0, 0)
        if result.exit_code == 0:
            outcomes["stored"] += 1
            display = normalise_name(name)
            assert name_key(display) not in stored
            stored[name_key(display)] = display
            assert after == (before[0] + 1, before[1] + 1, before[2] + 1)
        else:
            outcomes["refused"] += 1
            errors = [line for line in result.output.splitlines() if "error" in line]
            assert len(errors) == 1 and errors[0].startswith("peephole: error: "), result.output
            assert "Traceback" not in result.output
            assert after == before
            expect_refusal(name, stored)

    try_name()
    assert sum(outcomes.values()) >= ENROLL_NAME_CASES
    assert outcomes["stored"] > 5 and outcomes["refused"] > 5, outcomes
    with Gallery.open(gallery_path, create=False) as gallery:
        assert sorted(gallery.names()) == sorted(stored.values())
    with sqlite3.connect(gallery_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def expect_refusal(name: str, stored: dict[str, str]) -> None:
    """A refused name is unusable or already taken; never a valid new name."""
    try:
        display = normalise_name(name)
    except GalleryError:
        return
    assert name_key(display) in stored, f"{name!r} was refused but is a usable new name"
