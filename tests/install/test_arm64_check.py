"""scripts/arm64-check.sh's comparer (scripts/arm64/compare.py), without the emulation.

The check itself (minutes of emulation) runs in .ci/run after the tests; here,
how it reads a failed aarch64 install, a lock that leaves aarch64 without a
package, and two runs of the door that differ.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

CHECK = ROOT / "scripts/arm64-check.sh"
LOCK = (ROOT / "requirements/device.lock").read_text()


def load_compare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compare", ROOT / "scripts/arm64/compare.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = load_compare()

# pip's own words when a pin has no distribution for this machine.
PIP_FAILURE = """\
== source and virtual environment
ERROR: Could not find a version that satisfies the requirement ai-edge-litert==9.9.9 (from versions: 1.0.1, 2.3.0)
ERROR: No matching distribution found for ai-edge-litert==9.9.9
"""


def test_a_failed_install_is_one_line_naming_the_missing_wheel(tmp_path: Path) -> None:
    assert compare.install_failure(PIP_FAILURE) == (
        "the aarch64 install failed: no aarch64 distribution of ai-edge-litert==9.9.9 on PyPI"
    )
    log, lock = tmp_path / "install.log", tmp_path / "device.lock"
    log.write_text(PIP_FAILURE)
    lock.write_text(LOCK)
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts/arm64/compare.py"),
            "--install-log",
            str(log),
            str(lock),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "arm64-check: error: the aarch64 install failed: "
        "no aarch64 distribution of ai-edge-litert==9.9.9 on PyPI"
    ]


def test_a_lock_that_leaves_aarch64_without_a_wheel_is_named() -> None:
    assert compare.missing_from_lock(LOCK) == []
    broken = LOCK.replace(
        "ai-edge-litert==2.3.0 ; platform_machine == 'aarch64' or platform_machine == 'x86_64'",
        "ai-edge-litert==2.3.0 ; platform_machine == 'x86_64'",
    )
    assert broken != LOCK
    pins = compare.lock_pins(LOCK)
    assert pins["backports-strenum"] == "1.2.8" and "colorama" not in pins
    wheels = dict(pins, peephole="0.1.0")
    assert compare.compare_wheels(wheels, wheels, LOCK) == []
    arm = {name: version for name, version in wheels.items() if name != "ai-edge-litert"}
    assert compare.compare_wheels(wheels, arm, broken) == [
        "the lock pins ai-edge-litert==2.3.0 for x86_64 only: aarch64 has no such package",
        "ai-edge-litert==2.3.0 is in the lock, aarch64 installed nothing",
    ]


@pytest.mark.parametrize("other", ["dev", "trainer", "bench"])
def test_every_lock_pins_what_the_device_lock_pins_at_its_version(other: str) -> None:
    """The check compares the door in this machine's venv (made from one of these locks)
    with the Pi's (made from the device lock): a package at two versions is a difference."""
    device = compare.lock_pins(LOCK)
    pins = compare.lock_pins((ROOT / f"requirements/{other}.lock").read_text())
    assert {n: (v, pins[n]) for n, v in device.items() if n in pins and pins[n] != v} == {}
    assert set(device) <= set(pins)


def test_the_check_refuses_such_a_lock_before_any_emulation(tmp_path: Path) -> None:
    lock = tmp_path / "device.lock"
    lock.write_text(
        LOCK.replace("tqdm==4.70.1 ; platform_machine == 'aarch64' or ", "tqdm==4.70.1 ; ")
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/arm64/compare.py"), "--lock", str(lock)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"arm64-check: error: {lock} pins tqdm==4.70.1 for x86_64 only: "
        "aarch64 would be installed without it"
    ]


def visit(track: int, **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event": "visitor",
        "track_id": track,
        "event_type": "unknown_visitor",
        "person": None,
        "known": False,
        "outcome": "stranger",
        "liveness": "live",
        "reason": None,
        "similarity": 0.41,
        "margin": 0.2,
    }
    return {**event, **fields}


def test_what_a_user_sees_must_match_and_the_rest_may_differ() -> None:
    x86 = [visit(3), visit(4, liveness="live", similarity=None, margin=None)]
    same = [visit(3, similarity=0.418, quality=0.5), visit(4, similarity=None, margin=None)]
    assert compare.compare_events(x86, same) == []
    differs = [
        visit(3, similarity=0.425),
        visit(4, liveness="suspect", similarity=None, margin=None),
    ]
    assert compare.compare_events(x86, differs) == [
        "track 3: similarity 0.41 on x86_64, 0.425 on aarch64 (more than 0.01 apart)",
        "track 4: liveness 'live' on x86_64, 'suspect' on aarch64",
    ]
    assert compare.compare_events(x86, [visit(3), visit(5)]) == [
        "track 4: a visit on x86_64 only",
        "track 5: a visit on aarch64 only",
    ]


def test_the_check_says_what_is_missing_in_one_line() -> None:
    # debootstrap lives in /usr/sbin: not on this PATH.
    result = subprocess.run(
        [str(CHECK)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("arm64-check: error:") and "is missing" in line


def test_the_report_reads_the_door_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for machine in ("x86_64", "aarch64"):
        folder = tmp_path / machine
        folder.mkdir()
        probe = {
            "machine": machine,
            "python": "3.11.2",
            "wheels": dict(compare.lock_pins(LOCK), peephole="0.1.0"),
            "models": {"embedder": 1, "detector": 1, "face_mesh": 1},
        }
        (folder / "probe.json").write_text(json.dumps(probe))
        (folder / "events.jsonl").write_text(json.dumps(visit(3)) + "\n")
        (folder / "identify.jsonl").write_text(
            json.dumps({"image": "lin.png", "person": "Lin", "known": True, "similarity": 0.9})
        )
        (folder / "times").write_text("run 1200\n")
    assert compare.report(tmp_path / "x86_64", tmp_path / "aarch64", LOCK) == []
    out = capsys.readouterr().out
    assert "== events: 1 visits on x86_64, 1 on aarch64" in out
    assert "ai-edge-litert" in out and "run" in out
