"""``trainer train``: options, named recipes and the command; the loop is in training.py.

Kept free of TensorFlow so that ``trainer --help`` and the other commands start fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import click

from device.errors import PeepholeError

LOSSES = ("distill", "arcface", "triplet")


@dataclass(frozen=True)
class TrainOptions:
    data: str
    run_dir: str
    loss: str = "distill"
    activation: str = "relu6"
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 2e-3
    schedule: str = "cosine"
    step_epochs: tuple[int, ...] = ()
    step_rates: tuple[float, ...] = ()
    warmup_epochs: float = 1.0
    weight_decay: float = 5e-4
    arcface_scale: float = 64.0
    arcface_margin: float = 0.5
    triplet_margin: float = 0.2
    identities_per_batch: int = 16
    images_per_identity: int = 4
    relation_weight: float = 1.0
    teacher_mirror: bool = False
    holdout: float = 0.02
    init_weights: str = ""
    max_steps: int = 0
    max_minutes: float = 0.0
    save_every: int = 500
    log_every: int = 50
    seed: int = 0
    progress: bool = True


# Named recipes; command-line options given explicitly override them.
PRESETS: dict[str, dict[str, object]] = {
    # The seed system's FaceNet recipe.
    "seed-rmsprop": {
        "loss": "triplet",
        "optimizer": "rmsprop",
        "learning_rate": 0.1,
        "schedule": "step",
        "step_epochs": (300, 400, 1000),
        "step_rates": (0.01, 0.001, 0.0001),
        "warmup_epochs": 0.0,
        "epochs": 1100,
    },
    "arcface": {
        "loss": "arcface",
        "optimizer": "sgd",
        "learning_rate": 0.1,
        "schedule": "cosine",
        "warmup_epochs": 1.0,
        "epochs": 40,
        "batch_size": 64,
    },
    "distill": {
        "loss": "distill",
        "optimizer": "adam",
        "learning_rate": 2e-3,
        "schedule": "cosine",
        "warmup_epochs": 0.5,
        "epochs": 30,
        "batch_size": 64,
    },
}


def learning_rate_at(options: TrainOptions, epoch: float) -> float:
    """The rate at a fractional epoch: linear warmup, then cosine or step decay."""
    if options.warmup_epochs and epoch < options.warmup_epochs:
        return options.learning_rate * (epoch + 1e-3) / options.warmup_epochs
    if options.schedule == "step":
        rate = options.learning_rate
        for boundary, value in zip(options.step_epochs, options.step_rates, strict=True):
            if epoch >= boundary:
                rate = value
        return rate
    if options.schedule == "constant":
        return options.learning_rate
    span = max(options.epochs - options.warmup_epochs, 1e-6)
    progress = min(max((epoch - options.warmup_epochs) / span, 0.0), 1.0)
    return options.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def options_from_cli(
    data: str, run_dir: str, preset: str | None, given: dict[str, object]
) -> TrainOptions:
    """Defaults, then the preset, then every option the user typed."""
    options = TrainOptions(data=data, run_dir=run_dir)
    if preset:
        options = replace(options, **PRESETS[preset])  # type: ignore[arg-type]
    return replace(options, **given)  # type: ignore[arg-type]


def register(group: click.Group) -> None:
    @group.command("train")
    @click.argument("data", type=click.Path(path_type=Path))
    @click.option(
        "--run",
        "run_dir",
        required=True,
        type=click.Path(path_type=Path),
        help="Run folder: log, checkpoints, final model.",
    )
    @click.option(
        "--preset",
        type=click.Choice(sorted(PRESETS)),
        help="A named recipe; explicit options override it.",
    )
    @click.option("--loss", type=click.Choice(LOSSES))
    @click.option("--activation", type=click.Choice(["relu6", "prelu"]))
    @click.option("--epochs", type=int)
    @click.option("--batch-size", type=int)
    @click.option("--optimizer", type=click.Choice(["adam", "sgd", "rmsprop"]))
    @click.option("--lr", "learning_rate", type=float)
    @click.option("--schedule", type=click.Choice(["cosine", "step", "constant"]))
    @click.option("--warmup-epochs", type=float)
    @click.option(
        "--init",
        "init_weights",
        type=click.Path(path_type=Path),
        help="Start from these weights: a run's last.weights.h5, or an exported .tflite "
        "(e.g. the shipped model) whose weights are dequantised into the network.",
    )
    @click.option(
        "--teacher-mirror",
        is_flag=True,
        default=None,
        help="Distil towards the mirror-averaged teacher descriptors (trainer teacher --mirror).",
    )
    @click.option("--max-steps", type=int, help="Stop after this many steps in all.")
    @click.option("--max-minutes", type=float, help="Stop cleanly after this long.")
    @click.option("--save-every", type=int, help="Checkpoint every N steps.")
    @click.option("--seed", type=int)
    @click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
    @click.option("--quiet", is_flag=True, help="No progress bars.")
    def train_command(
        data: Path, run_dir: Path, preset: str | None, resume: bool, quiet: bool, **given: object
    ) -> None:
        """Train MobileFaceNet on a prepared folder (see trainer prepare / trainer teacher)."""
        if not data.is_dir():
            raise PeepholeError(f"training data folder not found: {data}")
        chosen = {
            k: (str(v) if isinstance(v, Path) else v) for k, v in given.items() if v is not None
        }
        chosen["progress"] = not quiet
        options = options_from_cli(str(data), str(run_dir), preset, chosen)
        from trainer.training import train

        result = train(options, resume=resume)
        click.echo(
            f"trained {result.steps} steps ({result.epochs:.2f} epochs) in {result.seconds:.0f} s; "
            f"model: {result.model_path}"
        )
        if result.holdout_cosine is not None:
            click.echo(f"held-out cosine to teacher: {result.holdout_cosine:.4f}")
