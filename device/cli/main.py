"""The ``peephole`` command line: a thin click layer over the device library.

Every expected failure is a :class:`PeepholeError` and leaves as one line on
stderr with exit status 1; usage errors exit 2 (click's convention).
"""

from __future__ import annotations

from pathlib import Path

import click

from device.cli.app import AppContext, PeepholeGroup, fail
from device.cli.calibrate import calibrate
from device.cli.enroll import enroll
from device.cli.gallery import gallery_group
from device.cli.identify import identify
from device.cli.inspect import inspect
from device.cli.logs import NORMAL, QUIET, VERBOSE, configure_logging
from device.cli.people import people
from device.cli.run import run
from device.cli.site import site_group
from device.cli.visits import visits
from device.cli.web import web
from device.config import load_config
from device.errors import PeepholeError


@click.group(cls=PeepholeGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (
    inspect,
    enroll,
    identify,
    people,
    visits,
    gallery_group,
    calibrate,
    run,
    site_group,
    web,
):
    main.add_command(command)
