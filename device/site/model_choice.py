"""Which embedding model a door runs, for every program that needs it (CLI, service, web).

``--model`` (an override), else on a site that deploys models the ``current``
one (falling back to ``previous`` when ``current`` does not load), else
``[model] path``, else the model shipped with peephole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from device.config import Config
from device.errors import ModelError
from device.site.model_store import deployed_file_name, deployed_models, stored_model
from device.vision.embedder import FaceEmbedder, default_model_path
from device.vision.manifest import embedding_key, file_sha256, load_manifest_for

logger = logging.getLogger(__name__)


@dataclass
class ModelChoice:
    """The model (and manifest) chosen from the config and the overrides; loaded once."""

    config: Config
    model_override: Path | None = None
    manifest_override: Path | None = None
    _embedder: FaceEmbedder | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        if self.model_override:
            return self.model_override
        deployed = self.deployed()
        if deployed:
            return deployed[0]
        if self.config.model.path:
            return Path(self.config.model.path)
        return default_model_path()

    @property
    def manifest_path(self) -> Path | None:
        """An explicit manifest, or None for the one beside the model."""
        if self.manifest_override:
            return self.manifest_override
        if self.config.model.manifest and not self.model_override and not self.deployed():
            return Path(self.config.model.manifest)
        return None

    @property
    def name(self) -> str:
        """The model's file name as the user knows it (a deployed one keeps its own)."""
        return deployed_file_name(self.path)

    def deployed(self) -> list[Path]:
        """On a site that deploys models: the ``current`` one and the ``previous`` one."""
        if not self.config.site.model_signer:
            return []
        return deployed_models(self.config.model.resolved_deployed_dir())

    def embedder(self) -> FaceEmbedder:
        """The chosen model, loaded (once) and checked against its manifest."""
        if self._embedder is None:
            if not self.path.is_file() and self.path == default_model_path():
                raise ModelError(
                    f"the default model is not installed ({self.path}); pass --model FILE"
                )
            self._embedder = self._load()
            logger.debug(f"model {self.path} (embedding key {self._embedder.embedding_key[:12]})")
        return self._embedder

    def use(self, embedder: FaceEmbedder) -> None:
        """From now on, the model deployed meanwhile that ``embedder`` runs."""
        self.model_override = stored_model(
            self.config.model.resolved_deployed_dir(), embedder.sha256
        )
        self.manifest_override = None
        self._embedder = embedder

    def embedding_key_without_loading(self) -> str:
        """The chosen model's embedding key, from its file and manifest without loading it."""
        if not self.path.is_file():
            raise ModelError(f"model {self.path} is not installed; pass --model FILE")
        manifest = load_manifest_for(self.path, self.manifest_path)
        return embedding_key(file_sha256(self.path), manifest.mirror_average)

    def _load(self) -> FaceEmbedder:
        threads = self.config.model.num_threads
        deployed = [] if self.model_override else self.deployed()
        if len(deployed) < 2:
            return FaceEmbedder.from_files(self.path, self.manifest_path, threads)
        try:
            return FaceEmbedder.from_files(deployed[0], None, threads)
        except ModelError as error:
            # Rollback: the model deployed before it loaded here, so run that.
            logger.warning(f"deployed model does not load ({error}); running the previous one")
            self.model_override = deployed[1]
            return FaceEmbedder.from_files(deployed[1], None, threads)
