"""Where events go: the durable outbox first, then stdout as a JSON line, then the broker.

An event is committed to the outbox before anything else happens to it, and
removed only when the broker's PUBACK for it comes back. At start every event
still in the outbox is handed to the broker again, oldest first. Without a
broker (none configured, or unreachable) events simply stay in the outbox and
the JSON lines on stdout are what the user sees.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from device.service.events import VisitorEvent
from device.service.mqtt import MqttLink
from device.service.outbox import Outbox, OutboxEntry, OutboxError
from device.service.topics import Topics

logger = logging.getLogger(__name__)


class EventPublisher:
    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        link: MqttLink | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.outbox = outbox
        self.topics = topics
        self.link = link
        self.out = out or sys.stdout
        self._inflight: dict[int, str] = {}
        self._acks = link.acknowledgements() if link is not None else None

    def start(self) -> int:
        """Start the broker link and resend what the outbox still holds; returns that count."""
        if self.link is None:
            return 0
        self.link.start()
        backlog = self.outbox.pending()
        for entry in backlog:
            self._send(entry)
        return len(backlog)

    def publish(self, event: VisitorEvent) -> None:
        topic = self.topics.event(event.event)
        payload = event.to_json()
        try:
            self.outbox.add(event.event_id, topic, payload)
        except OutboxError as error:
            # Still announce it; it just cannot be kept for a later redelivery.
            logger.error(str(error))
        print(payload, file=self.out, flush=True)
        if self.link is not None:
            self._send(OutboxEntry(0, event.event_id, topic, payload, time.time()))

    def state(self, topic: str, payload: str | bytes) -> None:
        """Presence and snapshots: live state, published only while a broker is connected."""
        if self.link is not None and self.link.connected:
            self.link.publish_state(topic, payload)

    def status(self, payload: str) -> None:
        """The retained health report: published only while a broker is connected."""
        if self.link is not None and self.link.connected:
            self.link.publish_status(self.topics.status, payload)

    @property
    def connections(self) -> int:
        """How often the broker link has connected: a change means a (re)connect."""
        return self.link.connections if self.link is not None else 0

    @property
    def broker(self) -> str | None:
        """``host:port`` of the connected broker, or None."""
        return self.link.broker if self.link is not None and self.link.connected else None

    def poll(self) -> None:
        """Forget every event the broker acknowledged."""
        while self._acks is not None and not self._acks.empty():
            event_id = self._inflight.pop(self._acks.get_nowait(), None)
            if event_id is not None:
                try:
                    self.outbox.remove(event_id)
                except OutboxError as error:
                    logger.error(str(error))

    def flush(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the broker to acknowledge what is in flight."""
        deadline = time.monotonic() + timeout
        while self.link is not None and self._inflight and time.monotonic() < deadline:
            if not self.link.connected:
                break
            self.poll()
            time.sleep(0.01)
        self.poll()

    def close(self, timeout: float = 3.0) -> int:
        """Flush, publish ``offline``, disconnect, close the outbox; returns the events left in it."""
        started = time.monotonic()
        self.flush(timeout * 2 / 3)
        if self.link is not None:
            self.link.stop(max(0.1, timeout - (time.monotonic() - started)))
        self.poll()
        left = len(self.outbox)
        self.outbox.close()
        return left

    def _send(self, entry: OutboxEntry) -> None:
        assert self.link is not None
        mid = self.link.publish_event(entry.topic, entry.payload)
        self._inflight[mid] = entry.event_id
