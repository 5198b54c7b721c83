"""End to end: the motion gate and tracking without redetection change no visit.

``peephole run`` watches the Hamilton clip and both Intel clips twice, with
``[motion]`` and ``[tracking]`` off and on (the default); the visits, their
names, outcomes and liveness verdicts are the same once ids and times are
stripped, and each visit's latency from its face's first frame is within one
frame of the run without them.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from device.config import Config, load_config
from device.service.tracker import Track
from device.vision.follow import Work
from device.vision.sources import open_source
from tests.conftest import require_shared
from tests.runtime_helpers import (
    CLIP,
    enroll_people,
    json_lines,
    make_door,
    run_to_end,
    write_config,
)

OFF = "[motion]\nenabled = false\n\n[tracking]\nenabled = false\n"
# The Intel clips' faces are 30-50 px: the full-range detector finds them.
FULL_RANGE = '[detector]\nvariant = "full"\n'
CLIPS = {
    CLIP: "",
    "data/video/face-demographics-walking-and-pause.gif": FULL_RANGE,
    "data/video/head-pose-face-detection-female-and-male.gif": FULL_RANGE,
}
# What a visit is: who, how it was decided, its liveness verdict.
_VISIT = ("event", "track_id", "event_type", "person", "known", "outcome", "liveness", "reason")


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, reference_f32: tuple[Path, Path]
) -> dict[str, dict[bool, list[dict[str, Any]]]]:
    """Each clip's events, by whether the gate and tracking were on."""
    workdir = tmp_path_factory.mktemp("motion")
    gallery = workdir / "gallery.db"
    enroll_people(gallery, reference_f32)
    events: dict[str, dict[bool, list[dict[str, Any]]]] = {}
    for index, (clip, extra) in enumerate(CLIPS.items()):
        events[clip] = {}
        for on in (False, True):
            config = write_config(
                workdir / f"{index}-{on}.toml",
                gallery=gallery,
                outbox=workdir / f"{index}-{on}.db",
                extra=extra + ("" if on else OFF),
            )
            result = run_to_end(config, reference_f32, "--source", str(require_shared(clip)))
            assert result.returncode == 0, result.stderr
            events[clip][on] = json_lines(result.stdout)
    return events


def visits(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each event's visit without ids and times, in track order (two visits decided on
    nearby frames may be announced in either order); similarity and quality are means over
    faces aligned from slightly different meshes, so they are not compared."""
    return sorted(tuple(e[k] for k in _VISIT) for e in events)


@pytest.mark.parametrize("clip", list(CLIPS))
def test_the_same_visits_names_and_verdicts_with_the_gate_and_tracking(
    runs: dict[str, dict[bool, list[dict[str, Any]]]], clip: str
) -> None:
    off, on = runs[clip][False], runs[clip][True]
    assert [e for e in off if e["event"] == "visitor"], f"{clip}: no visit to compare"
    assert visits(on) == visits(off)
    if clip == CLIP:
        assert [e["person"] for e in on if e["event"] == "visitor" and e["known"]] == [
            "Lin-Manuel Miranda"
        ]


def decision_frames(
    folder: Path, reference: tuple[Path, Path], clip: str, config: Config
) -> tuple[dict[int, int], dict[Work, int]]:
    """For each visit (track) of the clip, how many frames after its first one the door
    decided it; and how many frames had each kind of work."""
    folder.mkdir()
    enroll_people(folder / "gallery.db", reference)
    source = open_source(str(require_shared(clip)), config.camera)
    door = make_door(folder, reference, source, config=config, out=io.StringIO())
    first: dict[int, int] = {}
    decided: dict[int, int] = {}
    seen: dict[int, Track] = {}
    with door:
        loop = door.loop()
        index = 0
        while (frame := source.read()) is not None:
            loop.process(frame)
            for track in loop.tracker.tracks:
                first.setdefault(track.track_id, index)
                seen[track.track_id] = track
            for track_id, track in seen.items():
                if track.reported and track_id not in decided:
                    decided[track_id] = index
            index += 1
    return {t: decided.get(t, index) - first[t] for t in first}, dict(loop.follower.work)


@pytest.mark.parametrize("clip", list(CLIPS))
def test_each_visit_is_decided_within_a_frame_of_the_door_without_them(
    tmp_path: Path, reference_f32: tuple[Path, Path], clip: str
) -> None:
    frames = {}
    for switched_on in (False, True):
        path = write_config(
            tmp_path / f"{switched_on}.toml",
            gallery=tmp_path / "unused.db",
            outbox=tmp_path / "unused-outbox.db",
            extra=CLIPS[clip] + ("" if switched_on else OFF),
        )
        frames[switched_on] = decision_frames(
            tmp_path / str(switched_on), reference_f32, clip, load_config(path)
        )
    (off, off_work), (on, on_work) = frames[False], frames[True]
    assert off_work.keys() == {Work.DETECT}
    # The detector ran on fewer frames: the rest were followed or skipped.
    assert on_work[Work.DETECT] < off_work[Work.DETECT]
    assert on.keys() == off.keys()
    late = {t: (on[t], off[t]) for t in on if on[t] > off[t] + 1}
    assert not late, f"decided later (frames after the first, on vs off): {late}"
