"""The ``trainer`` command line itself: its version, and the LFW options every command
that measures on LFW shares (declared once, checked the same way, before any work)."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainer.cli import main


def test_version_is_the_package_version() -> None:
    result = CliRunner().invoke(main, ["--version"], prog_name="trainer")
    assert result.exit_code == 0
    assert result.output == f"trainer {version('peephole')}\n"


@pytest.mark.parametrize(
    ("command", "pairs"),
    [
        (["evaluate", "--model", "m.tflite"], "--pairs"),
        (
            ["export-tflite", "--model", "m.keras", "--output", "o.tflite", "--crops", "c"],
            "--pairs",
        ),
        (["write-manifest", "--model", "m.tflite"], "--pairs"),
        (["train", ".", "--run", "run"], "--lfw-pairs"),
    ],
)
def test_lfw_options_are_checked_alike_in_every_command(
    command: list[str], pairs: str, tmp_path: Path
) -> None:
    (tmp_path / "pairs.txt").write_text("10\t300\n")
    runner = CliRunner()
    if command[0] != "write-manifest":  # there both are required (click's own usage error)
        alone = runner.invoke(main, [*command, "--lfw", str(tmp_path)])
        assert alone.exit_code == 1
        assert alone.output.splitlines() == [f"trainer: error: --lfw and {pairs} go together"]
    absent = tmp_path / "nowhere"
    no_folder = runner.invoke(
        main, [*command, "--lfw", str(absent), pairs, str(tmp_path / "pairs.txt")]
    )
    assert no_folder.exit_code == 1
    assert no_folder.output.splitlines() == [f"trainer: error: LFW folder not found: {absent}"]
    no_pairs = runner.invoke(main, [*command, "--lfw", str(tmp_path), pairs, str(absent)])
    assert no_pairs.exit_code == 1
    assert no_pairs.output.splitlines() == [f"trainer: error: pairs file not found: {absent}"]
