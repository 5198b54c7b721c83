"""The visitor tracker: linking faces across frames and deciding one identity per visit.

Faces are built from the real ``Detection``/``QualityReport`` types; identities
come from a small in-memory matcher over unit vectors, so each rule of the
decision can be driven exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from device.config import LivenessConfig, RuntimeConfig
from device.identity.matching import Match
from device.service.tracker import (
    Cooldown,
    Decision,
    Track,
    VisitorTracker,
    centre_distance,
    iou,
)
from device.vision.detector import Detection
from device.vision.liveness import Liveness
from device.vision.quality import QualityReport, RejectReason

DIM = 8


def unit(index: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    vector += np.random.default_rng(seed).normal(0, noise, DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


class TinyMatcher:
    """Cosine against one vector per person, with a threshold: a gallery in miniature."""

    def __init__(self, people: dict[str, np.ndarray], threshold: float = 0.6) -> None:
        self.people = people
        self.threshold = threshold

    def identify(self, embedding: np.ndarray) -> Match:
        scores = sorted(
            ((float(embedding @ v), name) for name, v in self.people.items()), reverse=True
        )
        best, name = scores[0]
        margin = best - (scores[1][0] if len(scores) > 1 else -1.0)
        return Match(name if best >= self.threshold else None, best, margin, candidate=name)


@dataclass(frozen=True)
class Face:
    detection: Detection
    quality: QualityReport
    embedding: np.ndarray | None
    crop: np.ndarray = field(default_factory=lambda: np.zeros((112, 112, 3), np.uint8))
    mesh: np.ndarray | None = None


def face(box: tuple[float, float, float, float], embedding: np.ndarray | None) -> Face:
    reasons = () if embedding is not None else (RejectReason.YAW,)
    report = QualityReport(0.9, 300.0, 40.0, 0.0, 10.0 if reasons == () else 50.0, 120.0, reasons)
    return Face(Detection(box, np.zeros((6, 2), np.float32), 0.9), report, embedding)


PEOPLE = {"Ada": unit(0), "Grace": unit(1)}
BOX = (100.0, 100.0, 200.0, 200.0)


def moved(box: tuple[float, float, float, float], dx: float) -> tuple[float, float, float, float]:
    return (box[0] + dx, box[1], box[2] + dx, box[3])


def feed(tracker: VisitorTracker, frames: list[list[Face]]) -> list[tuple[int, str, Track]]:
    """Run frames through; return (frame, 'decided'|'ended', track) in order."""
    log: list[tuple[int, str, Track]] = []
    for index, faces in enumerate(frames):
        step = tracker.update(faces, index / 15)
        log += [(index, "decided", t) for t in step.decided]
        log += [(index, "ended", t) for t in step.ended]
    step = tracker.finish()
    log += [(len(frames), "decided", t) for t in step.decided]
    log += [(len(frames), "ended", t) for t in step.ended]
    return log


def decision_of(track: Track) -> Decision:
    """The decision of a track from the log's "decided" entries (which always has one)."""
    assert track.decision is not None
    return track.decision


def test_iou_and_centre_distance() -> None:
    assert iou(BOX, BOX) == pytest.approx(1.0)
    assert iou(BOX, moved(BOX, 50)) == pytest.approx(50 * 100 / (2 * 100 * 100 - 50 * 100))
    assert iou(BOX, moved(BOX, 200)) == 0.0
    assert centre_distance(BOX, moved(BOX, 30)) == pytest.approx(0.3)


def test_known_person_is_decided_after_min_frames_and_announced_once() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify)
    frames = [[face(moved(BOX, 3 * i), unit(0, 0.1, i))] for i in range(20)]
    log = feed(tracker, frames)
    decided = [(i, t) for i, kind, t in log if kind == "decided"]
    assert len(decided) == 1
    frame, track = decided[0]
    assert frame == 2  # the third good frame: min_frames = 3
    decision = decision_of(track)
    assert decision.person == "Ada" and decision.known
    assert decision.frames_used == 3
    assert [kind for _, kind, _ in log] == ["decided", "ended"]


