"""One door: every part ``peephole run`` needs, assembled from the config, with its lifetime.

``Door.from_config`` opens the gallery, the outbox, the frame source, the
broker link and the publisher, and sets up what the site adds (gallery
replication, model rollout, pseudonyms); ``with door:`` closes them in the
reverse order (events still in flight get a few seconds to be acknowledged).
``run()`` runs the camera loop, and when a model deployed to the site arrives,
``use_model`` re-derives everything that depends on the model (threshold,
matcher, the pipeline's and replication's embedder) before the loop goes on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TextIO

from device import command_name
from device.config import Config
from device.identity.gallery import Gallery, name_key, people_count
from device.identity.matching import Matcher, resolve_threshold
from device.service.health import ModelInfo
from device.service.household import Household
from device.service.household_mqtt import HouseholdOverMqtt
from device.service.loop import CameraLoop, RunStats
from device.service.mqtt import MqttLink
from device.service.outbox import Outbox, OutboxLock
from device.service.publisher import EventPublisher
from device.service.replication import GalleryReplication
from device.service.rollout import ModelRollout
from device.service.sdnotify import SystemdNotifier
from device.service.topics import SiteTopics, Topics
from device.service.visit_recorder import VisitRecorder
from device.site.clock import HybridClock
from device.site.key import SiteKey
from device.site.model_choice import ModelChoice
from device.site.replica import SiteReplica
from device.vision.embedder import FaceEmbedder
from device.vision.pipeline import FacePipeline
from device.vision.sources import FrameSource, open_source

logger = logging.getLogger(__name__)

# SIGTERM must end the process within 5 s: up to 3 s of that go to flushing events,
# and up to 1 s to storing the visits still queued.
SHUTDOWN_FLUSH_SECONDS = 3.0
VISITS_FLUSH_SECONDS = 1.0


@dataclass(eq=False, kw_only=True)
class Door:
    """A door's parts and the loop over them. Build with :meth:`from_config`, use as ``with``."""

    config: Config
    models: ModelChoice
    pipeline: FacePipeline
    gallery: Gallery
    source: FrameSource
    publisher: EventPublisher
    notifier: SystemdNotifier
    stop: threading.Event
    replication: GalleryReplication | None
    rollout: ModelRollout | None
    visits: VisitRecorder | None
    # Naming commands from the broker and Home Assistant's people (None without a broker).
    household_mqtt: HouseholdOverMqtt | None = None
    cleanup: contextlib.ExitStack
    # Events the publisher still held when it closed (None while open).
    outbox_left: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.person_label = pseudonyms(self.config)
        self.threshold, self.matcher = self._recognition(self.models.embedder())

    @classmethod
    def from_config(
        cls,
        config: Config,
        models: ModelChoice | None = None,
        *,
        source: FrameSource | None = None,
        pipeline: FacePipeline | None = None,
        notifier: SystemdNotifier | None = None,
        out: TextIO | None = None,
        stop: threading.Event | None = None,
    ) -> Door:
        """Open everything the config names. ``source`` replaces ``[camera] source`` (a test's
        camera), ``out`` stdout for the event lines, ``stop`` ends ``run`` when set."""
        models = models or ModelChoice(config)
        stop = stop or threading.Event()
        mqtt = config.mqtt
        with contextlib.ExitStack() as cleanup:
            # Load the model first: a broken one is refused before any file is opened.
            embedder = models.embedder()
            pipeline = pipeline or FacePipeline.from_config(config, embedder)
            gallery = Gallery.open(config.gallery.resolved_path(), create=True)
            cleanup.callback(gallery.close)
            lock = OutboxLock(config.runtime.resolved_outbox())
            cleanup.callback(lock.release)
            outbox = Outbox.open(config.runtime.resolved_outbox())
            cleanup.callback(outbox.close)
            source = source or open_source(config.camera.source, config.camera, stop)
            cleanup.callback(source.close)
            names_on_broker = config.site.names_on_broker
            link = MqttLink(mqtt, names_on_broker=names_on_broker) if mqtt.brokers() else None
            publisher = EventPublisher(outbox, Topics(mqtt.topic_prefix, mqtt.device_id), link, out)
            visits = None
            if config.visits.enabled:
                visits_path = config.visits.resolved_path(config.gallery.resolved_path())
                visits = VisitRecorder(visits_path, config.visits)
            notifier = notifier or SystemdNotifier()
            if not config.runtime.watchdog:
                notifier.watchdog_interval = None
            cleanup.callback(notifier.close)
            door = cls(
                config=config,
                models=models,
                pipeline=pipeline,
                gallery=gallery,
                source=source,
                publisher=publisher,
                notifier=notifier,
                stop=stop,
                replication=site_replication(config, gallery, link, embedder),
                rollout=model_rollout(config, gallery, link),
                visits=visits,
                household_mqtt=(
                    HouseholdOverMqtt(
                        Household(config, models, pipeline), link, names_on_broker=names_on_broker
                    )
                    if link is not None
                    else None
                ),
                cleanup=cleanup.pop_all(),
            )
        return door

    def __enter__(self) -> Door:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Flush and disconnect the publisher (``outbox_left``: events it still holds), close all."""
        if self.visits is not None:
            self.visits.close(VISITS_FLUSH_SECONDS)
        if self.outbox_left is None:
            self.outbox_left = self.publisher.close(SHUTDOWN_FLUSH_SECONDS)
        self.cleanup.close()

    @property
    def embedder(self) -> FaceEmbedder:
        embedder = self.pipeline.embedder
        assert embedder is not None
        return embedder

    def use_model(self, embedder: FaceEmbedder) -> None:
        """Run ``embedder`` from now on: everything that depends on the model follows it."""
        if self.pipeline.embedder is not None and self.pipeline.embedder is not embedder:
            self.models.use(embedder)
        self.pipeline.embedder = embedder
        if self.replication is not None:
            self.replication.embedder = embedder
        self.threshold, self.matcher = self._recognition(embedder)

    def _recognition(self, embedder: FaceEmbedder) -> tuple[float, Matcher]:
        """The naming threshold for this model, and a matcher over its embeddings."""
        threshold = resolve_threshold(
            embedder.manifest.identification_threshold, self.config.model.threshold
        )
        matcher = Matcher.from_gallery(
            self.gallery, embedder.embedding_key, threshold, self.config.model.margin
        )
        return threshold, matcher

    def start(self) -> None:
        """Connect to the broker, resend the outbox's backlog, say what the door watches."""
        self.publisher.start()
        if self.visits is not None:
            self.visits.start()
        if self.household_mqtt is not None:
            self.household_mqtt.publish_people()
        warn_stale_people(self.gallery, self.embedder.embedding_key)
        people = len(self.matcher.people)
        brokers = self.config.mqtt.brokers()
        logger.info(
            f"watching {self.source.description}; {people_count(people)} enrolled"
            + ("" if people else f" (everyone is unknown: see '{command_name()} enroll --help')")
            + "; events to "
            + (f"mqtt://{', '.join(f'{h}:{p}' for h, p in brokers)} and " if brokers else "")
            + f"stdout; outbox {self.publisher.outbox.path} ({len(self.publisher.outbox)} waiting)"
        )

    def run(self, stop_after_frames: int | None = None) -> RunStats:
        """Watch until the source ends, ``stop`` is set or ``stop_after_frames`` frames passed."""
        total = RunStats()
        while True:
            loop = self.loop(stop_after_frames)
            stats = loop.run()
            total.add(stats)
            if loop.new_model is None:
                return total
            self.use_model(loop.new_model)
            if stop_after_frames is not None:
                stop_after_frames = max(1, stop_after_frames - stats.frames)

    def loop(self, stop_after_frames: int | None = None) -> CameraLoop:
        """The camera loop over this door's parts, with the model it runs now."""
        return CameraLoop(
            config=self.config,
            pipeline=self.pipeline,
            matcher=self.matcher,
            threshold=self.threshold,
            gallery=self.gallery,
            source=self.source,
            publisher=self.publisher,
            notifier=self.notifier,
            stop=self.stop,
            model=ModelInfo(file=self.models.name, embedding_key=self.embedder.embedding_key),
            replication=self.replication,
            rollout=self.rollout,
            person_label=self.person_label,
            stop_after_frames=stop_after_frames,
            visits=self.visits,
            household_mqtt=self.household_mqtt,
        )


