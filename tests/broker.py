"""A real Mosquitto broker on 127.0.0.1 for tests, and a subscriber that records what it gets.

A pytest plugin (``pytest_plugins`` in tests/conftest.py): every test module can
ask for the ``broker``, ``module_broker``, ``bridged_brokers``, ``mosquitto_path``
and ``pki`` fixtures without importing them; import only the classes it names in
annotations.

The broker keeps persistent sessions on disk (``persistence true``), so a
subscriber that connected once with ``clean_session=False`` receives the QoS 1
messages published while it was away, even across a broker restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import missing

MOSQUITTO = Path("/usr/sbin/mosquitto")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PortTaken(RuntimeError):
    """Another process bound the broker's port first."""


@dataclass(frozen=True)
class BrokerSecurity:
    """TLS (server certificate and key) and, optionally, a mosquitto password file."""

    certfile: Path
    keyfile: Path
    password_file: Path | None = None


class Broker:
    """One mosquitto process with a generated config; can be stopped and started again."""

    def __init__(
        self,
        executable: Path,
        workdir: Path,
        port: int | None = None,
        security: BrokerSecurity | None = None,
        extra: str = "",
    ) -> None:
        self.executable = executable
        self.workdir = workdir
        self.host = "127.0.0.1"
        # A port picked here may be taken by another test worker before mosquitto
        # binds it; start() then picks another (a port given by the caller stays).
        self._port_chosen = port is None
        self.port = port or free_port()
        self.log = workdir / "mosquitto.log"
        self.config = workdir / "mosquitto.conf"
        self._security = security
        self._extra = extra
        self._write_config()
        self._process: subprocess.Popen[bytes] | None = None

    def _write_config(self) -> None:
        # Started as root, mosquitto would drop to user "mosquitto" and lose the temp folder.
        user = "user root\n" if os.geteuid() == 0 else ""
        access = "allow_anonymous true\n"
        security = self._security
        if security is not None:
            access = f"certfile {security.certfile}\nkeyfile {security.keyfile}\n"
            if security.password_file is not None:
                access += f"allow_anonymous false\npassword_file {security.password_file}\n"
            else:
                access += "allow_anonymous true\n"
        self.config.write_text(
            user + f"listener {self.port} {self.host}\n" + access + "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 10000\n"
            f"log_dest file {self.log}\n"
            "log_type all\n" + self._extra
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        attempts = 4 if self._port_chosen else 1
        for attempt in range(attempts):
            try:
                self._start(timeout)
                break
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                self.port = free_port()
                self._write_config()
        self._port_chosen = False  # clients know this port now: keep it

    def _start(self, timeout: float) -> None:
        if self.running:
            return
        # The log is appended to across restarts: read only what this start writes.
        offset = self.log.stat().st_size if self.log.exists() else 0
        self._process = subprocess.Popen(
            [str(self.executable), "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self._log_since(offset)
            if self._process.poll() is not None:
                self._process = None
                if "Address already in use" in log:
                    raise PortTaken(log)
                raise RuntimeError(f"mosquitto exited: {log}")
            # "running" comes after every listener is bound: a connection before that
            # could reach another process on the same port.
            if " running" in log:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection((self.host, self.port), 0.2),
                ):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on port {self.port}")

    def _log_since(self, offset: int) -> str:
        try:
            with self.log.open("rb") as stream:
                stream.seek(offset)
                return stream.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """Stop cleanly (mosquitto saves its persistent sessions on SIGTERM)."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Die at once (SIGKILL): no clean close, no last save."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


class Subscriber:
    """A plain paho client that records every message on its subscriptions."""

    def __init__(
        self,
        broker: Broker,
        topics: list[str],
        client_id: str = "",
        clean_session: bool = True,
        ca_file: Path | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file))
        if credentials is not None:
            self.client.username_pw_set(*credentials)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, client: paho.Client, *args: object) -> None:
        if self.topics:
            client.subscribe([(topic, 1) for topic in self.topics])
        else:
            self._subscribed.set()

    def _on_subscribe(self, *args: object) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                Received(
                    message.topic, bytes(message.payload), message.retain, message.qos, time.time()
                )
            )

    def connect(self, timeout: float = 10.0) -> Subscriber:
        self._subscribed.clear()
        self.client.connect(self.broker.host, self.broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError("subscription was not acknowledged")
        return self

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, topic_suffix: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 15.0
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                snapshot = list(self.messages)
            if predicate(snapshot):
                return snapshot
            time.sleep(0.05)
        with self._lock:
            return list(self.messages)


@dataclass(frozen=True)
class Pki:
    """A test CA, the broker's certificate it signed for 127.0.0.1, and an unrelated CA."""

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


@pytest.fixture(scope="session")
def mosquitto_path() -> Path:
    executable = MOSQUITTO if MOSQUITTO.exists() else shutil.which("mosquitto")
    if not executable:
        missing("mosquitto is not installed (apt install mosquitto)")
    return Path(executable)


@pytest.fixture
def broker(mosquitto_path: Path, tmp_path: Path) -> Iterator[Broker]:
    """A running broker for one test; the test may stop and start it."""
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    instance = Broker(mosquitto_path, workdir)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def module_broker(
    mosquitto_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Broker]:
    """One broker shared by a whole test module."""
    instance = Broker(mosquitto_path, tmp_path_factory.mktemp("mosquitto"))
    instance.start()
    yield instance
    instance.stop()


def bridge_section(remote: Broker, name: str) -> str:
    """A mosquitto.conf(5) bridge to ``remote`` that mirrors every topic both ways at QoS 1.

    ``try_private`` tells the remote it is a bridge, so nothing loops back;
    ``cleansession false`` keeps the bridge's session on the remote, so what the
    remote accepted while the bridge was down still crosses once it is back.
    """
    return (
        f"\nconnection {name}\n"
        f"address {remote.host}:{remote.port}\n"
        "topic # both 1\n"
        "bridge_protocol_version mqttv311\n"
        "try_private true\n"
        "cleansession false\n"
        f"remote_clientid {name}\n"
        "restart_timeout 1\n"
        "notifications false\n"
    )


def wait_for_bridge(a: Broker, b: Broker, timeout: float = 15.0) -> None:
    """Until a message published on ``a`` reaches a subscriber on ``b``, and back."""
    for source, target in ((a, b), (b, a)):
        probe = Subscriber(target, ["bridge-probe/#"]).connect()
        sender = paho.Client(CallbackAPIVersion.VERSION2)
        sender.connect(source.host, source.port)
        sender.loop_start()
        deadline = time.monotonic() + timeout
        try:
            while not probe.on("bridge-probe/up"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no bridge from {source.port} to {target.port}")
                sender.publish("bridge-probe/up", "1", qos=1)
                probe.wait_for(bool, timeout=0.3)
        finally:
            sender.disconnect()
            sender.loop_stop()
            probe.disconnect()


@pytest.fixture
def bridged_brokers(mosquitto_path: Path, tmp_path: Path) -> Iterator[tuple[Broker, Broker]]:
    """Brokers A and B, B bridged to A (every topic, both ways): one site, two brokers.

    The test may stop A (the failover) or either; both are stopped at the end.
    """
    folders = [tmp_path / "mosquitto-a", tmp_path / "mosquitto-b"]
    for folder in folders:
        folder.mkdir()
    first = Broker(mosquitto_path, folders[0])
    second = Broker(mosquitto_path, folders[1], extra=bridge_section(first, "bridge-b-to-a"))
    first.start()
    try:
        second.start()
        wait_for_bridge(first, second)
        yield first, second
    finally:
        second.stop()
        first.stop()
