"""What a newcomer meets in the first hour (issue 28), each through the real command line:
real photos, the real clip, the shipped model, a subprocess per command so stderr is what a
terminal shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from device.service.tracker import Outcome
from tests.conftest import ROOT, require_shared

LIN = "data/video/lin-manuel-miranda.png"
ALEX = "data/video/alex-lacamoire.png"
CLIP = "data/video/short_hamilton_clip.mp4"


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment whose config keeps every file of the door in tmp_path."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[gallery]\npath = "{tmp_path / "gallery.db"}"\n'
        f'[runtime]\noutbox_path = "{tmp_path / "outbox.db"}"\n'
        f'status_path = "{tmp_path / "status.json"}"\n'
        '[camera]\nsource = "97"\n'  # no camera at that index
    )
    config.chmod(0o600)
    return {**os.environ, "PEEPHOLE_CONFIG": str(config)}


def peephole(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def documented_schema() -> dict[str, Any]:
    """The event schema as docs/mqtt.md publishes it."""
    text = (ROOT / "docs" / "mqtt.md").read_text()
    start = text.index("```json", text.index("### JSON schema of an event")) + len("```json")
    schema: dict[str, Any] = json.loads(text[start : text.index("```", start)])
    return schema


def conforms(event: dict[str, Any], schema: dict[str, Any]) -> None:
    """The parts of the schema events can break: the keys, the enums, the types' nulls."""
    assert set(event) == set(schema["required"]) == set(schema["properties"])
    for key, rule in schema["properties"].items():
        if "enum" in rule:
            assert event[key] in rule["enum"], (key, event[key])
        kinds = rule.get("type", [])
        if event[key] is None:
            assert "null" in kinds or None in rule.get("enum", []), key


