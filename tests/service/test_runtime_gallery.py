"""The running loop picks up enrollments made meanwhile, without a restart."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from device.config import Config
from device.identity.gallery import Gallery
from device.vision.sources import Frame, open_source
from tests.conftest import require_shared
from tests.runtime_helpers import enroll_people, make_door

CLIP = "data/video/short_hamilton_clip.mp4"


class EnrollingSource:
    """The clip, with both people enrolled (by the real CLI) after frame 60 has been read."""

    live = False
    description = "clip with an enrollment at frame 60"

    def __init__(self, gallery: Path, reference: tuple[Path, Path]) -> None:
        self.inner = open_source(str(require_shared(CLIP)))
        self.gallery = gallery
        self.reference = reference

    def open(self) -> None:
        return None

    def read(self) -> Frame | None:
        frame = self.inner.read()
        if frame is not None and frame.index == 60:
            enroll_people(self.gallery, self.reference)
        return frame

    def close(self) -> None:
        self.inner.close()


def test_people_enrolled_during_a_run_are_recognised(
    tmp_path: Path, reference_f32: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="device.service.loop")
    gallery_path = tmp_path / "gallery.db"
    printed = io.StringIO()
    config = Config()
    config.gallery.refresh_interval = 0.0
    door = make_door(
        tmp_path,
        reference_f32,
        EnrollingSource(gallery_path, reference_f32),
        config=config,
        out=printed,
    )
    embedder, matcher = door.embedder, door.matcher
    assert matcher.people == []
    with door:
        stats = door.run()
    events = [json.loads(line) for line in printed.getvalue().splitlines()]
    assert stats.frames == 275
    assert len(matcher.people) == 2
    changes = [m for m in caplog.messages if m.startswith("gallery changed")]
    assert changes and changes[-1] == "gallery changed: 2 people enrolled", caplog.messages
    named = [e["person"] for e in events if e["event"] == "visitor" and e["known"]]
    assert named == ["Lin-Manuel Miranda"]
    # last_seen is recorded for the person recognised.
    people = {p.name: p for p in Gallery.open(gallery_path).summaries(embedder.embedding_key)}
    assert people["Lin-Manuel Miranda"].last_seen is not None
    assert people["Alex Lacamoire"].last_seen is None
