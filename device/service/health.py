"""The door's health report: a retained JSON status on ``<prefix>/<device_id>/status``.

Published at every connect (to whichever broker) and every ``[mqtt]
status_interval`` seconds, so a household with several doors sees from any
broker of the site which model and gallery each door runs, whether it keeps
up, and whether events are piling up. It is retained, so it outlives the
device: read it together with the retained ``availability`` (``offline`` from
the last will when the device dies).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class ModelInfo:
    """What the device recognises with: the model file's name and its embedding key."""

    file: str
    embedding_key: str


@dataclass(frozen=True)
class DeviceStatus:
    device_id: str
    version: str
    model_file: str
    # The first 12 hex digits, as the logs and ``peephole gallery`` show it.
    embedding_key: str
    gallery_generation: int
    people: int
    fps: float
    last_frame: str | None
    outbox_backlog: int
    broker: str | None
    status_interval: float
    time: str
    # The site this door shares its gallery with ("" alone), the fingerprint of
    # its site key (doors that show different ones cannot read each other's
    # records), and how many site records it refused.
    site: str = ""
    site_key: str = ""
    site_records_refused: int = 0
    # Why the last model deployed to the site was refused ("" when none was).
    model_refused: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (readers never see half of it), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    descriptor = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)


def read_status(path: Path) -> DeviceStatus | None:
    """The report a running door last wrote to ``path``; None if there is none (yet)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        return DeviceStatus(**values)
    except (OSError, ValueError, TypeError):
        return None


def iso_time(timestamp: float) -> str:
    """A wall-clock time as ISO 8601 in UTC, to the millisecond, like the events' timestamps."""
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
