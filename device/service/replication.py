"""Gallery replication: this door's gallery kept in step with its site over the broker.

Every person is one retained record at QoS 1 on ``<prefix>/site/<id>/people/
<record id>``, sealed with the site key (device/site/). The broker keeps the
latest record of each person, removals included, so a door that connects, for
the first time or after days away, receives the whole site's gallery at once
and keeps only what is newer than its own (device/site/replica.py).

:meth:`GalleryReplication.step` runs in the camera loop's thread, which owns
the gallery: paho's thread only queues what arrives.
"""

from __future__ import annotations

import logging
import queue

from device.identity.enroll import embed_missing_crops
from device.service.mqtt import MqttLink
from device.service.topics import SiteTopics
from device.site.clock import Stamp
from device.site.key import SealError, SiteKey
from device.site.records import RecordError, decode_record, encode_record
from device.site.replica import Applied, SiteReplica
from device.vision.embedder import FaceEmbedder

logger = logging.getLogger(__name__)


class GalleryReplication:
    def __init__(
        self,
        replica: SiteReplica,
        key: SiteKey,
        topics: SiteTopics,
        link: MqttLink,
        embedder: FaceEmbedder,
    ) -> None:
        self.replica = replica
        self.embedder = embedder
        self.key = key
        self.topics = topics
        self.link = link
        self._incoming: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._acks = link.acknowledgements()
        self._inflight: dict[int, tuple[str, Stamp]] = {}
        self._generation: int | None = None
        self._send_pending = True
        self._reported = False
        self.refused = 0
        link.subscribe(topics.people, self._received)

    def _received(self, topic: str, payload: bytes) -> None:
        self._incoming.put((topic, payload))

    def step(self) -> None:
        """Stamp local changes, apply what arrived, send what the broker lacks."""
        gallery = self.replica.gallery
        # Read before anything is applied: a change another process makes meanwhile
        # must still be seen as new next time (what is applied here is recognised
        # as not local by its digest).
        generation = gallery.generation()
        if generation != self._generation and self.replica.stamp_local_changes():
            self._send_pending = True
        self._generation = generation
        changed = False
        while not self._incoming.empty():
            result = self._apply(*self._incoming.get_nowait())
            if result is not None:
                changed |= bool(result.change)
                self._send_pending |= result.resend
        if changed:
            embed_missing_crops(gallery, self.embedder)
        while not self._acks.empty():
            sent = self._inflight.pop(self._acks.get_nowait(), None)
            if sent is not None:
                self.replica.mark_sent(*sent)
        if self._send_pending and self.link.connected:
            self._send_unsent()

    def _apply(self, topic: str, payload: bytes) -> Applied | None:
        record_id = topic.rsplit("/", 1)[-1]
        try:
            record = decode_record(self.key.open(payload, topic), record_id)
            result = self.replica.apply(record)
        except (SealError, RecordError) as error:
            self._refuse(str(error))
            # Where this door holds the person, its own copy replaces the broker's.
            self._send_pending |= self.replica.resend(record_id)
            return None
        if result.change:
            origin = record.stamp.origin
            who = record.person.name if record.person is not None else f"record {record_id[:8]}"
            logger.info(f"site: {who} {result.change} (change made on door {origin})")
        return result

    def _send_unsent(self) -> None:
        waiting = set(self._inflight.values())
        for record in self.replica.unsent():
            if (record.record_id, record.stamp) in waiting:
                continue
            topic = self.topics.person(record.record_id)
            sealed = self.key.seal(encode_record(record), topic)
            mid = self.link.publish_record(topic, sealed)
            self._inflight[mid] = (record.record_id, record.stamp)
        self._send_pending = False

    def _refuse(self, reason: str) -> None:
        """Count every refused record (the health report shows it); warn about the first only.

        A door given another site's key would otherwise warn about every record
        of the site at every connect.
        """
        self.refused += 1
        if self._reported:
            logger.debug(f"site record refused: {reason}")
            return
        self._reported = True
        logger.warning(
            f"site record refused: {reason}; later refusals are counted in the status "
            "report (site_records_refused), not logged"
        )
