"""The camera loop: frames -> faces -> tracks -> one identity per visit -> events.

Per frame: detect (or skip an unchanged doorstep, or follow the faces of the
last frame: ``FaceFollower``), gate, align and embed (``FacePipeline``), link faces to
tracks and decide identities (``VisitorTracker``), announce each decided visit
once (``Cooldown``), and hand events to the ``EventPublisher`` (outbox, stdout,
broker). The frame loop itself feeds the systemd watchdog, so a camera that
hangs stops the pings, and publishes the retained health report
(``device/service/health.py``) at every broker connect and every ``[mqtt]
status_interval`` seconds. On a site, gallery replication
(``device/service/replication.py``) runs with each gallery refresh (every
``[gallery] refresh_interval`` seconds), and so does model rollout
(``device/service/rollout.py``): a deployed model ends the loop with
``new_model`` set, for the door (``device/service/door.py``) to run it.
``stop`` (set by SIGTERM/SIGINT) ends the loop after the current frame.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from device.config import Config
from device.errors import PeepholeError
from device.identity.gallery import Gallery, people_count
from device.identity.matching import Matcher
from device.service.discovery import peephole_version
from device.service.events import VisitorEvent, new_visit_id, visitor_event, visitor_left_event
from device.service.health import DeviceStatus, ModelInfo, iso_time, write_private
from device.service.household_mqtt import HouseholdOverMqtt
from device.service.publisher import EventPublisher
from device.service.replication import GalleryReplication
from device.service.rollout import ModelRollout
from device.service.sdnotify import SystemdNotifier
from device.service.topics import PRESENCE_OFF, PRESENCE_ON
from device.service.tracker import Box, Cooldown, Track, TrackerStep, VisitorTracker
from device.service.visit_recorder import VisitDraft, VisitRecorder, context_region
from device.vision.embedder import FaceEmbedder
from device.vision.follow import FaceFollower
from device.vision.pipeline import FacePipeline
from device.vision.sources import Frame, FrameSource

logger = logging.getLogger(__name__)


# Seconds between the STATUS= lines systemd shows (fps, faces tracked, events).
SYSTEMD_STATUS_INTERVAL = 5.0
SNAPSHOT_JPEG_QUALITY = 85


@dataclass
class RunStats:
    frames: int = 0
    seconds: float = 0.0
    events: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    known_latencies_ms: list[float] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def add(self, other: RunStats) -> None:
        """Count another pass of the loop in (a door that switched models runs several)."""
        self.frames += other.frames
        self.seconds += other.seconds
        self.events += other.events
        self.latencies_ms += other.latencies_ms
        self.known_latencies_ms += other.known_latencies_ms

    def summary(self) -> str:
        text = f"{self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} fps), {self.events} events"
        for label, values in (("visitor", self.latencies_ms), ("known", self.known_latencies_ms)):
            if values:
                text += f"; {label} latency {_median_p95(values)}"
        return text


def _median_p95(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"median {statistics.median(ordered):.1f} ms, p95 {p95:.1f} ms"


class CameraLoop:
    """One pass of the frame loop over a door's parts, with one model (``device.service.door``)."""

    def __init__(
        self,
        *,
        config: Config,
        pipeline: FacePipeline,
        matcher: Matcher,
        threshold: float,
        gallery: Gallery,
        source: FrameSource,
        publisher: EventPublisher,
        notifier: SystemdNotifier,
        stop: threading.Event,
        model: ModelInfo,
        replication: GalleryReplication | None = None,
        rollout: ModelRollout | None = None,
        person_label: Callable[[str], str] | None = None,
        stop_after_frames: int | None = None,
        visits: VisitRecorder | None = None,
        household_mqtt: HouseholdOverMqtt | None = None,
    ) -> None:
        self.config = config
        self.pipeline = pipeline
        # The motion gate and tracking without redetection around the pipeline.
        self.follower = FaceFollower(pipeline, config.motion, config.tracking)
        self.matcher = matcher
        self.gallery = gallery
        self.source = source
        self.publisher = publisher
        # Without the face mesh there are no landmarks to judge liveness from.
        liveness = config.liveness if config.detector.landmarks == "mesh" else None
        self.visits = visits
        self.tracker = VisitorTracker(
            matcher.identify,
            config.runtime,
            threshold=threshold,
            liveness=liveness,
            keep_faces=config.visits.crops if visits is not None else 0,
        )
        self.cooldown = Cooldown(config.runtime.cooldown, same_person=threshold)
        self.device_id = config.mqtt.device_id
        self.notifier = notifier
        self.stop = stop
        self.model = model
        self.replication = replication
        self.rollout = rollout
        # On a site that keeps names off the broker: a person's name to their pseudonym.
        self.person_label = person_label
        self.stop_after_frames = stop_after_frames
        # Naming commands from the broker, run between frames; people for Home Assistant.
        self.household_mqtt = household_mqtt
        # Set when a model deployed to the site was installed: the loop ends so
        # the door can start it again with this embedder.
        self.new_model: FaceEmbedder | None = None
        self.stats = RunStats()
        # Announced tracks: their visit ids.
        self._announced: dict[int, str] = {}
        self._snapshots: dict[int, bytes] = {}
        # Each visit's frame at its best face so far, with the face's box there (the recorder
        # cuts the doorstep out of it: nothing is copied on the frame path).
        self._contexts: dict[int, tuple[np.ndarray, Box]] = {}
        self._present = False
        self._gallery_warning = ""
        self._last_frame: float | None = None
        self._health_fps = 0.0

    def run(self) -> RunStats:
        started = time.monotonic()
        last_status = last_refresh = last_health = started
        frames_at_status = frames_at_health = connections = 0
        self.notifier.ready(f"watching {self.source.description}")
        while not self.stop.is_set() and self.new_model is None:
            if self.stop_after_frames is not None and self.stats.frames >= self.stop_after_frames:
                break
            frame = self.source.read()
            if frame is None:
                break
            self.process(frame)
            self._last_frame = time.time()
            self.notifier.watchdog()
            now = time.monotonic()
            if self.household_mqtt is not None and self.household_mqtt.step():
                # A naming from the broker: the door knows the person from the next frame.
                last_refresh = now
                self._refresh_gallery()
            since_health = now - last_health
            if since_health >= self.config.mqtt.status_interval:
                self._health_fps = (self.stats.frames - frames_at_health) / since_health
                last_health, frames_at_health = now, self.stats.frames
                self._report_health()
            elif self.publisher.connections != connections:
                # Just (re)connected, maybe to another broker: say so at once.
                if since_health >= 1.0:
                    self._health_fps = (self.stats.frames - frames_at_health) / since_health
                self._report_health()
            connections = self.publisher.connections
            if now - last_refresh >= self.config.gallery.refresh_interval:
                last_refresh = now
                self._refresh_gallery()
            if now - last_status >= SYSTEMD_STATUS_INTERVAL:
                fps = (self.stats.frames - frames_at_status) / (now - last_status)
                self.notifier.status(
                    f"{fps:.1f} fps, {len(self.tracker.tracks)} faces tracked, "
                    f"{self.stats.events} events"
                )
                self._write_status(fps)
                last_status, frames_at_status = now, self.stats.frames
        self._handle(self.tracker.finish())
        self._update_presence()
        self.stats.seconds = time.monotonic() - started
        if self.new_model is None:
            self.notifier.status(self.stats.summary())
            self.notifier.stopping()
        return self.stats

    def process(self, frame: Frame) -> None:
        followed = bool(self.tracker.tracks)
        faces = self.follower.analyse(frame.rgb, followed, detect_rgb=frame.detect_rgb)
        step = self.tracker.update(faces, frame.captured)
        if self.config.mqtt.snapshots:
            self._keep_snapshots(frame)
        if self.visits is not None:
            self._keep_contexts(frame)
        self._handle(step)
        if len(self._contexts) > len(self.tracker.tracks):
            # Tracks dropped without a decision (a passing false detection) leave theirs.
            tracked = {track.track_id for track in self.tracker.tracks}
            self._contexts = {i: c for i, c in self._contexts.items() if i in tracked}
        self._update_presence()
        self.publisher.poll()
        self.stats.frames += 1

    def _handle(self, step: TrackerStep) -> None:
        for track in step.decided:
            if not self.cooldown.allow(track, time.monotonic()):
                continue
            visit_id = new_visit_id()
            event = visitor_event(track, self.device_id, time.monotonic(), visit_id)
            self.publisher.publish(self._labelled(event))
            self._announced[track.track_id] = visit_id
            self._keep_visit(track, visit_id)
            self.stats.events += 1
            if event.latency_ms is not None:
                self.stats.latencies_ms.append(event.latency_ms)
                if event.known:
                    self.stats.known_latencies_ms.append(event.latency_ms)
            if event.known and event.person is not None:
                self._touch(event.person)
            snapshot = self._snapshots.get(track.track_id)
            if snapshot is not None:
                self.publisher.state(self.publisher.topics.snapshot, snapshot)
        for track in step.ended:
            self._snapshots.pop(track.track_id, None)
            announced = self._announced.pop(track.track_id, None)
            if announced is not None:
                self._keep_visit(track, announced)
                left = visitor_left_event(track, self.device_id, announced)
                self.publisher.publish(self._labelled(left))
                self.stats.events += 1
            self._contexts.pop(track.track_id, None)

    def _keep_visit(self, track: Track, visit_id: str) -> None:
        """Hand the visit as it stands to the recorder (it encodes and stores it apart)."""
        if self.visits is None or track.decision is None:
            return
        to_wall = time.time() - time.monotonic()
        self.visits.keep(
            VisitDraft(
                visit_id=visit_id,
                door=self.device_id,
                embedding_key=self.model.embedding_key,
                track_id=track.track_id,
                decision=track.decision,
                faces=tuple(track.best_faces),
                first_seen=track.first_captured + to_wall,
                last_seen=track.last_captured + to_wall,
                context=self._contexts.get(track.track_id),
            )
        )

    def _labelled(self, event: VisitorEvent) -> VisitorEvent:
        """The event as it leaves the door: with the person's pseudonym where names stay home."""
        if self.person_label is None or event.person is None:
            return event
        return dataclasses.replace(event, person=self.person_label(event.person))

    def health(self) -> DeviceStatus:
        """The health report as of now (the outbox is counted afresh)."""
        return DeviceStatus(
            device_id=self.device_id,
            version=peephole_version(),
            model_file=self.model.file,
            embedding_key=self.model.embedding_key[:12],
            gallery_generation=self.matcher.generation,
            people=len(self.matcher.people),
            fps=round(self._health_fps, 2),
            last_frame=iso_time(self._last_frame) if self._last_frame is not None else None,
            outbox_backlog=len(self.publisher.outbox),
            broker=self.publisher.broker,
            status_interval=self.config.mqtt.status_interval,
            time=iso_time(time.time()),
            site=self.replication.topics.site_id if self.replication else "",
            site_key=self.replication.key.fingerprint if self.replication else "",
            site_records_refused=self.replication.refused if self.replication else 0,
            model_refused=self.rollout.refused if self.rollout else "",
        )

    def _report_health(self) -> None:
        try:
            report = self.health()
        except (PeepholeError, sqlite3.Error) as error:
            self._warn_gallery(f"cannot build the status report: {error}")
            return
        self.publisher.status(report.to_json())

    def _write_status(self, fps: float) -> None:
        """The health report, with the last few seconds' frame rate, for the web page."""
        try:
            report = dataclasses.replace(self.health(), fps=round(fps, 2))
            write_private(self.config.runtime.resolved_status(), report.to_json())
        except (PeepholeError, sqlite3.Error, OSError) as error:
            self._warn_gallery(f"cannot write the status file: {error}")

    def _keep_contexts(self, frame: Frame) -> None:
        for track in self.tracker.tracks:
            if track.improved:
                self._contexts[track.track_id] = (frame.rgb, track.box)

    def _keep_snapshots(self, frame: Frame) -> None:
        for track in self.tracker.tracks:
            if track.improved and track.track_id not in self._announced:
                self._snapshots[track.track_id] = encode_snapshot(
                    frame.rgb, track, SNAPSHOT_JPEG_QUALITY
                )

    def _update_presence(self) -> None:
        present = self.tracker.visitors_present
        if present != self._present:
            self._present = present
            self.publisher.state(
                self.publisher.topics.presence, PRESENCE_ON if present else PRESENCE_OFF
            )

    def _touch(self, person: str) -> None:
        try:
            self.gallery.touch_last_seen(person, time.time())
        except PeepholeError as error:
            self._warn_gallery(f"cannot record last_seen in the gallery: {error}")
            return
        if self.household_mqtt is not None:
            self.household_mqtt.publish_people()

    def _refresh_gallery(self) -> None:
        try:
            if self.replication is not None:
                self.replication.step()
            if self.rollout is not None and self.pipeline.embedder is not None:
                self.new_model = self.rollout.step(self.pipeline.embedder.sha256)
            if self.matcher.refresh():
                logger.info(f"gallery changed: {people_count(len(self.matcher.people))} enrolled")
                if self.household_mqtt is not None:
                    self.household_mqtt.publish_people()
        except PeepholeError as error:
            self._warn_gallery(f"cannot reload the gallery: {error}")

    def _warn_gallery(self, message: str) -> None:
        if message != self._gallery_warning:
            self._gallery_warning = message
            logger.warning(message)


def encode_snapshot(rgb: np.ndarray, track: Track, quality: int) -> bytes:
    """A JPEG of the frame around the track's face (the face and some context)."""
    crop = cv2.cvtColor(context_region(rgb, track.box), cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return bytes(data) if ok else b""
