"""Errors that reach the user as one line: each carries a message meant to be read."""

import shutil
from pathlib import Path

# SQLite needs room for its WAL and shared-memory files even to read a database.
_FULL_BELOW_BYTES = 64 * 1024


class PeepholeError(Exception):
    """Base class: the command-line edge prints str(error) and exits non-zero."""


class ConfigError(PeepholeError):
    """The configuration file or an override is invalid."""


class ModelError(PeepholeError):
    """A model file is missing, unreadable or not a valid TFLite model."""


class ManifestError(ModelError):
    """A model's sidecar manifest is missing, invalid or does not match the model."""


class ImageError(PeepholeError):
    """An image could not be read or decoded, or is unusable."""


class GalleryError(PeepholeError):
    """The gallery database refused an operation; nothing was changed."""


class SourceError(PeepholeError):
    """A frame source could not be opened or stopped delivering frames."""


def disk_full_hint(path: Path) -> str:
    """`` (the disk holding FOLDER is full)`` when it is: SQLite then says only "disk I/O error"."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return ""
    return f" (the disk holding {path.parent} is full)" if free < _FULL_BELOW_BYTES else ""