def warn_stale_people(gallery: Gallery, embedding_key: str) -> None:
    """Say who cannot be recognised because their samples were made by another model."""
    stale = [s for s in gallery.summaries(embedding_key) if s.samples == 0]
    redo = [s.name for s in stale if s.crops_to_embed]
    lost = [s.name for s in stale if not s.crops_to_embed]
    if redo:
        logger.warning(f"not recognised until 'peephole gallery reembed': {', '.join(redo)}")
    if lost:
        logger.warning(f"not recognised until enrolled again (no stored crops): {', '.join(lost)}")


def site_replication(
    config: Config, gallery: Gallery, link: MqttLink | None, embedder: FaceEmbedder
) -> GalleryReplication | None:
    """Gallery replication when this door is on a site, has its key and a broker."""
    site = config.site
    if not site.id:
        return None
    if not site.key:
        logger.warning(
            f"[site] id {site.id!r} has no key: this door keeps its own gallery "
            "(copy the key 'peephole site init' printed into [site] key)"
        )
        return None
    if link is None:
        logger.warning(f"site {site.id!r} needs a broker ([mqtt] host or hosts)")
        return None
    key = SiteKey.from_text(site.key)
    replica = SiteReplica(gallery, key, HybridClock(config.mqtt.device_id))
    logger.info(f"site {site.id!r} (key {key.fingerprint}): sharing the gallery over the broker")
    topics = SiteTopics(config.mqtt.topic_prefix, site.id)
    return GalleryReplication(replica, key, topics, link, embedder)


def pseudonyms(config: Config) -> Callable[[str], str] | None:
    """Names to pseudonyms for events, where the site keeps names off the broker."""
    if config.site.names_on_broker or not config.site.key:
        return None
    key = SiteKey.from_text(config.site.key)
    return lambda name: key.pseudonym(name_key(name))


def model_rollout(config: Config, gallery: Gallery, link: MqttLink | None) -> ModelRollout | None:
    """Taking models deployed to the site, when it has a model signer and a broker."""
    site = config.site
    if not (site.id and site.key and site.model_signer and link is not None):
        return None
    return ModelRollout(
        topics=SiteTopics(config.mqtt.topic_prefix, site.id),
        signer_public=site.model_signer,
        link=link,
        gallery=gallery,
        models_dir=config.model.resolved_deployed_dir(),
        num_threads=config.model.num_threads,
    )
