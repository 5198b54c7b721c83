"""Visitor tracking: faces linked across frames, evidence gathered per track, one identity per visit.

Faces are linked to tracks by box overlap (IoU), falling back to centre
distance for a face that moved fast. Each track collects the embeddings of its
accepted faces; its identity is decided once, as early as the evidence is
convincing:

- **known** as soon as at least ``min_frames`` embeddings were gathered, their
  normalised mean matches a person, and at least half of the single frames
  agree with that person;
- **unknown** as soon as ``min_frames`` embeddings leave no doubt (the best
  similarity of their mean is below ``unknown_below`` and no frame named
  anyone), or once ``max_frames`` embeddings did not name anyone, or the face
  was seen ``unknown_after_frames`` times without enough good frames, or the
  track ended undecided after at least ``min_hits`` sightings.

Shorter tracks (a passing false detection) are dropped without a decision.

With liveness on, each track also gathers liveness evidence from its aligned
crops and face meshes (``device.vision.liveness``); a decided track is handed on only once its
verdict is final (live, or a full window of frames, or the track ended), and
with ``require_live`` a known person without a ``live`` verdict is handed on
as unknown with the reason ``liveness``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

import numpy as np

from device.config import LivenessConfig, RuntimeConfig
from device.vision.detector import Detection
from device.vision.liveness import Liveness, LivenessEvidence
from device.vision.quality import QualityReport

logger = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


class IdentityMatch(Protocol):
    """What a matcher answers for one embedding (device.identity.matching.Match fits)."""

    @property
    def person(self) -> str | None: ...

    @property
    def similarity(self) -> float: ...

    @property
    def margin(self) -> float: ...

    @property
    def known(self) -> bool: ...

    @property
    def candidate(self) -> str | None:
        """The closest person, named or not; None when nobody is enrolled."""
        ...


Identify = Callable[[np.ndarray], IdentityMatch]


class Observation(Protocol):
    """One analysed face (device.vision.pipeline.FaceAnalysis fits)."""

    @property
    def detection(self) -> Detection: ...

    @property
    def quality(self) -> QualityReport: ...

    @property
    def embedding(self) -> np.ndarray | None: ...

    @property
    def crop(self) -> np.ndarray: ...

    @property
    def mesh(self) -> np.ndarray | None: ...


class Outcome(StrEnum):
    """What a decision is, so an automation can tell a stranger from a face not seen well."""

    KNOWN = "known"
    # Judged on good frames: nobody enrolled looks like this.
    STRANGER = "stranger"
    # Never a face good enough to judge (turned away, too small, dark, blurred).
    NOT_SEEN_WELL = "not_seen_well"
    # A good face, but nobody is enrolled (for this model) to compare it with.
    NOBODY_ENROLLED = "nobody_enrolled"
    # It matched a person, but [liveness] require = true and the visit was not live.
    NOT_LIVE = "not_live"


# Why a visit whose faces matched someone was not announced as them.
LIVENESS_NOT_LIVE = "liveness"
FRAMES_DISAGREE = "frames"


@dataclass(frozen=True)
class Decision:
    """One visit's identity; embeddings stay in the track, never in the decision."""

    person: str | None
    known: bool
    similarity: float | None
    margin: float | None
    frames_used: int
    quality: float
    liveness: Liveness | None = None
    # Why a match was not announced as known (LIVENESS_NOT_LIVE, FRAMES_DISAGREE), or None.
    reason: str | None = None
    outcome: Outcome = Outcome.STRANGER


@dataclass(frozen=True)
class KeptFace:
    quality: float
    crop: np.ndarray = field(repr=False)
    report: QualityReport = field(repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)


# Faces this similar (cosine) are the same look of a visitor: only the better one is kept.
SAME_LOOK = 0.95


@dataclass
class Track:
    track_id: int
    box: Box
    first_captured: float
    last_captured: float
    hits: int = 1
    missed: int = 0
    embeddings: list[np.ndarray] = field(default_factory=list, repr=False)
    qualities: list[float] = field(default_factory=list)
    votes: Counter[str] = field(default_factory=Counter)
    best_quality: float = -1.0
    # Whether this frame gave the track its best face so far (a snapshot moment).
    improved: bool = False
    decision: Decision | None = None
    liveness: LivenessEvidence | None = None
    # The visit's best faces (``keep_faces`` of them, best first): what a household sees
    # of the visit later and may name it from. Faces of nearly the same embedding as a
    # kept one replace it only when better, so the few kept differ from each other.
    best_faces: list[KeptFace] = field(default_factory=list, repr=False)
    # Whether the decision was handed on (in a TrackerStep's ``decided``).
    reported: bool = False

    def mean_embedding(self) -> np.ndarray:
        mean: np.ndarray = np.mean(np.stack(self.embeddings), axis=0).astype(np.float32)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else mean


