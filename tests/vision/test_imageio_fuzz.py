"""Untrusted image bytes: random, truncated, corrupted, oversized and decompression bombs.

Every input either decodes to a sane RGB array or is refused with a one-line
ImageError; nothing else escapes, and a bomb is refused in bounded time and memory.
"""

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device.errors import ImageError
from device.vision.imageio import MAX_FILE_BYTES, MIN_SIDE, decode_image, read_image
from tests.conftest import ROOT

# Hypothesis examples per property (the counts docs/security.md quotes).
RANDOM_BYTES_CASES = 400
TRUNCATED_CASES = 300
CORRUPTED_CASES = 300


def cases(count: int) -> settings:
    """Exactly ``count`` examples, the same ones every run (derandomized), no time limit."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def encoded_samples() -> dict[str, bytes]:
    """One small picture in every accepted format."""
    rng = np.random.default_rng(7)
    picture = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (5, 5), 0)
    samples = {}
    for extension in (".png", ".jpg", ".bmp", ".webp"):
        ok, data = cv2.imencode(extension, picture)
        assert ok
        samples[extension] = bytes(data)
    return samples


SAMPLES = encoded_samples()


def decode_or_refuse(data: bytes) -> None:
    try:
        image = decode_image(data, "input")
    except ImageError as error:
        message = str(error)
        assert message.startswith("input: ") and "\n" not in message
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= MIN_SIDE


@cases(RANDOM_BYTES_CASES)
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_in_one_line(data: bytes) -> None:
    decode_or_refuse(data)


@cases(RANDOM_BYTES_CASES)
@given(st.sampled_from(sorted(SAMPLES)), st.binary(min_size=1, max_size=2048))
def test_a_valid_header_followed_by_garbage_is_refused(kind: str, tail: bytes) -> None:
    decode_or_refuse(SAMPLES[kind][:64] + tail)


@cases(TRUNCATED_CASES)
@given(st.sampled_from(sorted(SAMPLES)), st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_images_decode_or_are_refused(kind: str, fraction: float) -> None:
    data = SAMPLES[kind]
    decode_or_refuse(data[: int(len(data) * fraction)])


@cases(CORRUPTED_CASES)
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=8),
)
def test_corrupted_images_decode_or_are_refused(
    kind: str, changes: list[tuple[float, int]]
) -> None:
    data = bytearray(SAMPLES[kind])
    for where, value in changes:
        data[int(where * len(data))] = value
    decode_or_refuse(bytes(data))


def png_header(width: int, height: int) -> bytes:
    body = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + body
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(body))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
    )


def jpeg_header(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + b"\x00" * 9
    return b"\xff\xd8" + sof + b"\x00" * 64 + b"\xff\xd9"


def webp_lossless_header(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    chunk = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 32
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


OVERSIZED = {
    "png": png_header(20_000, 20_000),
    "jpeg": jpeg_header(65_000, 65_000),
    "gif": b"GIF89a" + struct.pack("<HH", 65_535, 65_535) + b"\x00" * 64,
    "bmp": b"BM" + b"\x00" * 16 + struct.pack("<ii", 30_000, -30_000) + b"\x00" * 64,
    "webp": webp_lossless_header(16_384, 16_384),
}


@pytest.mark.parametrize("kind", sorted(OVERSIZED))
def test_oversized_dimensions_are_refused_from_the_header(kind: str) -> None:
    with pytest.raises(ImageError, match="megapixels"):
        decode_image(OVERSIZED[kind], kind)


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ImageError, match="larger than"):
        read_image(huge)


def deflate_tiff_bomb(side: int) -> bytes:
    """A grey TIFF of side x side zero pixels in one deflate strip: ~400 KB for 20000 px."""
    packer = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    strip_parts, left = [], side * side
    while left > 0:
        strip_parts.append(packer.compress(zeros[: min(left, len(zeros))]))
        left -= len(zeros)
    strip = b"".join(strip_parts) + packer.flush()
    entries = [
        (256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 8), (262, 3, 1),
        (273, 4, 0), (277, 3, 1), (278, 4, side), (279, 4, len(strip)),
    ]  # fmt: skip
    data_offset = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, kind, value in entries:
        value = data_offset if tag == 273 else value
        field = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + field
    return out + b"\x00\x00\x00\x00" + strip


PROBE = """
import json, resource, sys, time
from device.errors import ImageError
from device.vision.imageio import read_image
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    try:
        read_image(path)
        outcome = "decoded"
    except ImageError as error:
        outcome = str(error)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"path": path, "outcome": outcome, "grew_mib": (after - before) / 1024,
                      "seconds": time.monotonic() - started}))
"""


def test_decompression_bombs_are_refused_in_bounded_memory_and_time(tmp_path: Path) -> None:
    bombs = {
        "tiff": deflate_tiff_bomb(20_000),  # 400 Mpx; decoding it once took 2.4 GB and 12 s
        "png": png_header(50_000, 50_000) + b"\x00" * 1024,
        "webp": webp_lossless_header(16_384, 16_384),
    }
    paths = []
    for kind, data in bombs.items():
        paths.append(tmp_path / f"bomb.{kind}")
        paths[-1].write_bytes(data)
        assert len(data) < 1_000_000
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=True,
    )
    probes = [json.loads(line) for line in result.stdout.splitlines()]
    assert [probe["path"] for probe in probes] == [str(path) for path in paths]
    for probe in probes:
        assert probe["outcome"] != "decoded", probe
        assert probe["outcome"].startswith(probe["path"]) and "\n" not in probe["outcome"]
        assert probe["grew_mib"] < 64, probe
        assert probe["seconds"] < 2.0, probe
