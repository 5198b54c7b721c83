"""What leaves the device over MQTT, and who may talk to the broker.

End to end over TLS with a password: a subscriber on ``#`` sees every payload
of a run and none carries an embedding, a crop or another biometric (snapshots
appear only when switched on); the password shows up in no output, log or
database. Anonymous and wrong-password clients are refused, and a broker whose
certificate does not verify is accepted only with ``tls_insecure = true``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.config import MqttConfig
from device.service.mqtt import MqttLink
from tests.broker import Broker, BrokerSecurity, Pki, Received, Subscriber
from tests.conftest import require_shared
from tests.runtime_helpers import enroll_people, run_to_end, wait_until, write_config

SECRET = "Tr0ub4dor-peephole-7f3a9c"
CLIP = "data/video/short_hamilton_clip.mp4"
BIOMETRIC_KEYS = {"embedding", "vector", "crop", "face", "landmarks", "keypoints", "box", "image"}


@pytest.fixture(scope="module")
def secure_broker(
    mosquitto_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pki: Pki,
) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("secure-broker")
    passwords = folder / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "door", SECRET],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    broker = Broker(
        mosquitto_path,
        folder,
        security=BrokerSecurity(pki.server_cert, pki.server_key, passwords),
    )
    broker.start()
    yield broker
    broker.stop()


@dataclass
class SecureRun:
    result: subprocess.CompletedProcess[str]
    received: list[Received]
    files: list[Path]


def secure_run(
    folder: Path,
    broker: Broker,
    ca: Path,
    reference: tuple[Path, Path],
    *,
    snapshots: bool,
    password_in_file: bool,
) -> SecureRun:
    gallery, outbox = folder / "gallery.db", folder / "outbox.db"
    enroll_people(gallery, reference)
    mqtt = (
        f'username = "door"\ntls = true\nca_file = "{ca}"\nsnapshots = {str(snapshots).lower()}\n'
    )
    if password_in_file:
        mqtt += f'password = "{SECRET}"\n'
    config = write_config(
        folder / "config.toml", gallery=gallery, outbox=outbox, broker=broker, mqtt_extra=mqtt
    )
    everything = Subscriber(broker, ["#"], ca_file=ca, credentials=("door", SECRET)).connect()
    args = ("--source", str(require_shared(CLIP)), "--stop-after-frames", "150")
    if password_in_file:
        result = run_to_end(config, reference, *args)
    else:
        result = run_to_end(config, reference, *args, PEEPHOLE_MQTT_PASSWORD=SECRET)
    messages = everything.wait_for(
        lambda ms: any(m.text == "offline" and m.topic.endswith("availability") for m in ms),
        timeout=10,
    )
    everything.disconnect()
    return SecureRun(result, messages, [config, gallery, outbox])


@pytest.fixture(scope="module")
def runs(
    secure_broker: Broker,
    pki: Pki,
    tmp_path_factory: pytest.TempPathFactory,
    reference_f32: tuple[Path, Path],
) -> dict[str, SecureRun]:
    return {
        "snapshots off": secure_run(
            tmp_path_factory.mktemp("off"), secure_broker, pki.ca, reference_f32,
            snapshots=False, password_in_file=True,
        ),
        "snapshots on": secure_run(
            tmp_path_factory.mktemp("on"), secure_broker, pki.ca, reference_f32,
            snapshots=True, password_in_file=False,
        ),
    }  # fmt: skip


def biometric_findings(message: Received) -> list[str]:
    """Anything in a payload that could carry a face: vectors, images, long encoded blobs."""
    found = []
    payload = message.payload
    if payload.startswith((b"\xff\xd8", b"\x89PNG", b"GIF8", b"BM", b"RIFF")):
        found.append("an image")
    # The device discovery config grows with the people enrolled (a sensor each); every
    # field of it is still walked below.
    if len(payload) > 4096 and not message.topic.startswith("homeassistant/device/"):
        found.append(f"{len(payload)} bytes")
    text = payload.decode("utf-8", errors="replace")
    if re.search(r"[A-Za-z0-9+/=]{200,}", text):
        found.append("a long base64-like run")
    if re.search(r"\[\s*-?[0-9.e-]+(\s*,\s*-?[0-9.e-]+){15,}\s*\]", text):
        found.append("a numeric array")
    try:
        decoded = json.loads(payload)
    except ValueError:
        return found

    def walk(value: object, key: str = "") -> None:
        if key.lower() in BIOMETRIC_KEYS:
            found.append(f"key {key!r}")
        if isinstance(value, dict):
            for child_key, child in value.items():
                walk(child, str(child_key))
        elif isinstance(value, list) and len(value) > 8:
            found.append(f"a list of {len(value)} under {key!r}")
        elif isinstance(value, str) and len(value) > 300:
            found.append(f"a {len(value)}-character string under {key!r}")

    walk(decoded)
    return found


def test_both_runs_worked_over_tls_with_the_password(runs: dict[str, SecureRun]) -> None:
    for name, run in runs.items():
        assert run.result.returncode == 0, f"{name}: {run.result.stderr}"
        events = [m for m in run.received if m.topic.endswith("/visitor")]
        assert events, f"{name}: no event reached the subscriber"


def test_no_payload_on_any_topic_carries_biometric_data(runs: dict[str, SecureRun]) -> None:
    checked = 0
    for name, run in runs.items():
        for message in run.received:
            if message.topic == "peephole/door/snapshot":
                continue  # judged below: only there, and only when switched on
            assert not biometric_findings(message), (name, message.topic, message.payload[:200])
            checked += 1
    assert checked >= 20, checked


def test_snapshots_appear_only_when_switched_on_and_only_on_their_topic(
    runs: dict[str, SecureRun],
) -> None:
    off = [m for m in runs["snapshots off"].received if m.topic.endswith("/snapshot")]
    on = [m for m in runs["snapshots on"].received if m.topic.endswith("/snapshot")]
    assert off == []
    assert on and all(m.payload.startswith(b"\xff\xd8") and not m.retain for m in on)


def test_the_password_appears_in_no_output_log_or_file(
    runs: dict[str, SecureRun],
    secure_broker: Broker,
) -> None:
    for name, run in runs.items():
        assert SECRET not in run.result.stdout, name
        assert SECRET not in run.result.stderr, name
        assert SECRET.encode() not in b"".join(m.payload for m in run.received), name
        for path in run.files[1:]:  # the gallery and the outbox (the config holds it, 0600)
            for part in path.parent.glob(path.name + "*"):
                assert SECRET.encode() not in part.read_bytes(), part
    assert SECRET not in secure_broker.log.read_text(errors="replace")


def test_a_wrong_password_is_reported_without_echoing_either_password(
    tmp_path: Path,
    secure_broker: Broker,
    pki: Pki,
    reference_f32: tuple[Path, Path],
) -> None:
    wrong = "not-the-password-91b2"
    config = write_config(
        tmp_path / "config.toml",
        gallery=tmp_path / "gallery.db",
        outbox=tmp_path / "outbox.db",
        broker=secure_broker,
        mqtt_extra=f'username = "door"\npassword = "{wrong}"\ntls = true\nca_file = "{pki.ca}"\n',
    )
    result = run_to_end(
        config, reference_f32, "--source", str(require_shared(CLIP)), "--stop-after-frames", "60"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stderr
    assert "refused the connection" in result.stderr, result.stderr
    assert wrong not in output and SECRET not in output


def connect_result(broker: Broker, ca: Path, credentials: tuple[str, str] | None) -> str:
    outcome: list[str] = []
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.tls_set(ca_certs=str(ca))
    if credentials:
        client.username_pw_set(*credentials)
    client.on_connect = lambda c, u, f, reason, p: outcome.append(str(reason))
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_until(lambda: bool(outcome), timeout=10)
    client.loop_stop()
    client.disconnect()
    return outcome[0] if outcome else "no answer"


def test_anonymous_and_wrong_password_clients_are_refused(
    secure_broker: Broker,
    pki: Pki,
) -> None:
    assert connect_result(secure_broker, pki.ca, None) == "Not authorized"
    assert connect_result(secure_broker, pki.ca, ("door", "guess")) == "Not authorized"
    assert connect_result(secure_broker, pki.ca, ("door", SECRET)) == "Success"


def test_an_unverifiable_broker_is_accepted_only_when_the_config_says_so(
    secure_broker: Broker,
    pki: Pki,
) -> None:
    outcomes = {}
    for insecure in (False, True):
        settings = MqttConfig(
            host=secure_broker.host,
            port=secure_broker.port,
            device_id=f"insecure-{insecure}".lower(),
            username="door",
            password=SECRET,
            tls=True,
            ca_file=str(pki.other_ca),  # a CA that did not sign the broker's certificate
            tls_insecure=insecure,
            reconnect_max_delay=1,
        )
        link = MqttLink(settings)
        link.start()
        try:
            outcomes[insecure] = wait_until(lambda: link.connected, timeout=4)  # noqa: B023
        finally:
            link.stop()
    assert outcomes == {False: False, True: True}
