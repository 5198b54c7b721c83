"""Training recipes: the options of a run, named presets, the teacher and the schedule.

Free of TensorFlow, so that ``trainer --help``, the command line and tests of the
schedule start fast; the loop that uses them is ``trainer.training``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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
    teacher: str = "dlib"
    teacher_mirror: bool = False
    clean_fraction: float = 0.5
    holdout: float = 0.02
    init_weights: str = ""
    max_steps: int = 0
    max_minutes: float = 0.0
    save_every: int = 500
    log_every: int = 50
    seed: int = 0
    progress: bool = True
    cpu_replicas: int = 1
    lfw_dir: str = ""
    lfw_pairs: str = ""
    lfw_cache: str = ""
    eval_every: int = 0

    @property
    def teacher_spec(self) -> TeacherSpec:
        return TeacherSpec.parse(self.teacher)


@dataclass(frozen=True)
class TeacherSpec:
    """Who teaches a distillation run: ``dlib`` (cached descriptors of clean crops), a
    ``.keras`` model run online on the student's own views, or both as ``dlib+PATH``."""

    cached_dlib: bool
    online_model: str

    @classmethod
    def parse(cls, text: str) -> TeacherSpec:
        parts = [part for part in text.split("+") if part]
        cached = "dlib" in parts
        online = [part for part in parts if part != "dlib"]
        if len(online) > 1 or not parts or (online and not online[0].endswith(".keras")):
            raise PeepholeError(
                f"--teacher {text!r}: expected dlib, a .keras model, or dlib+MODEL.keras"
            )
        return cls(cached, online[0] if online else "")


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
    # Consistent views from an online teacher; give --teacher MODEL.keras or dlib+MODEL.keras.
    "consistent": {
        "loss": "distill",
        "optimizer": "adam",
        "learning_rate": 2e-4,
        "schedule": "cosine",
        "warmup_epochs": 0.2,
        "epochs": 10,
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