def test_stranger_is_unknown_after_max_frames() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify, RuntimeConfig(max_frames=6))
    frames = [[face(BOX, unit(5, 0.1, i))] for i in range(12)]
    decided = [(i, t) for i, kind, t in feed(tracker, frames) if kind == "decided"]
    assert len(decided) == 1
    frame, track = decided[0]
    assert frame == 5
    decision = decision_of(track)
    assert decision.person is None and not decision.known
    assert decision.similarity is not None and decision.similarity < 0.6


def test_a_certain_stranger_is_decided_after_min_frames() -> None:
    options = RuntimeConfig(max_frames=10, unknown_margin=0.0)
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify, options, threshold=0.3)
    strangers = [[face(BOX, unit(5, 0.1, i))] for i in range(12)]
    decided = [(i, t) for i, kind, t in feed(tracker, strangers) if kind == "decided"]
    assert [i for i, _ in decided] == [2]
    assert not decision_of(decided[0][1]).known
    # Someone close to a threshold is not a certain stranger: wait for more evidence.
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify, options, threshold=0.3)
    near_ada = [[face(BOX, 0.5 * unit(0) + np.sqrt(0.75) * unit(5))] for _ in range(12)]
    decided = [(i, t) for i, kind, t in feed(tracker, near_ada) if kind == "decided"]
    assert [i for i, _ in decided] == [9]


def test_a_mean_that_no_single_frame_agrees_with_names_nobody() -> None:
    # Each frame is only 0.55 like Ada (under the 0.6 threshold), each with different
    # noise; the noise averages out, so the mean alone would pass as Ada at 0.8.
    frames_like_ada = [0.55 * unit(0) + np.sqrt(1 - 0.55**2) * unit(k) for k in (2, 3, 4, 5)]
    matcher = TinyMatcher(PEOPLE, threshold=0.6)
    assert matcher.identify(np.mean(frames_like_ada, axis=0) / 0.69).known
    tracker = VisitorTracker(matcher.identify, RuntimeConfig(min_frames=4, max_frames=4))
    decided = [
        t
        for _, kind, t in feed(tracker, [[face(BOX, e)] for e in frames_like_ada])
        if kind == "decided"
    ]
    assert len(decided) == 1
    assert not decision_of(decided[0]).known
    similarity = decision_of(decided[0]).similarity
    assert similarity is not None and similarity > 0.6


def test_face_never_good_enough_is_unknown_after_unknown_after_frames() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify, RuntimeConfig(unknown_after_frames=8))
    frames = [[face(BOX, None)] for _ in range(12)]
    decided = [(i, t) for i, kind, t in feed(tracker, frames) if kind == "decided"]
    assert [i for i, _ in decided] == [7]
    assert decision_of(decided[0][1]).frames_used == 0
    assert decision_of(decided[0][1]).similarity is None


def test_short_false_detection_produces_nothing() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify)
    frames = [[face(BOX, None)], [face(BOX, None)]] + [[] for _ in range(20)]
    assert feed(tracker, frames) == []


def test_track_survives_missed_frames_then_ends() -> None:
    options = RuntimeConfig(max_missed_frames=5)
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify, options)
    frames = [[face(BOX, unit(1))] for _ in range(4)] + [[]] * 4 + [[face(BOX, unit(1))]]
    frames += [[]] * 7
    log = feed(tracker, frames)
    assert [(i, kind) for i, kind, _ in log] == [(2, "decided"), (14, "ended")]
    assert log[0][2].track_id == log[1][2].track_id


def test_two_faces_keep_their_own_tracks_while_crossing_paths() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify)
    frames = []
    for i in range(12):
        left = (50.0 + 10 * i, 100.0, 150.0 + 10 * i, 200.0)
        right = (400.0 - 10 * i, 100.0, 500.0 - 10 * i, 200.0)
        frames.append([face(left, unit(0, 0.05, i)), face(right, unit(1, 0.05, i + 100))])
    decided = [t for _, kind, t in feed(tracker, frames) if kind == "decided"]
    assert sorted(str(decision_of(t).person) for t in decided) == ["Ada", "Grace"]
    assert len({t.track_id for t in decided}) == 2