def events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def test_the_demo_names_lin_from_his_visit_never_alex_and_says_what_to_do_next() -> None:
    require_shared(CLIP)
    done = subprocess.run(
        ["bash", "scripts/run.sh", "--demo"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    visitors = [e for e in events(done.stdout) if e["event"] == "visitor"]
    # Two passes of the clip, his visit named between them. His one photo names Lin on the
    # first by the narrowest of margins, if at all (half his single faces reach the safe
    # threshold): his visit is the one he was named on, or else the one stranger's, whose
    # faces' mean came close to his photo while his single faces did not.
    passes = len(visitors) // 2
    first, second = visitors[:passes], visitors[passes:]
    (lin,) = [e for e in first if e["known"] or e["outcome"] == "stranger"]
    assert lin["person"] == "Lin-Manuel Miranda" or lin["reason"] == "frames"
    assert {e["person"] for e in second if e["known"]} == {"Lin-Manuel Miranda"}
    assert f"visits name {lin['visit_id']} --as 'Lin-Manuel Miranda' --append" in done.stderr
    assert "visits list" in done.stderr and "visits name ID --as NAME" in done.stderr
    assert ".venv/bin/peephole" in done.stderr


def test_quiet_means_quiet(home: dict[str, str]) -> None:
    photo = str(require_shared(LIN))
    assert peephole(home, "-q", "enroll", "--name", "Lin", "--images", photo).returncode == 0
    quiet = peephole(home, "-q", "identify", photo)
    assert quiet.returncode == 0 and "person=Lin" in quiet.stdout
    assert quiet.stderr == ""
    verbose = peephole(home, "-v", "identify", photo)
    assert "XNNPACK" in verbose.stderr  # LiteRT's own line is routed, not lost


def test_usage_errors_are_one_line_and_exit_2(home: dict[str, str]) -> None:
    for args in (["enroll", "--bogus"], ["visits", "name"], ["nosuchcommand"]):
        done = peephole(home, *args)
        assert done.returncode == 2, args
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("peephole: error: "), done.stderr
        assert "--help'" in lines[0]


def test_a_file_that_is_no_video_is_one_line_and_exit_1(
    home: dict[str, str], tmp_path: Path
) -> None:
    bogus = tmp_path / "holiday.mp4"
    bogus.write_text("not a video at all\n")
    for args in (["run", "--source", str(bogus)], ["enroll", "--name", "X", "--video", str(bogus)]):
        done = peephole(home, *args)
        assert done.returncode == 1, args
        lines = done.stderr.splitlines()
        assert lines[-1].startswith("peephole: error: cannot open ") and "not a video" in lines[-1]
        assert not [line for line in lines if not line.startswith("peephole: ")], done.stderr
        assert done.stdout == ""


def test_no_camera_names_the_options_that_work(home: dict[str, str]) -> None:
    done = peephole(home, "enroll", "--name", "X")
    assert done.returncode == 1
    error = done.stderr.splitlines()[-1]
    assert "run --source FILE" in error and "enroll --video FILE" in error
    assert "WARN" not in done.stderr  # OpenCV's own lines are quiet


def test_one_face_under_two_names_is_refused_unless_asked_and_identify_says_why(
    home: dict[str, str],
) -> None:
    photo = str(require_shared(LIN))
    assert peephole(home, "enroll", "--name", "Lin", "--images", photo).returncode == 0
    refused = peephole(home, "enroll", "--name", "Other", "--images", photo)
    assert refused.returncode == 1
    assert "match Lin" in refused.stderr and "--allow-lookalike" in refused.stderr
    listed = peephole(home, "people", "list")
    assert "Other" not in listed.stdout
    forced = peephole(home, "enroll", "--name", "Other", "--allow-lookalike", "--images", photo)
    assert forced.returncode == 0, forced.stderr
    record = json.loads(peephole(home, "identify", "--json", photo).stdout)
    assert record["person"] is None and record["similarity"] > 0.99
    assert "same face enrolled under two names" in record["why"]


def test_events_say_their_outcome_and_the_start_counts_the_backlog(home: dict[str, str]) -> None:
    clip = str(require_shared(CLIP))
    nobody = peephole(home, "run", "--source", clip)
    assert nobody.returncode == 0, nobody.stderr
    assert "0 people enrolled" in nobody.stderr and "(0 waiting)" in nobody.stderr
    first = [e for e in events(nobody.stdout) if e["event"] == "visitor"]
    assert {e["outcome"] for e in first} <= {"nobody_enrolled", "not_seen_well"}
    judged = [e for e in first if e["outcome"] == "nobody_enrolled"]
    assert judged and all(e["similarity"] is None and e["margin"] is None for e in judged)
    assert all(e["frames"] == 0 for e in first if e["outcome"] == "not_seen_well")
    backlog = len(events(nobody.stdout))
    schema = documented_schema()
    assert schema["properties"]["outcome"]["enum"] == [o.value for o in Outcome]
    for event in events(nobody.stdout):
        conforms(event, schema)

    # Alex is enrolled, and nobody who comes to the door in the clip looks like him.
    enrolled = peephole(home, "enroll", "--name", "Alex", "--images", str(require_shared(ALEX)))
    assert enrolled.returncode == 0
    again = peephole(home, "run", "--source", clip)
    assert "1 person enrolled" in again.stderr and f"({backlog} waiting)" in again.stderr
    second = [e for e in events(again.stdout) if e["event"] == "visitor"]
    assert {e["outcome"] for e in second} == {"stranger", "not_seen_well"}
    assert all(e["similarity"] is not None for e in second if e["outcome"] == "stranger")
    for event in events(again.stdout):
        conforms(event, schema)


def test_one_running_door_per_outbox(home: dict[str, str]) -> None:
    clip = str(require_shared(CLIP))
    first = subprocess.Popen(
        [sys.executable, "-m", "device", "run", "--realtime", "--source", clip],
        cwd=ROOT,
        env=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        while "watching" not in first.stderr.readline():
            assert first.poll() is None, "the first door ended before it watched"
        second = peephole(home, "run", "--source", clip)
        assert second.returncode == 1
        lines = second.stderr.splitlines()
        assert lines[-1].startswith("peephole: error: ") and "outbox" in lines[-1]
        assert second.stdout == ""
    finally:
        first.terminate()
        first.wait(timeout=30)
    time.sleep(0.1)
    assert peephole(home, "run", "--source", clip, "--stop-after-frames", "5").returncode == 0


def test_help_summaries_are_whole_and_version_is_printed(home: dict[str, str]) -> None:
    for group in ([], ["visits"], ["people"], ["gallery"], ["site"]):
        text = peephole(home, *group, "--help").stdout
        commands = text[text.index("Commands:") :]
        assert not [line for line in commands.splitlines() if line.endswith("...")], commands
    version = peephole(home, "--version")
    assert version.returncode == 0 and version.stdout.startswith("peephole ")
