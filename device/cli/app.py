"""What every ``peephole`` command shares: the app context and error handling.

Every expected failure is a :class:`PeepholeError` and leaves as one line on
stderr with exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import click

from device.config import Config
from device.errors import ModelError, PeepholeError
from device.identity.gallery import Gallery
from device.identity.matching import Matcher, resolve_threshold
from device.site.model_store import deployed_file_name, deployed_models
from device.vision.embedder import FaceEmbedder
from device.vision.manifest import embedding_key, file_sha256, load_manifest_for
from device.vision.pipeline import FacePipeline, default_model_path

logger = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What every subcommand shares: the configuration and the global overrides."""

    config: Config
    model_override: Path | None = None
    manifest_override: Path | None = None
    _embedder: FaceEmbedder | None = field(default=None, repr=False)
    _pipeline: FacePipeline | None = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        """--model, else the model deployed to the site, else [model] path, else the default."""
        if self.model_override:
            return self.model_override
        deployed = self.deployed_models()
        if deployed:
            return deployed[0]
        if self.config.model.path:
            return Path(self.config.model.path)
        return default_model_path()

    def deployed_models(self) -> list[Path]:
        """On a site that deploys models: the ``current`` one and the ``previous`` one."""
        if not self.config.site.model_signer:
            return []
        return deployed_models(self.config.model.resolved_deployed_dir())

    @property
    def model_name(self) -> str:
        """The model's file name as the user knows it (a deployed one keeps its own)."""
        return deployed_file_name(self.model_path)

    def use_model(self, embedder: FaceEmbedder, path: Path) -> None:
        """From now on, run ``embedder`` (loaded from ``path``): a model deployed meanwhile."""
        self.model_override, self.manifest_override = path, None
        self._embedder = embedder
        if self._pipeline is not None:
            self._pipeline.embedder = embedder

    @property
    def manifest_path(self) -> Path | None:
        if self.manifest_override:
            return self.manifest_override
        if self.config.model.manifest and not self.model_override and not self.deployed_models():
            return Path(self.config.model.manifest)
        return None

    @property
    def gallery_path(self) -> Path:
        return self.config.gallery.resolved_path()

    def embedder(self) -> FaceEmbedder:
        if self._embedder is None:
            if not self.model_path.is_file() and self.model_path == default_model_path():
                raise ModelError(
                    f"the default model is not installed ({self.model_path}); pass --model FILE"
                )
            self._embedder = self._load_embedder()
            logger.debug(
                f"model {self.model_path} (embedding key {self._embedder.embedding_key[:12]})"
            )
        return self._embedder

    def _load_embedder(self) -> FaceEmbedder:
        threads = self.config.model.num_threads
        deployed = [] if self.model_override else self.deployed_models()
        if len(deployed) < 2:
            return FaceEmbedder.from_files(self.model_path, self.manifest_path, threads)
        try:
            return FaceEmbedder.from_files(deployed[0], None, threads)
        except ModelError as error:
            # Rollback: the model deployed before it loaded here, so run that.
            logger.warning(f"deployed model does not load ({error}); running the previous one")
            self.model_override = deployed[1]
            return FaceEmbedder.from_files(deployed[1], None, threads)

    def open_gallery(self) -> Gallery:
        """The configured gallery, which must exist already."""
        return Gallery.open(self.gallery_path, create=False)

    def matcher(self, gallery: Gallery, threshold: float | None = None) -> Matcher:
        """A matcher over ``gallery`` at the override, the config's or the manifest's threshold."""
        embedder = self.embedder()
        override = threshold if threshold is not None else self.config.model.threshold
        chosen = resolve_threshold(embedder.manifest.identification_threshold, override)
        return Matcher.from_gallery(
            gallery, embedder.embedding_key, chosen, self.config.model.margin
        )

    def embedding_key_without_loading(self) -> str:
        """The configured model's embedding key, from its file and manifest without loading it."""
        if not self.model_path.is_file():
            raise PeepholeError(f"model {self.model_path} is not installed; pass --model FILE")
        manifest = load_manifest_for(self.model_path, self.manifest_path)
        return embedding_key(file_sha256(self.model_path), manifest.mirror_average)

    def pipeline(self, with_embedder: bool = True) -> FacePipeline:
        if self._pipeline is None:
            self._pipeline = FacePipeline.from_config(self.config)
        if with_embedder and self._pipeline.embedder is None:
            self._pipeline.embedder = self.embedder()
        return self._pipeline


class PeepholeGroup(click.Group):
    """Turns expected errors into one line and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PeepholeError as error:
            fail(str(error))
        except sqlite3.DatabaseError as error:
            fail(f"database error: {error}")
        except OSError as error:
            fail(f"{error.filename or 'I/O'}: {error.strerror or error}")
        except KeyboardInterrupt:
            logger.info("interrupted")
            sys.exit(130)


def fail(message: str) -> None:
    logger.error(message)
    sys.exit(1)


P = ParamSpec("P")
R = TypeVar("R")


def pass_app(function: Callable[Concatenate[AppContext, P], R]) -> Callable[P, R]:
    """Pass the AppContext as the first argument (a typed click.make_pass_decorator)."""
    return click.make_pass_decorator(AppContext)(function)
