"""``peephole inspect`` on good and bad input: one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from device.cli import main
from tests.conftest import read_bgr, require_shared


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge size: a decompression bomb's first bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def bad_inputs(tmp_path: Path) -> dict[str, Path]:
    good = require_shared("data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg").read_bytes()
    files = {
        "missing": tmp_path / "does-not-exist.jpg",
        "text": tmp_path / "notes.jpg",
        "truncated": tmp_path / "truncated.jpg",
        "empty": tmp_path / "empty.png",
        "one_pixel": tmp_path / "one.png",
        "huge": tmp_path / "huge.png",
        "folder_as_file": tmp_path / "folder.jpg",
    }
    files["text"].write_text("this is not an image\n")
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["empty"].write_bytes(b"")
    cv2.imwrite(str(files["one_pixel"]), np.zeros((1, 1, 3), dtype=np.uint8))
    files["huge"].write_bytes(png_claiming(60000, 60000))
    files["folder_as_file"].mkdir()
    return files


@pytest.mark.parametrize(
    "case", ["missing", "text", "truncated", "empty", "one_pixel", "huge", "folder_as_file"]
)
def test_bad_input_is_one_line_and_exit_1(bad_inputs: dict[str, Path], case: str) -> None:
    """Run as a real process so that nothing (a traceback, a C library warning) is hidden."""
    result = subprocess.run(
        [sys.executable, "-m", "device", "inspect", str(bad_inputs[case])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("peephole:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert str(bad_inputs[case]) in errors[0]


def test_inspect_reports_every_face_and_annotates(tmp_path: Path) -> None:
    first = read_bgr(require_shared("data/lfw/images/Abel_Pacheco/Abel_Pacheco_0001.jpg"))
    second = read_bgr(require_shared("data/lfw/images/Akhmed_Zakayev/Akhmed_Zakayev_0001.jpg"))
    pair = tmp_path / "pair.jpg"
    cv2.imwrite(str(pair), np.hstack([first, second]))
    result = CliRunner().invoke(
        main, ["inspect", "--json", "--annotate", str(tmp_path / "out"), str(pair)]
    )
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert len(records) == 2
    assert all(r["verdict"] == "ok" for r in records)
    annotated = cv2.imread(str(tmp_path / "out" / "pair.jpg"))
    assert annotated is not None and annotated.shape == (250, 500, 3)


def test_inspect_says_no_face(tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, dtype=np.uint8))
    result = CliRunner().invoke(main, ["inspect", str(blank)])
    assert result.exit_code == 0
    assert result.output.strip() == f"{blank}: no face"
