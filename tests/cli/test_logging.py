"""The CLI's one log handler: stderr prefixes, --quiet, --verbose and journal priorities."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from device.cli import main
from device.cli.logs import StderrHandler, stderr_is_journal
from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[2]
TINA = "data/celebrity112/Tina_Fey"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI sets up the root logger; leave it as it was for the tests that follow."""
    root, own = logging.getLogger(), logging.getLogger("device")
    levels = root.level, own.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.setLevel(levels[0])
    own.setLevel(levels[1])


@pytest.fixture
def photos(tmp_path: Path) -> tuple[Path, Path]:
    """A wall (no face) and one good photo of a face."""
    wall = tmp_path / "wall.png"
    gradient = np.tile(np.linspace(40, 200, 160, dtype=np.uint8), (120, 1))
    cv2.imwrite(str(wall), cv2.merge([gradient, gradient, gradient]))
    face = sorted(require_shared(TINA).glob("*.png"), key=lambda p: int(p.stem))[0]
    return wall, face


def enroll(reference: tuple[Path, Path], db: Path, flag: str, photos: tuple[Path, Path]) -> Result:
    """``peephole [FLAG] enroll --name Tina --images WALL FACE`` in this process."""
    model, manifest = reference
    options = ["--db", str(db), "--model", str(model), "--manifest", str(manifest)]
    images = [str(path) for path in photos]
    return CliRunner().invoke(
        main, [*([flag] if flag else []), *options, "enroll", "--name", "Tina", "--images", *images]
    )


def test_progress_and_warnings_go_to_stderr_with_their_prefixes(
    reference_f32: tuple[Path, Path], photos: tuple[Path, Path], tmp_path: Path
) -> None:
    wall, face = photos
    result = enroll(reference_f32, tmp_path / "gallery.db", "", photos)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("enrolled Tina: 1 sample(s)")
    assert "peephole" not in result.stdout
    assert result.stderr.splitlines() == [
        f"peephole: warning: {wall}: skipped: no face",
        f"peephole: {face}: sample 1",
        "peephole: note: 5-10 varied photos recognise better than one or two",
    ]


def test_quiet_keeps_warnings_and_the_one_line_error(
    reference_f32: tuple[Path, Path], photos: tuple[Path, Path], tmp_path: Path
) -> None:
    wall, _ = photos
    db = tmp_path / "gallery.db"
    first = enroll(reference_f32, db, "--quiet", photos)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("enrolled Tina")
    assert first.stderr.splitlines() == [f"peephole: warning: {wall}: skipped: no face"]
    again = enroll(reference_f32, db, "-q", photos)
    assert again.exit_code == 1
    assert again.stderr.splitlines() == [
        "peephole: error: 'Tina' is already enrolled; "
        "use --append to add samples, or choose another name"
    ]


def test_verbose_adds_debug_detail(
    reference_f32: tuple[Path, Path], photos: tuple[Path, Path], tmp_path: Path
) -> None:
    _, face = photos
    result = enroll(reference_f32, tmp_path / "gallery.db", "-v", photos)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any(line.startswith(f"peephole: model {reference_f32[0]}") for line in lines), lines
    assert f"peephole: {face}: sample 1" in lines


def test_verbose_and_quiet_exclude_each_other() -> None:
    result = CliRunner().invoke(main, ["-v", "-q", "people", "list"])
    assert result.exit_code == 2 and "choose one of --verbose and --quiet" in result.stderr


def test_under_the_journal_each_line_carries_its_syslog_priority(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[mqtt]\npassword = "x"\n')
    config.chmod(0o644)
    missing = tmp_path / "missing.db"
    command = [sys.executable, "-m", "device", "-v", "--config", str(config), "--db", str(missing)]
    captured = tmp_path / "stderr"
    with captured.open("w") as stderr:
        status = os.fstat(stderr.fileno())
        environment = {**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        result = subprocess.run(
            [*command, "people", "list"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=environment,
            cwd=ROOT,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 1
    assert captured.read_text().splitlines() == [
        f"<7>config from {config}",
        f"<4>{config} is readable by other users (mode 644); run: chmod 600 {config}",
        f"<3>gallery {missing} does not exist (enroll someone first)",
    ]


def test_journal_stream_counts_only_when_it_is_stderr_itself(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as mine, (tmp_path / "b").open("w") as other:
        status = os.fstat(mine.fileno())
        named = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert stderr_is_journal(named, mine)
        # Inherited by a child whose stderr went elsewhere: not the journal.
        assert not stderr_is_journal(named, other)
        assert not stderr_is_journal({}, mine)
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, mine)
        assert not stderr_is_journal(named, io.StringIO())
