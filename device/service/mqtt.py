"""The MQTT link (paho-mqtt 2.x): the only module that imports paho.

One :class:`MqttLink` owns the device's topics under ``<prefix>/<device_id>``:

- ``availability``: retained; ``online`` on every connect, ``offline`` on a
  clean stop and from the broker's last will when the device dies;
- events at QoS 1, never retained; every PUBACK is reported through
  :meth:`MqttLink.acknowledged` so the outbox can forget the event;
- Home Assistant's device discovery config (retained), sent on every connect,
  whenever Home Assistant announces ``online`` on ``<discovery_prefix>/status``
  and whenever the people it names change; per-entity configs an earlier
  version retained are migrated to it the way Home Assistant documents:
  ``{"migrate_discovery": true}`` on the old topic, the device config again,
  then an empty retained payload on the old topic (the entity keeps its id
  and history).

paho's network thread connects in the background and reconnects with
exponential backoff; messages published while disconnected wait in paho's
queue and go out, in order, after the next connect.

With several brokers (``[mqtt] hosts``, a bridged or clustered site) the link
moves on to the next one whenever the current broker goes away or cannot be
reached, round robin, each attempt after the same backoff. It stays one paho
client throughout: events not yet acknowledged keep their message ids and are
sent again (flagged DUP) to whichever broker comes next, so the outbox learns
of their PUBACK whatever broker gave it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from device.config import MqttConfig, parse_host_port
from device.errors import ConfigError
from device.service.discovery import (
    DiscoveryOptions,
    device_discovery,
    legacy_topics,
    node_id,
)
from device.service.topics import OFFLINE, ONLINE, Topics

logger = logging.getLogger(__name__)
# paho's own log (every packet) shows only with --verbose.
_paho_logger = logging.getLogger("paho.mqtt.client")


def parse_broker(value: str) -> tuple[str, int | None]:
    """``HOST[:PORT]`` (IPv6 as ``[::1]:1883``) into host and optional port."""
    return parse_host_port(value, "--mqtt")


def _authenticate(client: paho.Client, settings: MqttConfig) -> None:
    """The configured credentials and TLS on ``client``; ConfigError if TLS cannot be set up."""
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if not settings.tls:
        return
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


def _observer(settings: MqttConfig) -> paho.Client:
    """A plain client for a command: its own id, no last will, so it never speaks for a door."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    _authenticate(client, settings)
    return client


def _connected_observer(settings: MqttConfig) -> paho.Client:
    """An observer connected to the first broker that answers; ConfigError if none does."""
    problems = []
    for host, port in settings.brokers():
        client = _observer(settings)
        try:
            client.connect(host, port, settings.keepalive)
        except OSError as error:
            problems.append(f"{host}:{port}: {error}")
            continue
        client.loop_start()
        return client
    raise ConfigError(f"no MQTT broker reachable ({'; '.join(problems) or 'none configured'})")


def read_retained(
    settings: MqttConfig, topic_filters: list[str], wait: float
) -> list[tuple[str, bytes]]:
    """What the broker holds retained on ``topic_filters``, collected for ``wait`` seconds."""
    messages: list[tuple[str, bytes]] = []
    client = _connected_observer(settings)
    client.on_message = lambda c, u, m: messages.append((m.topic, bytes(m.payload)))
    client.subscribe([(topic, 1) for topic in topic_filters])
    time.sleep(wait)
    client.disconnect()
    client.loop_stop()
    return messages


def publish_retained(settings: MqttConfig, topic: str, payload: bytes, timeout: float) -> None:
    """Publish one retained message at QoS 1 and wait for the broker to acknowledge it."""
    client = _connected_observer(settings)
    try:
        info = client.publish(topic, payload, qos=1, retain=True)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise ConfigError(f"the broker did not acknowledge {topic} within {timeout:.0f} s")
    finally:
        client.disconnect()
        client.loop_stop()


MIGRATE_DISCOVERY = json.dumps({"migrate_discovery": True})


