"""The MQTT link over TLS with a password, against a Mosquitto whose CA the test made."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from device.config import MqttConfig
from device.service.mqtt import MqttLink
from tests.broker import Broker, BrokerSecurity, Subscriber, mosquitto_path  # noqa: F401
from tests.runtime_helpers import wait_until


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
        cwd=folder,
    )  # fmt: skip
    return key, cert


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = make_ca(folder, "peephole-test-ca")
    _, other_ca = make_ca(folder, "someone-else-ca")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", str(ca_cert), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", "server.crt", "-days", "1", "-extfile", "san.ext",
        cwd=folder,
    )  # fmt: skip
    return Pki(ca_cert, folder / "server.crt", folder / "server.key", other_ca)


@pytest.fixture
def tls_broker(mosquitto_path: Path, tmp_path: Path, pki: Pki) -> Iterator[Broker]:  # noqa: F811
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
