"""The gallery export file: people, their crops and every model's embeddings as JSON.

Binary fields (PNG crops, float32 vectors) travel as base64. Reading checks every
field, so a damaged or foreign file is refused before anything is imported.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from device.errors import GalleryError

EXPORT_FORMAT = "peephole-gallery/1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_export(records: list[dict[str, Any]], file: Path) -> None:
    """Write ``records`` (from ``Gallery.export_records``) atomically, readable by the owner only."""
    people = [
        {
            **person,
            "crops": [{**crop, "png": _b64(crop["png"])} for crop in person["crops"]],
            "embeddings": [
                {**embedding, "vector": _b64(embedding["vector"])}
                for embedding in person["embeddings"]
            ],
        }
        for person in records
    ]
    document = {"format": EXPORT_FORMAT, "exported": time.time(), "people": people}
    temporary = file.with_name(f".{file.name}.tmp")
    # The export holds face crops: readable by the owner only, like the gallery.
    descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(document, stream, ensure_ascii=False)
    os.replace(temporary, file)


def parse_export(file: Path) -> list[dict[str, Any]]:
    """The people of an export file, decoded and checked; GalleryError if it is not one."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GalleryError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryError(f"{file} is not a gallery export: {error}") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise GalleryError(f"{file} is not a gallery export (format {EXPORT_FORMAT!r})")
    try:
        return [_parse_person(person) for person in document["people"]]
    except (KeyError, TypeError, ValueError, IndexError, binascii.Error) as error:
        raise GalleryError(f"{file} is not a valid gallery export: {error!r}") from None


def _number(value: Any, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _parse_person(person: dict[str, Any]) -> dict[str, Any]:
    crops = [
        {
            "png": base64.b64decode(crop["png"], validate=True),
            "quality": _number(crop["quality"], optional=True),
            "source": str(crop["source"]),
            "created": _number(crop["created"]),
        }
        for crop in person["crops"]
    ]
    embeddings = []
    for embedding in person["embeddings"]:
        vector = base64.b64decode(embedding["vector"], validate=True)
        crop = embedding["crop"]
        if not vector or len(vector) % 4 or (crop is not None and not 0 <= int(crop) < len(crops)):
            raise ValueError(f"bad embedding of {person['name']!r}")
        sha = str(embedding["model_sha256"])
        if len(sha) != 64:
            raise ValueError(f"bad model sha256 {sha!r}")
        embeddings.append(
            {
                "crop": None if crop is None else int(crop),
                "model_sha256": sha,
                "vector": vector,
                "quality": _number(embedding["quality"], optional=True),
                "source": str(embedding["source"]),
                "created": _number(embedding["created"]),
            }
        )
    return {
        "name": str(person["name"]),
        "created": _number(person["created"]),
        "last_seen": _number(person["last_seen"], optional=True),
        "crops": crops,
        "embeddings": embeddings,
    }
