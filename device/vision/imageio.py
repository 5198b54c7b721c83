"""Reading untrusted image files: bounded in size, refused with one clear line."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from device.errors import ImageError

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 32


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, GIF, BMP or WebP header, without decoding pixels."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return width, height
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        return _webp_size(data)
    if data[:2] == b"\xff\xd8":
        offset = 2
        while offset + 9 <= len(data):
            if data[offset] != 0xFF:
                return None
            marker = data[offset + 1]
            if marker == 0xFF:
                offset += 1
                continue
            (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
                return width, height
            offset += 2 + length
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes to an RGB uint8 array, refusing anything unsafe or broken."""
    if not data:
        raise ImageError(f"{name}: file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{name}: file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    size = header_size(data)
    # Only formats whose size is known before decoding: a small compressed TIFF
    # can unpack to gigabytes before OpenCV's own pixel limit refuses it.
    if size is None:
        raise ImageError(f"{name}: not a readable image (PNG, JPEG, GIF, BMP or WebP)")
    if size[0] * size[1] > MAX_PIXELS:
        raise ImageError(
            f"{name}: {size[0]}x{size[1]} is more than {MAX_PIXELS // 1_000_000} megapixels"
        )
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:]:
        raise ImageError(f"{name}: JPEG is truncated (no end-of-image marker)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(f"{name}: not a readable image")
    height, width = image.shape[:2]
    if height * width > MAX_PIXELS:
        raise ImageError(
            f"{name}: {width}x{height} is more than {MAX_PIXELS // 1_000_000} megapixels"
        )
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"{name}: {width}x{height} is too small to hold a face (under {MIN_SIDE} px)"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path}: is a folder, not an image")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ImageError(f"{path}: file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror or error})") from None
    return decode_image(data, str(path))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}


def expand_image_paths(paths: list[Path]) -> list[Path]:
    """Files as given, folders expanded (recursively, sorted) to the images inside."""
    result: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{path}: no images in this folder")
            result.extend(found)
        else:
            result.append(path)
    return result
