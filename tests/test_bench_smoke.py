"""The comparison benchmark runs end to end on a few frames, so it cannot rot.

face_recognition (the ``bench`` extra) is used when installed; without it the
command still runs peephole's side and says the comparison is missing.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
HEADLINE_MEASURED = re.compile(
    r"^per-frame speedup vs face_recognition: \d+\.\dx \(LFW \d+\.\d\d% vs \d+\.\d\d%\)$"
)
HEADLINE_WITHOUT_FACEREC = re.compile(
    r"^per-frame speedup vs face_recognition: n/a \(face_recognition not run; "
    r"LFW \d+\.\d\d% vs n/a\)$"
)
SECTIONS = [
    "## Goals",
    "## Per-frame cost, same frames",
    "## LFW 10-fold accuracy",
    "## Footprint",
    "### Event latency",
    "### Model sizes",
    "### Installed size",
    "### Identification against larger galleries",
    "### Faces per frame",
    "## Raspberry Pi estimate",
]


def facerec_installed() -> bool:
    return all(importlib.util.find_spec(m) for m in ("dlib", "face_recognition"))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_compare_writes_the_report_and_the_headline(tmp_path: Path) -> None:
    for needed in (
        "data/video/short_hamilton_clip.mp4",
        "data/video/lin-manuel-miranda.png",
        "data/lfw/pairs.txt",
        "models/reference/mobilefacenet_insightface_f32.tflite",
    ):
        require_shared(needed)
    out = tmp_path / "report.md"
    result = subprocess.run(
        [
            sys.executable,
            "bench/compare.py",
            "--quick",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    headline = result.stdout.strip().splitlines()[-1]
    expected = HEADLINE_MEASURED if facerec_installed() else HEADLINE_WITHOUT_FACEREC
    assert expected.match(headline), headline

    report = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in report, section
    assert "Quick run" in report
    # MobileFaceNet's published cost is 221 M multiply-adds (Chen et al. 2018).
    assert re.search(r"\| peephole reference f32 \| 221 M \|", report)
    peak = re.search(r"\| peak resident memory of `peephole run` \| (\d+) MB \|", report)
    assert peak and 30 < int(peak.group(1)) < 2000
    assert (tmp_path / "cache").is_dir()


def test_a_short_door_day_runs_and_finds_the_same_visits() -> None:
    require_shared("data/video/short_hamilton_clip.mp4")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.door_day",
            "--empty-seconds",
            "2",
            "--doorstep-seconds",
            "4",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Same visits, names and liveness verdicts with and without: yes" in result.stdout
    assert "CPU share of one core on an empty doorstep" in result.stdout
