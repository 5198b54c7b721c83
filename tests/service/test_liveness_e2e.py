"""End to end: Lin-Manuel Miranda's enrollment photo held up to the camera on a phone.

``bench/attacks.py`` renders the replay (2.2 s at 15 fps, hand shake, tilt and
approach, screen gamma, moiré and bezel) into an image folder; ``peephole run``
watches it twice, with ``[liveness] require`` off and on. On the real
Hamilton clip, with ``require = true``, he is still named, ``live``. Both use
the reference model, so they do not depend on which default model ships.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import pytest

from bench.attacks import Attack, render_attack
from device.vision.imageio import read_image
from tests.conftest import require_shared
from tests.runtime_helpers import PEOPLE, enroll_people, json_lines, run_to_end, write_config

LIN = "Lin-Manuel Miranda"


@pytest.fixture(scope="module")
def replay(
    tmp_path_factory: pytest.TempPathFactory, reference_f32: tuple[Path, Path]
) -> dict[bool, list[dict[str, Any]]]:
    """The visitor events of the replay, by the value of ``[liveness] require``."""
    workdir = tmp_path_factory.mktemp("replay")
    folder = workdir / "frames"
    folder.mkdir()
    photo = read_image(require_shared(PEOPLE[LIN]))
    for index, frame in enumerate(render_attack(photo, Attack.SCREEN, seed=3)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    gallery = workdir / "gallery.db"
    enroll_people(gallery, reference_f32)
    events = {}
    for require in (False, True):
        config = write_config(
            workdir / f"require-{require}.toml",
            gallery=gallery,
            outbox=workdir / f"outbox-{require}.db",
            extra=f"[liveness]\nrequire = {str(require).lower()}\n",
        )
        result = run_to_end(config, reference_f32, "--source", str(folder))
        assert result.returncode == 0, result.stderr
        events[require] = [e for e in json_lines(result.stdout) if e["event"] == "visitor"]
    return events


def test_a_replayed_photo_is_suspect_and_named_when_liveness_is_not_required(
    replay: dict[bool, list[dict[str, Any]]],
) -> None:
    (event,) = replay[False]
    assert event["liveness"] == "suspect"
    assert event["known"] is True and event["person"] == LIN
    assert event["reason"] is None


def test_with_liveness_required_the_photo_is_not_named_and_keeps_its_similarity(
    replay: dict[bool, list[dict[str, Any]]],
) -> None:
    (named,), (refused,) = replay[False], replay[True]
    assert refused["liveness"] == "suspect"
    assert refused["known"] is False and refused["person"] is None
    assert refused["event_type"] == "unknown_visitor"
    assert refused["reason"] == "liveness"
    assert refused["similarity"] == named["similarity"]
    assert refused["similarity"] > 0.5


def test_the_hamilton_clip_still_names_him_live_when_liveness_is_required(
    tmp_path: Path, reference_f32: tuple[Path, Path]
) -> None:
    gallery = tmp_path / "gallery.db"
    enroll_people(gallery, reference_f32)
    config = write_config(
        tmp_path / "config.toml",
        gallery=gallery,
        outbox=tmp_path / "outbox.db",
        extra="[liveness]\nrequire = true\n",
    )
    clip = require_shared("data/video/short_hamilton_clip.mp4")
    result = run_to_end(config, reference_f32, "--source", str(clip))
    assert result.returncode == 0, result.stderr
    visitors = [e for e in json_lines(result.stdout) if e["event"] == "visitor"]
    named = [e for e in visitors if e["known"]]
    assert [(e["person"], e["liveness"], e["reason"]) for e in named] == [(LIN, "live", None)]
    # Nobody real is taken for a photo, and only a match is ever refused for liveness.
    assert all(e["liveness"] in ("live", "undecided") for e in visitors), visitors
    assert all(e["reason"] is None for e in visitors), visitors
