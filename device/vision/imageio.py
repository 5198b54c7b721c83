"""Reading untrusted image files: bounded in size, refused with one clear line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from device.errors import ImageError
from device.vision.image_header import header_size

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 32


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