@dataclass
class TrackerStep:
    """What one frame changed: tracks decided now, tracks that ended now."""

    decided: list[Track] = field(default_factory=list)
    ended: list[Track] = field(default_factory=list)


class VisitorTracker:
    """Links faces frame to frame and decides each track's identity once."""

    def __init__(
        self,
        identify: Identify,
        options: RuntimeConfig | None = None,
        *,
        threshold: float | None = None,
        liveness: LivenessConfig | None = None,
        keep_faces: int = 0,
    ) -> None:
        """``options`` is the ``[runtime]`` section; ``threshold`` the naming threshold, from
        which ``unknown_margin`` below a stranger is decided early (None: never early);
        ``liveness`` the ``[liveness]`` section, or None where there is no face mesh to
        gather evidence from; ``keep_faces`` how many of each visit's best faces to keep."""
        self.identify = identify
        self.options = options or RuntimeConfig()
        self.liveness = liveness
        self.keep_faces = keep_faces
        # A mean similarity below this (and no single frame naming anyone) is a stranger for sure.
        self.unknown_below = -1.0 if threshold is None else threshold - self.options.unknown_margin
        self.tracks: list[Track] = []
        self._next_id = 1

    @property
    def visitors_present(self) -> bool:
        """Someone is at the door: a track seen often enough that it is not a fluke."""
        return any(t.hits >= self.options.min_hits for t in self.tracks)

    def update(self, faces: Sequence[Observation], captured: float) -> TrackerStep:
        step = TrackerStep()
        for existing in self.tracks:
            existing.improved = False
        assignments = self._assign([f.detection.box for f in faces])
        matched_tracks: set[int] = set()
        for face_index, face in enumerate(faces):
            found = assignments.get(face_index)
            if found is None:
                track = Track(
                    track_id=self._next_id,
                    box=face.detection.box,
                    first_captured=captured,
                    last_captured=captured,
                    liveness=LivenessEvidence(self.liveness) if self.liveness else None,
                )
                self._next_id += 1
                self.tracks.append(track)
            else:
                track = found
                track.box = face.detection.box
                track.hits += 1
                track.missed = 0
                track.last_captured = captured
            matched_tracks.add(track.track_id)
            self._observe(track, face)
            if track.decision is None:
                self._decide(track, final=False)
            if self._ready(track):
                self._report(track, step)
        for track in list(self.tracks):
            if track.track_id in matched_tracks:
                continue
            track.missed += 1
            if track.missed > self.options.max_missed_frames:
                self._end(track, step)
        return step

    def finish(self) -> TrackerStep:
        """End every track (end of the stream or shutdown)."""
        step = TrackerStep()
        for track in list(self.tracks):
            self._end(track, step)
        return step

    def _end(self, track: Track, step: TrackerStep) -> None:
        self.tracks.remove(track)
        if track.decision is None and track.hits >= self.options.min_hits:
            self._decide(track, final=True)
        if track.decision is not None and not track.reported:
            self._report(track, step)
        if track.decision is not None:
            step.ended.append(track)

    def _observe(self, track: Track, face: Observation) -> None:
        quality = face.quality.quality
        if quality > track.best_quality:
            track.best_quality = quality
            track.improved = True
        if track.liveness is not None:
            track.liveness.observe(face.mesh, face.crop, face.quality.yaw)
        if self.keep_faces and would_keep(track.best_faces, quality, self.keep_faces):
            keep_face(
                track.best_faces,
                KeptFace(quality, face.crop, face.quality, face.embedding),
                self.keep_faces,
            )
        # Asked for only here and above: a decided visit's other faces are never embedded.
        if track.decision is not None or face.embedding is None:
            return
        track.embeddings.append(face.embedding)
        track.qualities.append(quality)
        match = self.identify(face.embedding)
        logger.debug(
            "track %d, face %d: %s at %.4f",
            track.track_id,
            len(track.embeddings),
            match.candidate or "nobody",
            match.similarity,
        )
        if match.known and match.person is not None:
            track.votes[match.person] += 1

    @staticmethod
    def _ready(track: Track) -> bool:
        """Decided, not handed on yet, and no later frame could change the liveness verdict."""
        if track.decision is None or track.reported:
            return False
        return track.liveness is None or track.liveness.final

    def _report(self, track: Track, step: TrackerStep) -> None:
        """Hand the decision on with the liveness verdict as it stands now."""
        decision = track.decision
        assert decision is not None
        if track.liveness is not None:
            verdict = track.liveness.verdict()
            decision = replace(decision, liveness=verdict)
            if (
                self.liveness is not None
                and self.liveness.require
                and decision.known
                and verdict is not Liveness.LIVE
            ):
                decision = replace(
                    decision,
                    person=None,
                    known=False,
                    reason=LIVENESS_NOT_LIVE,
                    outcome=Outcome.NOT_LIVE,
                )
        track.decision = decision
        track.reported = True
        step.decided.append(track)

    def _decide(self, track: Track, final: bool) -> None:
        options = self.options
        used = len(track.embeddings)
        if used == 0:
            if final or track.hits >= options.unknown_after_frames:
                track.decision = Decision(
                    None,
                    False,
                    None,
                    None,
                    0,
                    max(track.best_quality, 0.0),
                    outcome=Outcome.NOT_SEEN_WELL,
                )
            return
        if used < options.min_frames and not (final or track.hits >= options.unknown_after_frames):
            return
        match = self.identify(track.mean_embedding())
        quality = float(np.mean(track.qualities))
        agreeing = track.votes[match.person] if match.person is not None else 0
        if match.known and used >= options.min_frames and 2 * agreeing >= used:
            track.decision = Decision(
                match.person,
                True,
                match.similarity,
                match.margin,
                used,
                quality,
                outcome=Outcome.KNOWN,
            )
            return
        nobody = match.candidate is None
        certain_stranger = (
            used >= options.min_frames
            and not track.votes
            and (nobody or match.similarity < self.unknown_below)
        )
        if (
            certain_stranger
            or final
            or used >= options.max_frames
            or track.hits >= options.unknown_after_frames
        ):
            if nobody:
                track.decision = Decision(
                    None, False, None, None, used, quality, outcome=Outcome.NOBODY_ENROLLED
                )
            else:
                # The faces' mean named someone, but fewer than half of the single faces did.
                disagree = FRAMES_DISAGREE if match.known else None
                track.decision = Decision(
                    None, False, match.similarity, match.margin, used, quality, reason=disagree
                )

    def _assign(self, boxes: list[Box]) -> dict[int, Track]:
        """Greedy matching: best overlaps first, then nearest centres for what is left."""
        pairs: list[tuple[float, int, int]] = []
        fallback: list[tuple[float, int, int]] = []
        for face_index, box in enumerate(boxes):
            for track_index, track in enumerate(self.tracks):
                overlap = iou(box, track.box)
                if overlap >= self.options.iou_threshold:
                    pairs.append((-overlap, face_index, track_index))
                else:
                    distance = centre_distance(box, track.box)
                    if distance <= self.options.max_centre_distance:
                        fallback.append((distance, face_index, track_index))
        assigned: dict[int, Track] = {}
        used_tracks: set[int] = set()
        for _, face_index, track_index in sorted(pairs) + sorted(fallback):
            if face_index in assigned or track_index in used_tracks:
                continue
            assigned[face_index] = self.tracks[track_index]
            used_tracks.add(track_index)
        return assigned


