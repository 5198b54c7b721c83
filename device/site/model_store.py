"""Deployed models on a door: ``<models>/<sha256>/model.{tflite,json}`` and a ``current`` link.

The same layout as ``firmware_scripts/deploy-model.sh``. A model is written to
a staging folder and must load and match its manifest there (the check the
service makes at start) before it is renamed into place; ``current`` is then
switched with one rename, and ``previous`` keeps the model it replaced, so a
door whose ``current`` will not load falls back to it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from device.errors import ModelError, PeepholeError
from device.vision.embedder import FaceEmbedder

if TYPE_CHECKING:  # a bundle arrives sealed; opening it needs the site key's cryptography
    from device.site.model_bundle import ModelBundle

MODEL_FILE = "model.tflite"
MANIFEST_FILE = "model.json"
ORIGIN_FILE = "deployed.json"


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def stored_model(models_dir: Path, sha256: str) -> Path:
    """Where the model with this sha256 is stored once installed."""
    return models_dir / sha256 / MODEL_FILE


def install_model(bundle: ModelBundle, models_dir: Path, num_threads: int) -> FaceEmbedder:
    """Store the bundle's model under its sha256 if it loads and matches its manifest.

    ModelError (and nothing stored) if it does not. ``current`` is not touched.
    The model is loaded once, from the staging folder; the rename that puts it
    in place keeps the open file.
    """
    target = models_dir / bundle.model_sha256
    try:
        models_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        if target.is_dir():
            return FaceEmbedder.from_files(
                stored_model(models_dir, bundle.model_sha256), target / MANIFEST_FILE, num_threads
            )
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_dir))
        try:
            _write(staging / MODEL_FILE, bundle.model)
            _write(staging / MANIFEST_FILE, bundle.manifest)
            origin = {"file_name": bundle.file_name, "deployed": bundle.deployed}
            _write(staging / ORIGIN_FILE, json.dumps(origin).encode("utf-8"))
            embedder = FaceEmbedder.from_files(
                staging / MODEL_FILE, staging / MANIFEST_FILE, num_threads
            )
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as error:
        raise ModelError(f"cannot store the deployed model in {models_dir}: {error}") from None
    except PeepholeError as error:
        raise ModelError(f"deployed model {bundle.file_name} does not load: {error}") from None
    return embedder


def switch_current(models_dir: Path, sha256: str) -> None:
    """Point ``current`` at the stored model ``sha256`` (one rename); ``previous`` at the old one."""
    current = models_dir / "current"
    old = os.readlink(current) if current.is_symlink() else None
    for name, target in (("previous", old), ("current", sha256)):
        if target is None or (name == "previous" and target == sha256):
            continue
        temporary = models_dir / f".{name}.new"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        os.replace(temporary, models_dir / name)


def deployed_models(models_dir: Path) -> list[Path]:
    """The model files ``current`` and ``previous`` point at, those that exist, in that order."""
    paths = [models_dir / link / MODEL_FILE for link in ("current", "previous")]
    return [path for path in paths if path.is_file()]


def deployed_file_name(model_path: Path) -> str:
    """The name the model had when it was deployed (``model.tflite`` if unknown)."""
    try:
        origin = json.loads((model_path.parent / ORIGIN_FILE).read_text(encoding="utf-8"))
        return str(origin["file_name"])
    except (OSError, ValueError, KeyError, TypeError):
        return model_path.name
