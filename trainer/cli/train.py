"""``trainer train``: the command over ``trainer.recipes`` (options, presets) and
``trainer.train`` (the loop), which loads TensorFlow and is imported only to run."""

from __future__ import annotations

from pathlib import Path

import click

from device.errors import PeepholeError
from trainer.cli.options import activation_option, lfw_options, path_option
from trainer.evaluate import LfwOptions
from trainer.recipes import LOSSES, PRESETS, options_from_cli


@click.command("train")
@click.argument("data", type=click.Path(path_type=Path))
@path_option("--run", "run_dir", required=True, help="Run folder: log, checkpoints, final model.")
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    help="A named recipe; explicit options override it.",
)
@click.option("--loss", type=click.Choice(LOSSES))
@activation_option(default=None, help="The MobileFaceNet student's activation.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]))
@click.option("--lr", "learning_rate", type=float)
@click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]))
@click.option("--warmup-epochs", type=float)
@path_option(
    "--init",
    "init_weights",
    help="Start from these weights: a run's last.weights.h5, an exported .tflite "
    "(e.g. the shipped model) whose weights are dequantised into MobileFaceNet, or a "
    ".keras model (e.g. from trainer import-mxnet), which then is the student's network.",
)
@click.option(
    "--teacher",
    help="dlib (cached by trainer teacher), a .keras model run online on the student's own "
    "augmented views (e.g. an imported network), or dlib+MODEL.keras for both.",
)
@click.option(
    "--clean-fraction",
    type=click.FloatRange(0.0, 1.0),
    help="With dlib+MODEL: the share of each batch left unaugmented for dlib's targets.",
)
@click.option(
    "--cpu-replicas",
    type=click.IntRange(1, 64),
    help="Without GPUs, split the CPU into this many MirroredStrategy replicas.",
)
@lfw_options(lfw_help="LFW images, for the report.", pairs="--lfw-pairs", folds=False)
@click.option("--eval-every", type=int, help="Measure LFW every N steps (with --lfw).")
@click.option(
    "--teacher-mirror",
    is_flag=True,
    default=None,
    help="Distil towards the mirror-averaged teacher descriptors (trainer teacher --mirror).",
)
@click.option("--max-steps", type=int, help="Stop after this many steps in all.")
@click.option("--max-minutes", type=float, help="Stop cleanly after this long.")
@click.option("--save-every", type=int, help="Checkpoint every N steps.")
@click.option("--log-every", type=int, help="Log and record the loss every N steps.")
@click.option("--seed", type=int)
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(
    data: Path,
    run_dir: Path,
    preset: str | None,
    resume: bool,
    quiet: bool,
    lfw: LfwOptions | None,
    **given: object,
) -> None:
    """Train an embedder on a prepared folder (see trainer prepare / trainer teacher)."""
    if not data.is_dir():
        raise PeepholeError(f"training data folder not found: {data}")
    if lfw is not None:
        given.update(lfw_dir=lfw.images, lfw_pairs=lfw.pairs_file, lfw_cache=lfw.cache)
    chosen = {k: (str(v) if isinstance(v, Path) else v) for k, v in given.items() if v is not None}
    chosen["progress"] = not quiet
    options = options_from_cli(str(data), str(run_dir), preset, chosen)
    from trainer.train import train

    result = train(options, resume=resume)
    click.echo(
        f"trained {result.steps} steps ({result.epochs:.2f} epochs) in {result.seconds:.0f} s; "
        f"model: {result.model_path}"
    )
    if result.holdout_cosine is not None:
        click.echo(f"held-out cosine to teacher: {result.holdout_cosine:.4f}")