def test_fast_diagonal_move_is_linked_by_centre_distance() -> None:
    # 35 px right and down: IoU 0.27 is under the 0.3 threshold, the centre moved 0.49 box.
    diagonal = (135.0, 135.0, 235.0, 235.0)
    assert iou(BOX, diagonal) < 0.3 and centre_distance(BOX, diagonal) < 0.5
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify)
    tracker.update([face(BOX, None)], 0.0)
    tracker.update([face(diagonal, None)], 0.1)
    assert len(tracker.tracks) == 1 and tracker.tracks[0].hits == 2
    # 65 px sideways in one frame is more than half a face: someone else.
    tracker.update([face(moved(diagonal, 65), None)], 0.2)
    assert len(tracker.tracks) == 2


def test_cooldown_silences_a_known_person_who_stays() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify)
    cooldown = Cooldown(seconds=60.0, same_person=0.6)
    announced = []
    for visit, start in enumerate((0.0, 30.0, 80.0, 200.0)):
        frames = [[face(BOX, unit(0, 0.05, visit * 10 + i))] for i in range(4)]
        for index, faces in enumerate(frames):
            for track in tracker.update(faces, start + index).decided:
                announced.append(cooldown.allow(track, start))
        tracker.finish()
    # 30 s after the first: quiet; 80 s is 50 s after the last sighting: quiet; 200 s: announced.
    assert announced == [True, False, False, True]


def test_cooldown_recognises_the_same_stranger_by_embedding() -> None:
    tracker = VisitorTracker(TinyMatcher(PEOPLE).identify, RuntimeConfig(max_frames=3))
    cooldown = Cooldown(seconds=60.0, same_person=0.6)
    results = []
    for visit, who in enumerate((5, 5, 6)):
        for index in range(4):
            step = tracker.update([face(BOX, unit(who, 0.05, visit * 10 + index))], 0.0)
            results += [cooldown.allow(t, float(visit)) for t in step.decided]
        tracker.finish()
    assert results == [True, False, True]


def test_with_liveness_a_decision_waits_for_the_verdict_and_require_refuses_a_still_face() -> None:
    """Faces without a mesh give no evidence: the verdict is final after the window, undecided."""
    frames = [[face(moved(BOX, i), unit(0, 0.1, i))] for i in range(20)]
    for require in (False, True):
        liveness = LivenessConfig(frames=8, require=require)
        log = feed(VisitorTracker(TinyMatcher(PEOPLE).identify, liveness=liveness), frames)
        decided = [(i, t) for i, kind, t in log if kind == "decided"]
        assert [i for i, _ in decided] == [7]  # identity after 3 frames, the verdict after 8
        decision = decision_of(decided[0][1])
        assert decision.liveness is Liveness.UNDECIDED
        assert decision.similarity is not None and decision.similarity > 0.9
        if require:
            assert (decision.person, decision.known, decision.reason) == (None, False, "liveness")
        else:
            assert (decision.person, decision.known, decision.reason) == ("Ada", True, None)


def test_a_short_visit_is_announced_when_it_ends_with_the_verdict_so_far() -> None:
    liveness = LivenessConfig(frames=30)
    frames = [[face(BOX, unit(1, 0.1, i))] for i in range(5)]
    decided = [
        (i, t)
        for i, kind, t in feed(
            VisitorTracker(TinyMatcher(PEOPLE).identify, liveness=liveness), frames
        )
        if kind == "decided"
    ]
    assert [i for i, _ in decided] == [5]  # at finish()
    assert decision_of(decided[0][1]).person == "Grace"
    assert decision_of(decided[0][1]).liveness is Liveness.UNDECIDED
