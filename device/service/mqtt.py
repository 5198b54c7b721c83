"""The MQTT link (paho-mqtt 2.x): the only module that imports paho.

One :class:`MqttLink` owns the device's topics under ``<prefix>/<device_id>``:

- ``availability``: retained; ``online`` on every connect, ``offline`` on a
  clean stop and from the broker's last will when the device dies;
- events at QoS 1, never retained; every PUBACK is reported through
  :meth:`MqttLink.acknowledged` so the outbox can forget the event;
- Home Assistant discovery configs (retained), sent on every connect and again
  whenever Home Assistant announces ``online`` on ``<discovery_prefix>/status``.

paho's network thread connects in the background and reconnects with
exponential backoff; messages published while disconnected wait in paho's
queue and go out, in order, after the next connect.
"""

from __future__ import annotations

import logging
import queue
import ssl
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device.config import MqttConfig
from device.errors import ConfigError
from device.service.discovery import discovery_messages
from device.service.topics import OFFLINE, ONLINE, Topics

logger = logging.getLogger(__name__)
# paho's own log (every packet) shows only with --verbose.
_paho_logger = logging.getLogger("paho.mqtt.client")


def parse_broker(value: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (IPv6 as ``[::1]:1883``) into host and optional port."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not host:
        raise ConfigError(f"--mqtt {value!r}: expected HOST[:PORT]")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"--mqtt {value!r}: port must be 1-65535")
    return host, int(port_text)


class MqttLink:
    """A background connection to the broker with availability, discovery and acked events."""

    def __init__(self, settings: MqttConfig) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix, settings.device_id)
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._connected = False
        self._last_problem = ""
        self._ha_status = f"{settings.discovery_prefix}/status"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"peephole-{settings.device_id}",
            clean_session=True,
        )
        if _paho_logger.isEnabledFor(logging.DEBUG):
            client.enable_logger(_paho_logger)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        if settings.username:
            client.username_pw_set(settings.username, settings.password or None)
        if settings.tls:
            try:
                # tls_insecure_set alone only skips the host name check: the chain
                # would still have to verify, so "insecure" would accept nothing more.
                client.tls_set(
                    ca_certs=settings.ca_file or None,
                    certfile=settings.cert_file or None,
                    keyfile=settings.key_file or None,
                    cert_reqs=ssl.CERT_NONE if settings.tls_insecure else ssl.CERT_REQUIRED,
                )
            except (OSError, ValueError) as error:
                raise ConfigError(f"[mqtt] TLS setup failed: {error}") from None
            client.tls_insecure_set(settings.tls_insecure)
        client.reconnect_delay_set(settings.reconnect_min_delay, settings.reconnect_max_delay)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect in the background; failures are retried, never raised."""
        self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self._client.loop_start()

    def publish_event(self, topic: str, payload: str) -> int:
        """Queue one event at QoS 1, not retained; returns the mid its PUBACK will carry."""
        info = self._client.publish(topic, payload, qos=1, retain=False)
        return int(info.mid)

    def publish_state(self, topic: str, payload: str | bytes, qos: int = 1) -> None:
        """A state change (presence, snapshot): not retained, not kept in the outbox."""
        self._client.publish(topic, payload, qos=qos, retain=False)

    def acknowledged(self) -> list[int]:
        """Message ids the broker acknowledged since the last call."""
        mids = []
        while True:
            try:
                mids.append(self._acks.get_nowait())
            except queue.Empty:
                return mids

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (if connected), disconnect and stop the network thread.

        Without a connection the network thread may be inside a connect attempt
        to an unreachable host; it is not waited for (it is a daemon thread and
        gives up at its next check), so shutdown stays within its time budget.
        """
        if not self._connected:
            self._client.disconnect()
            return
        info = self._client.publish(self.topics.availability, OFFLINE, qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._connected:
            try:
                if info.is_published():
                    break
            except (RuntimeError, ValueError):
                break
            time.sleep(0.01)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._problem(f"MQTT broker {self._where()} refused the connection: {reason}")
            return
        self._connected = True
        self._last_problem = ""
        logger.info(f"connected to MQTT broker {self._where()}")
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        if self.settings.discovery:
            client.subscribe(self._ha_status, qos=1)
            self._send_discovery(client)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._problem(
            f"cannot connect to MQTT broker {self._where()} (unreachable, or TLS did not verify);"
            " retrying with backoff"
        )

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if was_connected and reason.is_failure:
            self._problem(f"lost MQTT broker {self._where()} ({reason}); reconnecting")

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        # Runs in paho's thread under its message lock: only hand the mid over.
        self._acks.put(mid)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self._ha_status and message.payload == ONLINE.encode():
            self._send_discovery(client)

    def _send_discovery(self, client: paho.Client) -> None:
        for topic, payload in discovery_messages(
            self.topics, self.settings.discovery_prefix, self.settings.snapshots
        ):
            client.publish(topic, payload, qos=1, retain=True)

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _problem(self, message: str) -> None:
        # Report each distinct problem once, not on every retry.
        if message != self._last_problem:
            self._last_problem = message
            logger.warning(message)
