"""What every ``peephole`` command shares: the app context and error handling.

Every expected failure is a :class:`PeepholeError` and leaves as one line on
stderr with exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import click

from device.cli.logs import ensure_logging
from device.config import Config
from device.errors import PeepholeError
from device.identity.gallery import Gallery
from device.identity.matching import Matcher, resolve_threshold
from device.site.model_choice import ModelChoice
from device.vision.embedder import FaceEmbedder

if TYPE_CHECKING:
    from device.vision.pipeline import FacePipeline

logger = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What every subcommand shares: the configuration and the model chosen for it."""

    config: Config
    models: ModelChoice
    _pipeline: FacePipeline | None = field(default=None, repr=False)

    @classmethod
    def create(
        cls, config: Config, model: Path | None = None, manifest: Path | None = None
    ) -> AppContext:
        return cls(config, ModelChoice(config, model_override=model, manifest_override=manifest))

    @property
    def gallery_path(self) -> Path:
        return self.config.gallery.resolved_path()

    def embedder(self) -> FaceEmbedder:
        return self.models.embedder()

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

    def pipeline(self, with_embedder: bool = True) -> FacePipeline:
        if self._pipeline is None:
            # Imported here: the detector brings OpenCV, which `peephole web` does without.
            from device.vision.pipeline import FacePipeline

            self._pipeline = FacePipeline.from_config(self.config)
        if with_embedder and self._pipeline.embedder is None:
            self._pipeline.embedder = self.embedder()
        return self._pipeline


class CommandGroup(click.Group):
    """A group whose ``--help`` lists each command's whole summary, wrapped, never cut."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = [
            (name, command)
            for name in self.list_commands(ctx)
            if (command := self.get_command(ctx, name)) is not None and not command.hidden
        ]
        if commands:
            with formatter.section("Commands"):
                formatter.write_dl(
                    [(name, c.get_short_help_str(limit=500)) for name, c in commands]
                )


class PeepholeGroup(CommandGroup):
    """Turns expected errors into one line and a non-zero exit, never a traceback.

    A usage error (a wrong option or argument) is one ``peephole: error:`` line
    too, with exit status 2; a failure of the command itself exits with 1.
    """

    def main(  # type: ignore[override]
        self, args: Sequence[str] | None = None, standalone_mode: bool = True, **extra: Any
    ) -> Any:
        if not standalone_mode:
            return super().main(args, standalone_mode=False, **extra)
        try:
            status = super().main(args, standalone_mode=False, **extra)
        except click.UsageError as error:
            where = error.ctx.command_path if error.ctx is not None else "peephole"
            usage_error(f"{error.format_message()} (see '{where} --help')", error.exit_code)
        except click.ClickException as error:
            usage_error(error.format_message(), error.exit_code)
        except click.Abort:
            usage_error("aborted", 1)
        sys.exit(status if isinstance(status, int) else 0)

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


def usage_error(message: str, status: int) -> None:
    """One line on stderr, whether or not logging is set up yet (options are parsed first)."""
    sys.stderr.write(f"peephole: error: {message}\n")
    sys.exit(status)


def fail(message: str) -> None:
    ensure_logging()
    logger.error(message)
    sys.exit(1)


P = ParamSpec("P")
R = TypeVar("R")


def pass_app(function: Callable[Concatenate[AppContext, P], R]) -> Callable[P, R]:
    """Pass the AppContext as the first argument (a typed click.make_pass_decorator)."""
    return click.make_pass_decorator(AppContext)(function)
