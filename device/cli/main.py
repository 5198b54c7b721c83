"""The ``peephole`` command line: a thin click layer over the device library.

Every expected failure is a :class:`PeepholeError` and leaves as one line on
stderr with exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from device.cli.app import AppContext, PeepholeGroup, fail
from device.cli.logs import NORMAL, QUIET, VERBOSE, configure_logging
from device.config import load_config
from device.errors import PeepholeError

# Each command's module, imported only when the command runs (or --help lists it): a
# command pays for its own imports only, and `peephole web` starts without OpenCV, LiteRT
# or the door's MQTT client (docs/web.md, "Memory").
COMMANDS = {
    "calibrate": "device.cli.calibrate:calibrate",
    "enroll": "device.cli.enroll:enroll",
    "gallery": "device.cli.gallery:gallery_group",
    "identify": "device.cli.identify:identify",
    "inspect": "device.cli.inspect:inspect",
    "people": "device.cli.people:people",
    "run": "device.cli.run:run",
    "site": "device.cli.site:site_group",
    "visits": "device.cli.visits:visits",
    "web": "device.cli.web:web",
}


class LazyPeepholeGroup(PeepholeGroup):
    """The top-level group: its commands come from :data:`COMMANDS` when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, _, attribute = COMMANDS[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyPeepholeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="peephole", message="%(prog)s %(version)s")
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="Configuration TOML file."
)
@click.option(
    "--db", "db_path", type=click.Path(path_type=Path), help="Gallery database (overrides config)."
)
@click.option(
    "--model", "model_path", type=click.Path(path_type=Path), help="Embedding model .tflite."
)
@click.option(
    "--manifest", "manifest_path", type=click.Path(path_type=Path), help="The model's manifest."
)
@click.option("-v", "--verbose", is_flag=True, help="Also log debug detail (stderr).")
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors (stderr).")
@click.pass_context
def main(
    ctx: click.Context,
    config_path: Path | None,
    db_path: Path | None,
    model_path: Path | None,
    manifest_path: Path | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """peephole: face recognition for a door camera."""
    if verbose and quiet:
        raise click.UsageError("choose one of --verbose and --quiet")
    configure_logging(VERBOSE if verbose else QUIET if quiet else NORMAL)
    try:
        config = load_config(config_path)
    except PeepholeError as error:
        fail(str(error))
    if db_path:
        config.gallery.path = str(db_path)
    ctx.obj = AppContext.create(config, model_path, manifest_path)
