"""The ``trainer`` command line: click commands only, one module per job, thin over the
library module of the same name (``trainer.cli.train`` over ``trainer.train``, ...).

A command's module is imported only when that command runs (or ``--help`` lists it),
and the modules that import TensorFlow (train, losses, model, data, views, mxnet_keras)
only inside the functions that need them, so ``trainer evaluate`` on a device model
(numpy metrics) never loads it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from device.errors import PeepholeError

# Command name -> the module under trainer.cli whose ``command`` it is.
COMMANDS = {
    "prepare": "prepare",
    "teacher": "teacher",
    "import-mxnet": "import_mxnet",
    "train": "train",
    "export-tflite": "export",
    "write-manifest": "write_manifest",
    "evaluate": "evaluate",
}


class TrainerGroup(click.Group):
    """Loads subcommands on demand; expected errors become one line and exit 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        command: click.Command = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name]}").command
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PeepholeError as error:
            fail(str(error))
        except OSError as error:
            fail(f"{error.filename or 'I/O'}: {error.strerror or error}")
        except KeyboardInterrupt:
            click.echo("trainer: interrupted", err=True)
            sys.exit(130)


def fail(message: str) -> None:
    click.echo(f"trainer: error: {message}", err=True)
    sys.exit(1)


@click.group(cls=TrainerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="peephole", message="%(prog)s %(version)s")
def main() -> None:
    """trainer: prepare data, train, evaluate and export peephole's embedding model."""