def would_keep(kept: list[KeptFace], quality: float, most: int) -> bool:
    """Whether a face of this quality could change ``kept`` (``keep_face`` would do nothing else)."""
    return len(kept) < most or quality > kept[-1].quality


def keep_face(kept: list[KeptFace], face: KeptFace, most: int) -> None:
    """Keep ``face`` among the ``most`` best of ``kept`` (best first), one per look."""
    if face.embedding is not None:
        for index, other in enumerate(kept):
            if other.embedding is not None and float(other.embedding @ face.embedding) >= SAME_LOOK:
                if face.quality > other.quality:
                    kept[index] = face
                    kept.sort(key=lambda k: -k.quality)
                return
    if len(kept) < most or face.quality > kept[-1].quality:
        kept.append(face)
        kept.sort(key=lambda k: -k.quality)
        del kept[most:]


def iou(a: Box, b: Box) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Box, b: Box) -> float:
    """Distance between box centres in units of the larger box's mean side."""
    ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
    bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    size = max((a[2] - a[0] + a[3] - a[1]) / 2, (b[2] - b[0] + b[3] - b[1]) / 2, 1.0)
    return float(np.hypot(ax - bx, ay - by)) / size


class Cooldown:
    """Keeps a visitor standing at the door from being announced again and again.

    A known person is quiet for ``seconds`` after their last sighting. An unknown
    visitor is recognised again by the mean embedding of the earlier track
    (kept in memory only, for ``seconds``) when similarity reaches ``same_person``.
    """

    def __init__(self, seconds: float, same_person: float) -> None:
        self.seconds = seconds
        self.same_person = same_person
        self._known: dict[str, float] = {}
        self._unknown: list[tuple[float, np.ndarray]] = []

    def allow(self, track: Track, now: float) -> bool:
        """Whether this decided track should be announced; records it if so."""
        decision = track.decision
        if decision is None:
            return False
        self._unknown = [(t, e) for t, e in self._unknown if now - t < self.seconds]
        if decision.known and decision.person is not None:
            last = self._known.get(decision.person)
            # Every sighting restarts the quiet period, so someone who stays is not re-announced.
            self._known[decision.person] = now
            return last is None or now - last >= self.seconds
        if not track.embeddings:
            return True
        mean = track.mean_embedding()
        seen_before = any(float(mean @ earlier) >= self.same_person for _, earlier in self._unknown)
        self._unknown.append((now, mean))
        return not seen_before
