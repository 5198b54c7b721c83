"""Event records and their JSON payloads. No embedding, crop or other biometric data, ever."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from device.service.topics import KNOWN_VISITOR, UNKNOWN_VISITOR
from device.service.tracker import Decision, Track

VISITOR = "visitor"
VISITOR_LEFT = "visitor_left"


@dataclass(frozen=True)
class VisitorEvent:
    """One announcement: a visitor decided (``visitor``) or gone (``visitor_left``).

    ``event_type`` is what Home Assistant's MQTT event entity reads:
    ``known_visitor``, ``unknown_visitor`` or ``visitor_left``. ``liveness`` is
    the visit's verdict (``live``, ``suspect``, ``undecided``; None without
    the face mesh); ``reason`` says why a match was not announced as known
    (``liveness``), else None. ``latency_ms``
    runs from the capture of the track's first frame to the event's creation
    (just before it is stored and published); ``duration_s`` is how long the
    visitor was seen (``visitor_left`` only).
    """

    event: str
    event_type: str
    event_id: str
    device_id: str
    timestamp: str
    track_id: int
    person: str | None
    known: bool
    similarity: float | None
    margin: float | None
    frames: int
    quality: float
    liveness: str | None = None
    reason: str | None = None
    latency_ms: float | None = None
    duration_s: float | None = None
    # The visit both events belong to; ``peephole visits show ID`` where visits are kept.
    visit_id: str | None = None
    # known, stranger, not_seen_well, nobody_enrolled or not_live (tracker.Outcome).
    outcome: str = "stranger"

    def payload(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.payload(), separators=(",", ":"), ensure_ascii=False)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def visitor_event(
    track: Track, device_id: str, now_monotonic: float, visit_id: str | None = None
) -> VisitorEvent:
    known = _decision(track).known
    latency_ms = round((now_monotonic - track.first_captured) * 1000.0, 1)
    event_type = KNOWN_VISITOR if known else UNKNOWN_VISITOR
    return _event(VISITOR, event_type, track, device_id, latency_ms=latency_ms, visit_id=visit_id)


def visitor_left_event(track: Track, device_id: str, visit_id: str | None = None) -> VisitorEvent:
    duration_s = round(track.last_captured - track.first_captured, 3)
    return _event(
        VISITOR_LEFT, VISITOR_LEFT, track, device_id, duration_s=duration_s, visit_id=visit_id
    )


def _event(
    event: str,
    event_type: str,
    track: Track,
    device_id: str,
    latency_ms: float | None = None,
    duration_s: float | None = None,
    visit_id: str | None = None,
) -> VisitorEvent:
    decision = _decision(track)
    return VisitorEvent(
        event=event,
        event_type=event_type,
        event_id=new_event_id(),
        device_id=device_id,
        timestamp=utc_timestamp(),
        track_id=track.track_id,
        person=decision.person,
        known=decision.known,
        similarity=_rounded(decision.similarity, 4),
        margin=_rounded(decision.margin, 4),
        frames=decision.frames_used,
        quality=round(decision.quality, 4),
        liveness=_verdict(decision),
        reason=decision.reason,
        outcome=decision.outcome.value,
        latency_ms=latency_ms,
        duration_s=duration_s,
        visit_id=visit_id,
    )


def _verdict(decision: Decision) -> str | None:
    return None if decision.liveness is None else decision.liveness.value


def _decision(track: Track) -> Decision:
    if track.decision is None:
        raise ValueError(f"track {track.track_id} has no decision yet")
    return track.decision


def new_event_id() -> str:
    return uuid.uuid4().hex


def new_visit_id() -> str:
    """Ten hex digits: short enough to type, unique among a door's visits for years."""
    return secrets.token_hex(5)


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
