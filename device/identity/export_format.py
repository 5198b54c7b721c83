"""The gallery export file: people, their crops and every model's embeddings as JSON.

The records are typed (``ExportedPerson`` with its ``ExportedCrop`` and
``ExportedEmbedding`` values): ``Gallery.export_records`` makes them,
``write_export`` writes them, ``parse_export`` reads them back and
``Gallery.import_records`` stores them. Binary fields (PNG crops, float32
vectors) travel as base64. Reading checks every field, so a damaged or foreign
file is refused before anything is imported.

Format ``peephole-gallery/2`` names each embedding's tag ``embedding_key``;
files of format ``peephole-gallery/1`` (where the same value was called
``model_sha256``) are still read.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.errors import GalleryError

EXPORT_FORMAT = "peephole-gallery/2"
# Each readable format and the name its embeddings give the embedding key.
_KEY_FIELD = {"peephole-gallery/1": "model_sha256", EXPORT_FORMAT: "embedding_key"}


@dataclass(frozen=True)
class ExportedCrop:
    """One stored aligned face: PNG bytes and how it was taken."""

    png: bytes
    quality: float | None
    source: str
    created: float


@dataclass(frozen=True)
class ExportedEmbedding:
    """One embedding; ``crop`` is the position of its crop in the person's ``crops``, if any."""

    crop: int | None
    embedding_key: str
    vector: bytes
    quality: float | None
    source: str
    created: float


@dataclass(frozen=True)
class ExportedPerson:
    """One person with everything stored about them."""

    name: str
    created: float
    last_seen: float | None
    crops: tuple[ExportedCrop, ...]
    embeddings: tuple[ExportedEmbedding, ...]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def person_to_json(person: ExportedPerson) -> dict[str, Any]:
    return {
        "name": person.name,
        "created": person.created,
        "last_seen": person.last_seen,
        "crops": [
            {
                "png": _b64(crop.png),
                "quality": crop.quality,
                "source": crop.source,
                "created": crop.created,
            }
            for crop in person.crops
        ],
        "embeddings": [
            {
                "crop": embedding.crop,
                "embedding_key": embedding.embedding_key,
                "vector": _b64(embedding.vector),
                "quality": embedding.quality,
                "source": embedding.source,
                "created": embedding.created,
            }
            for embedding in person.embeddings
        ],
    }


def write_export(records: Sequence[ExportedPerson], file: Path) -> None:
    """Write ``records`` (from ``Gallery.export_records``) atomically, readable by the owner only."""
    people = [person_to_json(person) for person in records]
    document = {"format": EXPORT_FORMAT, "exported": time.time(), "people": people}
    temporary = file.with_name(f".{file.name}.tmp")
    # The export holds face crops: readable by the owner only, like the gallery.
    descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(document, stream, ensure_ascii=False)
    os.replace(temporary, file)


def parse_export(file: Path) -> list[ExportedPerson]:
    """The people of an export file, decoded and checked; GalleryError if it is not one."""
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GalleryError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GalleryError(f"{file} is not a gallery export: {error}") from None
    found = document.get("format") if isinstance(document, dict) else None
    key_field = _KEY_FIELD.get(found) if isinstance(found, str) else None
    if key_field is None:
        raise GalleryError(f"{file} is not a gallery export (format {EXPORT_FORMAT!r})")
    try:
        return [person_from_json(person, key_field) for person in document["people"]]
    except (KeyError, TypeError, ValueError, IndexError, binascii.Error) as error:
        raise GalleryError(f"{file} is not a valid gallery export: {error!r}") from None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def person_from_json(person: dict[str, Any], key_field: str = "embedding_key") -> ExportedPerson:
    """One person as ``person_to_json`` wrote it; KeyError, TypeError or ValueError if damaged."""
    crops = tuple(
        ExportedCrop(
            png=base64.b64decode(crop["png"], validate=True),
            quality=_optional_number(crop["quality"]),
            source=str(crop["source"]),
            created=_number(crop["created"]),
        )
        for crop in person["crops"]
    )
    embeddings = []
    for embedding in person["embeddings"]:
        vector = base64.b64decode(embedding["vector"], validate=True)
        crop = embedding["crop"]
        if not vector or len(vector) % 4 or (crop is not None and not 0 <= int(crop) < len(crops)):
            raise ValueError(f"bad embedding of {person['name']!r}")
        key = str(embedding[key_field])
        if len(key) != 64:
            raise ValueError(f"bad embedding key {key!r}")
        embeddings.append(
            ExportedEmbedding(
                crop=None if crop is None else int(crop),
                embedding_key=key,
                vector=vector,
                quality=_optional_number(embedding["quality"]),
                source=str(embedding["source"]),
                created=_number(embedding["created"]),
            )
        )
    return ExportedPerson(
        name=str(person["name"]),
        created=_number(person["created"]),
        last_seen=_optional_number(person["last_seen"]),
        crops=crops,
        embeddings=tuple(embeddings),
    )
