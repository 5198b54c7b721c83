"""The MQTT link over TLS with a password, against a Mosquitto whose CA the test made."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.service.mqtt import MqttLink
from tests.broker import Broker, BrokerSecurity, Pki, Subscriber
from tests.runtime_helpers import wait_until


@pytest.fixture
def tls_broker(mosquitto_path: Path, tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    passwords = tmp_path / "passwords"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "door", "s3cret"],
        check=True,
        capture_output=True,
    )
    passwords.chmod(0o600)
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = Broker(
        mosquitto_path, workdir, security=BrokerSecurity(pki.server_cert, pki.server_key, passwords)
    )
    broker.start()
    yield broker
    broker.stop()


def link(broker: Broker, ca: Path, password: str) -> MqttLink:
    settings = MqttConfig(
        host=broker.host,
        port=broker.port,
        device_id="door",
        username="door",
        password=password,
        tls=True,
        ca_file=str(ca),
        reconnect_max_delay=1,
    )
    return MqttLink(settings)


def test_device_connects_over_tls_with_its_password(
    tls_broker: Broker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.service.mqtt")
    device = link(tls_broker, pki.ca, "s3cret")
    device.start()
    try:
        assert wait_until(lambda: device.connected, timeout=10), caplog.messages
        watcher = Subscriber(
            tls_broker,
            ["peephole/door/availability"],
            ca_file=pki.ca,
            credentials=("door", "s3cret"),
        ).connect()
        seen = watcher.wait_for(lambda ms: bool(ms), timeout=5)
        watcher.disconnect()
        assert [m.text for m in seen] == ["online"]
        assert any(m.startswith("connected to MQTT broker") for m in caplog.messages)
    finally:
        device.stop()


def test_wrong_password_is_refused_and_reported(
    tls_broker: Broker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.service.mqtt")
    device = link(tls_broker, pki.ca, "wrong")
    device.start()
    try:
        assert wait_until(lambda: any("refused" in m for m in caplog.messages), timeout=10), (
            caplog.messages
        )
        (refused,) = [r for r in caplog.records if "refused" in r.getMessage()]
        assert refused.levelno == logging.WARNING
        assert not device.connected
    finally:
        device.stop()


def test_broker_whose_certificate_does_not_verify_is_refused(
    tls_broker: Broker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.service.mqtt")
    device = link(tls_broker, pki.other_ca, "s3cret")
    device.start()
    try:
        assert not wait_until(lambda: device.connected, timeout=3)
        reports = [m for m in caplog.messages if "TLS did not verify" in m]
        # Reported once, not on every retry (one report per distinct problem).
        assert len(reports) == 1, caplog.messages
    finally:
        device.stop()
