"""Options that several ``trainer`` commands take, each declared once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from device.errors import PeepholeError
from trainer.evaluate import LfwOptions

Command = Callable[..., None]


def path_option(*declarations: str, **attributes: Any) -> Callable[[Command], Command]:
    """An option whose value is a ``Path``."""
    return click.option(*declarations, type=click.Path(path_type=Path), **attributes)


threads_option = click.option("--threads", default=2, show_default=True, help="TFLite threads.")

mirror_average_option = click.option(
    "--mirror-average",
    is_flag=True,
    help="Average each crop's embedding with its mirror image's, as the device then does "
    "(twice the embedding time); parity and thresholds are measured that way.",
)


def activation_option(
    default: str | None = "relu6", help: str = "The network a .weights.h5 checkpoint belongs to."
) -> Callable[[Command], Command]:
    return click.option(
        "--activation",
        type=click.Choice(["relu6", "prelu"]),
        default=default,
        show_default=default is not None,
        help=help,
    )


def lfw_options(
    lfw_help: str = "LFW images folder.",
    required: bool = False,
    pairs: str = "--pairs",
    folds: bool = True,
) -> Callable[[Command], Command]:
    """``--lfw``, ``pairs`` (``--pairs``), ``--folds`` (unless ``folds`` is false) and
    ``--lfw-cache``, handed to the command as one ``lfw: LfwOptions | None``, checked:
    both given or neither, the folder and the pairs file there."""

    def decorate(command: Command) -> Command:
        @functools.wraps(command)
        def with_lfw(
            *args: Any,
            lfw_dir: Path | None,
            lfw_pairs: Path | None,
            lfw_folds: int | None = None,
            lfw_cache: Path | None,
            **kwargs: Any,
        ) -> None:
            if (lfw_dir is None) != (lfw_pairs is None):
                raise PeepholeError(f"--lfw and {pairs} go together")
            lfw = None
            if lfw_dir is not None and lfw_pairs is not None:
                if not lfw_dir.is_dir():
                    raise PeepholeError(f"LFW folder not found: {lfw_dir}")
                if not lfw_pairs.is_file():
                    raise PeepholeError(f"pairs file not found: {lfw_pairs}")
                lfw = LfwOptions(lfw_dir, lfw_pairs, lfw_folds, lfw_cache)
            command(*args, lfw=lfw, **kwargs)

        declared = [
            path_option("--lfw", "lfw_dir", required=required, help=lfw_help),
            path_option(pairs, "lfw_pairs", required=required, help="LFW pairs.txt."),
        ]
        if folds:
            declared.append(
                click.option(
                    "--folds",
                    "lfw_folds",
                    type=click.IntRange(2, 10),
                    help="Use only the first N LFW folds (quicker).",
                )
            )
        declared.append(
            path_option(
                "--lfw-cache", help="Keep the aligned LFW crops in this .npz and reuse them."
            )
        )
        decorated: Command = with_lfw
        for option in reversed(declared):
            decorated = option(decorated)
        return decorated

    return decorate