class MqttLink:
    """A background connection to the broker with availability, discovery and acked events.

    ``names_on_broker`` false keeps names out of discovery (no per-person
    sensors, no naming text entity).
    """

    def __init__(self, settings: MqttConfig, *, names_on_broker: bool = True) -> None:
        self.settings = settings
        self.topics = Topics(settings.topic_prefix, settings.device_id)
        self._ack_queues: list[queue.SimpleQueue[int]] = []
        self._handlers: dict[str, tuple[Callable[[str, bytes], None], bool]] = {}
        self._discovery = DiscoveryOptions(
            snapshots=settings.snapshots,
            commands=settings.commands,
            names_on_broker=names_on_broker,
        )
        self._legacy_filter = (
            f"{settings.discovery_prefix}/+/{node_id(settings.device_id)}/+/config"
        )
        self._legacy_topics = set(legacy_topics(settings.discovery_prefix, settings.device_id))
        self._brokers = settings.brokers()
        if not self._brokers:
            raise ConfigError("[mqtt] no broker configured (host or hosts)")
        self._index = 0
        self._connected = False
        self._stopping = False
        self._connections = 0
        # The mid of the last connect's SUBSCRIBE, and whether the broker acknowledged it.
        self._subscription = -1
        self._subscribed = False
        self._problems: set[str] = set()
        self._ha_status = f"{settings.discovery_prefix}/status"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"peephole-{settings.device_id}",
            clean_session=True,
        )
        if _paho_logger.isEnabledFor(logging.DEBUG):
            client.enable_logger(_paho_logger)
        client.will_set(self.topics.availability, OFFLINE, qos=1, retain=True)
        _authenticate(client, settings)
        client.reconnect_delay_set(settings.reconnect_min_delay, settings.reconnect_max_delay)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._client = client

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker acknowledged every subscription (commands arrive now)."""
        return self._connected and self._subscribed

    @property
    def connections(self) -> int:
        """How many times the link has connected (to any broker) so far."""
        return self._connections

    @property
    def broker(self) -> str:
        """``host:port`` of the broker in use (connected or being tried)."""
        return self._where()

    def start(self) -> None:
        """Connect in the background; failures are retried, never raised."""
        self._connect_to_current()
        self._client.loop_start()

    def publish_status(self, topic: str, payload: str) -> None:
        """The device's health: retained, so a late subscriber sees the latest at once.

        With several brokers ``online`` is asserted again with each report: a
        broker this device left without a DISCONNECT (a network split, not a
        dead broker) publishes the last will ``offline`` up to 1.5 keepalives
        later, and over a bridge or cluster that would overwrite the ``online``
        the device already gave its new broker. The next report heals it.
        """
        self._client.publish(topic, payload, qos=1, retain=True)
        if len(self._brokers) > 1:
            self._client.publish(self.topics.availability, ONLINE, qos=1, retain=True)

    def publish_event(self, topic: str, payload: str) -> int:
        """Queue one event at QoS 1, not retained; returns the mid its PUBACK will carry."""
        info = self._client.publish(topic, payload, qos=1, retain=False)
        return int(info.mid)

    def publish_record(self, topic: str, payload: bytes) -> int:
        """Queue one retained record at QoS 1; returns the mid its PUBACK will carry."""
        info = self._client.publish(topic, payload, qos=1, retain=True)
        return int(info.mid)

    def subscribe(
        self, topic_filter: str, handler: Callable[[str, bytes], None], *, retained: bool = True
    ) -> None:
        """Call ``handler(topic, payload)`` for every message on ``topic_filter``, from
        paho's thread (so it must only hand the message over). Subscribed at every
        connect, so the broker's retained messages arrive again after each one;
        ``retained=False`` drops those and takes only messages as they are sent.
        Call before :meth:`start`.
        """
        self._handlers[topic_filter] = (handler, retained)

    def update_people(self, people: tuple[str, ...]) -> None:
        """The names discovery offers per-person sensors for; sent again when they change."""
        if people == self._discovery.people:
            return
        self._discovery = dataclasses.replace(self._discovery, people=people)
        if self._connected and self.settings.discovery:
            self._send_discovery(self._client)

    def publish_retained(self, topic: str, payload: str | bytes) -> None:
        """A retained state (a person's last-seen time) at QoS 1, not kept in the outbox."""
        self._client.publish(topic, payload, qos=1, retain=True)

    def acknowledgements(self) -> queue.SimpleQueue[int]:
        """A queue that receives the mid of every PUBACK from now on. Call before :meth:`start`."""
        acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._ack_queues.append(acks)
        return acks

    def publish_state(self, topic: str, payload: str | bytes, qos: int = 1) -> None:
        """A state change (presence, snapshot): not retained, not kept in the outbox."""
        self._client.publish(topic, payload, qos=qos, retain=False)

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (if connected), disconnect and stop the network thread.

        Without a connection the network thread may be inside a connect attempt
        to an unreachable host; it is not waited for (it is a daemon thread and
        gives up at its next check), so shutdown stays within its time budget.
        """
        self._stopping = True
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
        self._connections += 1
        self._problems.clear()
        logger.info(f"connected to MQTT broker {self._where()}")
        client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        filters = [(topic_filter, 1) for topic_filter in self._handlers]
        if self.settings.discovery:
            self._send_discovery(client)
            filters += [(self._ha_status, 1), (self._legacy_filter, 1)]
        self._subscribed = False
        if filters:
            self._subscription = client.subscribe(filters)[1] or -1
        else:
            self._subscribed = True

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if mid == self._subscription:
            self._subscribed = True

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._problem(
            f"cannot connect to MQTT broker {self._where()} (unreachable, or TLS did not verify);"
            + (" trying the next broker" if len(self._brokers) > 1 else " retrying with backoff")
        )
        self._next_broker()

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        was_connected = self._connected
        self._connected = False
        if was_connected and reason.is_failure:
            self._problem(f"lost MQTT broker {self._where()} ({reason}); reconnecting")
        if reason.is_failure:
            self._next_broker()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        # Runs in paho's thread under its message lock: only hand the mid over.
        for acks in self._ack_queues:
            acks.put(mid)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if message.topic == self._ha_status and message.payload == ONLINE.encode():
            self._send_discovery(client)
            return
        if message.topic in self._legacy_topics:
            self._migrate(client, message.topic, bytes(message.payload))
            return
        for topic_filter, (handler, retained) in self._handlers.items():
            if paho.topic_matches_sub(topic_filter, message.topic):
                if message.retain and not retained:
                    logger.warning(f"ignored a retained message on {message.topic}")
                    continue
                handler(message.topic, bytes(message.payload))

    def _send_discovery(self, client: paho.Client) -> None:
        topic, payload = device_discovery(
            self.topics, self.settings.discovery_prefix, self._discovery
        )
        client.publish(topic, payload, qos=1, retain=True)

    def _migrate(self, client: paho.Client, topic: str, payload: bytes) -> None:
        """Move one entity an earlier version discovered on its own topic into the device
        config: Home Assistant keeps it (its id, its history) across the move."""
        if not payload or payload == MIGRATE_DISCOVERY.encode():
            return  # cleared already, or this link's own step below
        logger.info(f"moving Home Assistant entity {topic} into the device discovery config")
        client.publish(topic, MIGRATE_DISCOVERY, qos=1, retain=True)
        self._send_discovery(client)
        client.publish(topic, "", qos=1, retain=True)

    def _next_broker(self) -> None:
        """From paho's thread, after a lost or failed connection: aim the next attempt elsewhere.

        ``connect_async`` only records the address (the socket is already
        closed); paho's loop makes the attempt itself, after its backoff wait.
        """
        if self._stopping or len(self._brokers) < 2:
            return
        self._index = (self._index + 1) % len(self._brokers)
        logger.info(f"next MQTT broker: {self._where()}")
        self._connect_to_current()

    def _connect_to_current(self) -> None:
        host, port = self._brokers[self._index]
        self._client.connect_async(host, port, self.settings.keepalive)

    def _where(self) -> str:
        host, port = self._brokers[self._index]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def _problem(self, message: str) -> None:
        # Report each distinct problem once until the next connect, not on every retry.
        if message not in self._problems:
            self._problems.add(message)
            logger.warning(message)
