"""The training loop: MobileFaceNet with ArcFace, triplet or distillation; resumable runs.

A run lives in its own folder: ``train.log`` (one line per logging interval),
``options.json``, and a checkpoint (``last.weights.h5`` with the model, ArcFace
head and optimiser state, plus ``state.json`` with the step) written every
``save_every`` steps and at the end of every epoch, so ``--resume`` continues an
interrupted run where it stopped. ``model.keras`` is the final float model that
``trainer export-tflite`` reads.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from device.errors import PeepholeError
from trainer.data import (
    CropSet,
    load_prepared,
    pair_dataset,
    teacher_targets,
    triplet_dataset,
)
from trainer.losses import ArcFaceHead, arcface_loss, distillation_loss, triplet_semihard_loss
from trainer.model import build_mobilefacenet
from trainer.teacher import load_teacher_targets
from trainer.train import LOSSES, TrainOptions, learning_rate_at
from trainer.warmstart import load_tflite_weights


def make_optimizer(options: TrainOptions) -> keras.optimizers.Optimizer:
    if options.optimizer == "rmsprop":
        # TensorFlow 1's RMSProp as FaceNet used it: decay 0.9, momentum 0.9, epsilon 1.0
        return keras.optimizers.RMSprop(options.learning_rate, rho=0.9, momentum=0.9, epsilon=1.0)
    if options.optimizer == "sgd":
        return keras.optimizers.SGD(options.learning_rate, momentum=0.9, nesterov=True)
    if options.optimizer == "adam":
        return keras.optimizers.Adam(options.learning_rate)
    raise PeepholeError(f"unknown optimizer {options.optimizer!r} (adam, sgd, rmsprop)")


@dataclass
class TrainResult:
    steps: int
    epochs: float
    seconds: float
    final_loss: float
    holdout_cosine: float | None
    model_path: Path


class Trainer:
    """One run: data, model, optional ArcFace head, optimiser and checkpoints."""

    def __init__(self, options: TrainOptions) -> None:
        if options.loss not in LOSSES:
            raise PeepholeError(f"unknown loss {options.loss!r} ({', '.join(LOSSES)})")
        self.options = options
        self.run_dir = Path(options.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = _run_logger(self.run_dir / "train.log")
        keras.utils.set_random_seed(options.seed)
        crops = load_prepared(Path(options.data), progress=options.progress)
        self.train_set, self.holdout_set, self.targets, self.holdout_targets = self._split(crops)
        self.model = build_mobilefacenet(options.activation, weight_decay=options.weight_decay)
        if options.init_weights.endswith(".tflite"):
            sample = np.random.default_rng(options.seed).permutation(len(self.train_set))[:512]
            load_tflite_weights(
                self.model, Path(options.init_weights), self.train_set.images[sample]
            )
        elif options.init_weights:
            self.model.load_weights(options.init_weights)
        self.head: ArcFaceHead | None = None
        if options.loss == "arcface":
            self.head = ArcFaceHead(
                len(crops.identities), options.arcface_scale, options.arcface_margin, name="arcface"
            )
            self.head.build((None, 128))
        self.optimizer = make_optimizer(options)
        self.optimizer.build(self._variables())
        self.steps_per_epoch = self._steps_per_epoch()
        self.step = 0

    def _split(
        self, crops: CropSet
    ) -> tuple[CropSet, CropSet | None, np.ndarray, np.ndarray | None]:
        options = self.options
        if options.loss == "distill":
            by_source = load_teacher_targets(Path(options.data), options.teacher_mirror)
            rows = np.array([i for i, s in enumerate(crops.sources) if s in by_source], dtype=int)
            if not len(rows):
                command = "trainer teacher" + (" --mirror" if options.teacher_mirror else "")
                raise PeepholeError(
                    f"{options.data}: no teacher embeddings cached (run {command} first)"
                )
            crops = crops.subset(rows)
            raw = np.stack([by_source[s] for s in crops.sources])
            targets, _ = teacher_targets(raw)
        else:
            if (crops.labels < 0).any() or not crops.identities:
                raise PeepholeError(f"{options.data}: {options.loss} needs a folder per identity")
            targets = crops.labels
        order = np.random.default_rng(options.seed).permutation(len(crops))
        held = int(len(crops) * options.holdout) if options.loss == "distill" else 0
        if held == 0:
            return crops, None, targets, None
        holdout, train = order[:held], order[held:]
        return crops.subset(train), crops.subset(holdout), targets[train], targets[holdout]

    def _steps_per_epoch(self) -> int:
        options = self.options
        if options.loss == "triplet":
            per_batch = options.identities_per_batch * options.images_per_identity
        else:
            per_batch = options.batch_size
        return max(1, len(self.train_set) // per_batch)

    def _variables(self) -> list[keras.Variable]:
        variables = list(self.model.trainable_variables)
        if self.head is not None:
            variables += list(self.head.trainable_variables)
        return variables

    def _dataset(self) -> tf.data.Dataset:
        options = self.options
        if options.loss == "triplet":
            return triplet_dataset(
                self.train_set.images,
                self.train_set.labels,
                options.identities_per_batch,
                options.images_per_identity,
                seed=options.seed + self.step,
            )
        dataset = pair_dataset(
            self.train_set.images, self.targets, options.batch_size, True, options.seed + self.step
        )
        return dataset.repeat()

    def _loss(self, embeddings: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        options = self.options
        if options.loss == "distill":
            return distillation_loss(embeddings, targets, options.relation_weight)
        if options.loss == "triplet":
            return triplet_semihard_loss(embeddings, targets, options.triplet_margin)
        assert self.head is not None
        return arcface_loss(self.head, embeddings, targets)

    def _train_step_fn(self):  # type: ignore[no-untyped-def]
        variables = self._variables()

        @tf.function(reduce_retracing=True)
        def train_step(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                embeddings = self.model(images, training=True)
                loss = self._loss(embeddings, targets)
                total = loss + tf.add_n(self.model.losses) if self.model.losses else loss
            gradients = tape.gradient(total, variables)
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return loss

        return train_step

    # checkpoints -----------------------------------------------------------------------------
    def save(self) -> None:
        weights = self.run_dir / "last.weights.h5"
        partial = self.run_dir / "last.partial.weights.h5"
        self.model.save_weights(partial)
        partial.replace(weights)
        arrays = {f"v{i}": v.numpy() for i, v in enumerate(self.optimizer.variables)}
        if self.head is not None:
            arrays["head"] = self.head.centres.numpy()
        with open(self.run_dir / "optimizer.partial.npz", "wb") as stream:
            np.savez(stream, **arrays)
        (self.run_dir / "optimizer.partial.npz").replace(self.run_dir / "optimizer.npz")
        state = {"step": self.step, "epoch": self.step / self.steps_per_epoch}
        (self.run_dir / "state.json").write_text(json.dumps(state) + "\n")

    def restore(self) -> bool:
        state_file = self.run_dir / "state.json"
        if not state_file.is_file():
            return False
        self.model.load_weights(self.run_dir / "last.weights.h5")
        with np.load(self.run_dir / "optimizer.npz") as arrays:
            for i, variable in enumerate(self.optimizer.variables):
                variable.assign(arrays[f"v{i}"])
            if self.head is not None:
                self.head.centres.assign(arrays["head"])
        self.step = int(json.loads(state_file.read_text())["step"])
        return True

    # the loop ----------------------------------------------------------------------------------
    def holdout_cosine(self) -> float | None:
        """Mean cosine between student and teacher on held-out faces (distillation only)."""
        if self.holdout_set is None or self.holdout_targets is None:
            return None
        dataset = pair_dataset(self.holdout_set.images, self.holdout_targets, 128, training=False)
        cosines = []
        for images, targets in dataset:
            student = tf.math.l2_normalize(self.model(images, training=False), axis=1)
            cosines.append(tf.reduce_sum(student * targets, axis=1).numpy())
        return float(np.concatenate(cosines).mean())

    def run(self) -> TrainResult:
        options = self.options
        total_steps = options.epochs * self.steps_per_epoch
        if options.max_steps:
            total_steps = min(total_steps, options.max_steps)
        self.log.info(
            "run %s: %d training crops, %s held out, %d steps/epoch, %d steps, options %s",
            self.run_dir, len(self.train_set),
            len(self.holdout_set) if self.holdout_set else 0,
            self.steps_per_epoch, total_steps, json.dumps(asdict(options)),
        )  # fmt: skip
        train_step = self._train_step_fn()
        started = time.monotonic()
        deadline = started + options.max_minutes * 60 if options.max_minutes else math.inf
        window_loss, window_start, window_steps, loss_value = 0.0, time.monotonic(), 0, math.nan
        bar = tqdm(
            total=total_steps, initial=self.step, desc="train", unit="step",
            disable=not options.progress,
        )  # fmt: skip
        for images, targets in self._dataset():
            if self.step >= total_steps or time.monotonic() > deadline:
                break
            epoch = self.step / self.steps_per_epoch
            self.optimizer.learning_rate.assign(learning_rate_at(options, epoch))
            loss_value = float(train_step(images, targets))
            if not math.isfinite(loss_value):
                raise PeepholeError(f"loss became {loss_value} at step {self.step}; lower the rate")
            self.step += 1
            bar.update(1)
            window_loss += loss_value
            window_steps += 1
            if self.step % options.log_every == 0:
                elapsed = time.monotonic() - window_start
                self.log.info(
                    "step %d epoch %.2f loss %.4f lr %.5f %.1f img/s",
                    self.step, epoch, window_loss / window_steps,
                    float(self.optimizer.learning_rate),
                    window_steps * len(images) / max(elapsed, 1e-9),
                )  # fmt: skip
                window_loss, window_start, window_steps = 0.0, time.monotonic(), 0
            end_of_epoch = self.step % self.steps_per_epoch == 0
            if end_of_epoch or self.step % options.save_every == 0:
                self.save()
            if end_of_epoch and self.holdout_set is not None:
                self.log.info(
                    "epoch %d holdout cosine to teacher %.4f",
                    self.step // self.steps_per_epoch, self.holdout_cosine(),
                )  # fmt: skip
        bar.close()
        self.save()
        model_path = self.run_dir / "model.keras"
        self.model.save(model_path)
        cosine = self.holdout_cosine()
        seconds = time.monotonic() - started
        self.log.info(
            "stopped at step %d (epoch %.2f) after %.0f s; holdout cosine %s; saved %s",
            self.step, self.step / self.steps_per_epoch, seconds,
            "n/a" if cosine is None else f"{cosine:.4f}", model_path,
        )  # fmt: skip
        return TrainResult(
            self.step, self.step / self.steps_per_epoch, seconds, loss_value, cosine, model_path
        )


def _run_logger(path: Path) -> logging.Logger:
    logger = logging.getLogger(f"trainer.run.{path.parent}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


def train(options: TrainOptions, resume: bool = False) -> TrainResult:
    trainer = Trainer(options)
    if resume and trainer.restore():
        trainer.log.info("resumed at step %d", trainer.step)
    options_file = Path(options.run_dir) / "options.json"
    options_file.write_text(json.dumps(asdict(options), indent=2) + "\n")
    return trainer.run()
