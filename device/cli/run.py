"""``peephole run``: the camera loop as a command and a systemd service."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import click

from device.cli.app import AppContext, pass_app
from device.config import Config
from device.identity.gallery import Gallery, name_key
from device.identity.matching import Matcher, resolve_threshold
from device.service.health import ModelInfo
from device.service.loop import CameraLoop, LoopOptions, tracker_options
from device.service.mqtt import MqttLink, parse_broker
from device.service.outbox import Outbox
from device.service.publisher import EventPublisher
from device.service.replication import GalleryReplication
from device.service.rollout import ModelRollout
from device.service.sdnotify import SystemdNotifier
from device.service.topics import SiteTopics, Topics
from device.service.tracker import Cooldown, VisitorTracker
from device.site.clock import HybridClock
from device.site.key import SiteKey
from device.site.model_store import stored_model
from device.site.replica import SiteReplica
from device.vision.embedder import FaceEmbedder
from device.vision.sources import SourceOptions, open_source

logger = logging.getLogger(__name__)

# SIGTERM must end the process within 5 s: up to 3 s of that go to flushing events.
SHUTDOWN_FLUSH_SECONDS = 3.0


def apply_overrides(
    config: Config,
    source: str | None,
    broker: str | None,
    device_id: str | None,
    realtime: bool | None,
    outbox: Path | None,
) -> None:
    if source is not None:
        config.camera.source = source
    if broker is not None:
        host, port = parse_broker(broker)
        config.mqtt.hosts = []
        config.mqtt.host = host
        if port is not None:
            config.mqtt.port = port
    if device_id is not None:
        config.mqtt.device_id = device_id
    if realtime is not None:
        config.camera.realtime = realtime
    if outbox is not None:
        config.runtime.outbox_path = str(outbox)


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT end the loop after the current frame; a second one exits at once."""

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def warn_stale_people(gallery: Gallery, embedding_key: str) -> None:
    """Say who cannot be recognised because their samples were made by another model."""
    stale = [s for s in gallery.summaries(embedding_key) if s.samples == 0]
    redo = [s.name for s in stale if s.crops_to_embed]
    lost = [s.name for s in stale if not s.crops_to_embed]
    if redo:
        logger.warning(f"not recognised until 'peephole gallery reembed': {', '.join(redo)}")
    if lost:
        logger.warning(f"not recognised until enrolled again (no stored crops): {', '.join(lost)}")


def recognition(config: Config, gallery: Gallery, embedder: FaceEmbedder) -> tuple[float, Matcher]:
    """The identification threshold for this model, and a matcher over its embeddings."""
    threshold = resolve_threshold(
        embedder.manifest.identification_threshold, config.model.threshold
    )
    return threshold, Matcher.from_gallery(
        gallery, embedder.embedding_key, threshold, config.model.margin
    )


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


@click.command()
@click.option("--source", help="picamera2, a camera index, a URL, a video file or an image folder.")
@click.option("--mqtt", "broker", metavar="HOST[:PORT]", help="MQTT broker (overrides config).")
@click.option("--device-id", help="Device id in MQTT topics (overrides config).")
@click.option("--outbox", type=click.Path(dir_okay=False, path_type=Path), help="Outbox database.")
@click.option(
    "--realtime/--fast",
    default=None,
    help="Pace video files to their frame rate, or process them as fast as possible (default).",
)
@click.option(
    "--stop-after-frames", type=click.IntRange(min=1), help="Stop after this many frames."
)
@pass_app
def run(
    app: AppContext,
    source: str | None,
    broker: str | None,
    device_id: str | None,
    outbox: Path | None,
    realtime: bool | None,
    stop_after_frames: int | None,
) -> None:
    """Watch the door: recognise visitors and publish events (stdout and MQTT)."""
    config = app.config
    apply_overrides(config, source, broker, device_id, realtime, outbox)
    settings = config.mqtt
    settings.validate()  # again: --mqtt and --device-id may have changed it
    stop = threading.Event()
    install_stop_handlers(stop)

    pipeline = app.pipeline()
    embedder = app.embedder()
    with contextlib.ExitStack() as cleanup:
        gallery = Gallery.open(app.gallery_path, create=True)
        cleanup.callback(gallery.close)
        store = Outbox.open(config.runtime.resolved_outbox())
        cleanup.callback(store.close)
        camera = config.camera
        frames = open_source(
            camera.source,
            SourceOptions(
                width=camera.width, height=camera.height, fps=camera.fps, realtime=camera.realtime
            ),
            stop,
        )
        cleanup.callback(frames.close)
        link = MqttLink(settings) if settings.brokers() else None
        publisher = EventPublisher(store, Topics(settings.topic_prefix, settings.device_id), link)
        replication = site_replication(config, gallery, link, embedder)
        rollout = model_rollout(config, gallery, link)
        person_label = pseudonyms(config)
        notifier = SystemdNotifier()
        if not config.runtime.watchdog:
            notifier.watchdog_interval = None
        cleanup.callback(notifier.close)
        backlog = publisher.start()
        warn_stale_people(gallery, embedder.embedding_key)
        threshold, matcher = recognition(config, gallery, embedder)
        logger.info(
            f"watching {frames.description}; {len(matcher.people)} people enrolled"
            + ("" if matcher.people else " (everyone is unknown: see 'peephole enroll --help')")
            + "; events to "
            + (
                f"mqtt://{', '.join(f'{h}:{p}' for h, p in settings.brokers())} and "
                if link
                else ""
            )
            + f"stdout; outbox {store.path} ({backlog} waiting)"
        )
        try:
            while True:
                loop = CameraLoop(
                    pipeline=pipeline,
                    matcher=matcher,
                    gallery=gallery,
                    source=frames,
                    publisher=publisher,
                    tracker=VisitorTracker(matcher.identify, tracker_options(config, threshold)),
                    cooldown=Cooldown(config.runtime.cooldown, same_person=threshold),
                    device_id=settings.device_id,
                    notifier=notifier,
                    stop=stop,
                    options=LoopOptions(
                        stop_after_frames=stop_after_frames,
                        snapshots=settings.snapshots,
                        health_interval=settings.status_interval,
                    ),
                    model=ModelInfo(file=app.model_name, embedding_key=embedder.embedding_key),
                    replication=replication,
                    rollout=rollout,
                    person_label=person_label,
                )
                stats = loop.run()
                if loop.new_model is None:
                    break
                embedder = loop.new_model
                deployed_dir = config.model.resolved_deployed_dir()
                app.use_model(embedder, stored_model(deployed_dir, embedder.sha256))
                if replication is not None:
                    replication.embedder = embedder
                threshold, matcher = recognition(config, gallery, embedder)
                if stop_after_frames is not None:
                    stop_after_frames = max(1, stop_after_frames - stats.frames)
        finally:
            waiting = publisher.close(SHUTDOWN_FLUSH_SECONDS)
        logger.info(stats.summary() + (f"; {waiting} events wait in the outbox" if waiting else ""))
