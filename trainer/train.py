"""The training loop: ArcFace, triplet or distillation; resumable runs under tf.distribute.

A run lives in its own folder: ``train.log`` (one line per logging interval),
``options.json``, and a checkpoint (``last.weights.h5`` with the model, ArcFace
head and optimiser state, plus ``state.json`` with the step) written every
``save_every`` steps and at the end of every epoch, so ``--resume`` continues an
interrupted run where it stopped. ``model.keras`` is the final float model that
``trainer export-tflite`` reads. ``metrics.jsonl`` and ``report.png`` follow the
loss, the held-out cosine to the teacher and, when LFW is given, its accuracy.

Every step runs through a ``tf.distribute.MirroredStrategy``: over every GPU
when there are any, else over the CPU (split into ``cpu_replicas`` logical
devices, which is how the distributed path is tested without GPUs). The same
command therefore uses one GPU, eight, or two CPU cores.

The student is MobileFaceNet, or any network saved as ``.keras`` (``--init``),
such as the imported MobileFace V2. The teacher is dlib's cached descriptors,
an online Keras teacher that sees the student's very view (``trainer.views``),
or both (``dlib+PATH``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from device.errors import PeepholeError
from trainer.data import CropSet, load_prepared, pair_dataset, teacher_targets
from trainer.losses import l2_normalize, make_loss
from trainer.model import build_mobilefacenet, keras_embed_fn, load_keras_model
from trainer.prepared import load_teacher_targets
from trainer.recipes import TrainOptions, learning_rate_at
from trainer.run_report import RunReport
from trainer.warmstart import load_tflite_weights


def make_strategy(cpu_replicas: int = 1) -> tf.distribute.Strategy:
    """MirroredStrategy over all GPUs, else over the CPU as ``cpu_replicas`` logical devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(len(gpus))])
    if cpu_replicas > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
        except RuntimeError:
            raise PeepholeError(
                "--cpu-replicas must be set before TensorFlow starts (a fresh process)"
            ) from None
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][: max(cpu_replicas, 1)]
    return tf.distribute.MirroredStrategy(devices)


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
    """One run: data, student, its loss (``trainer.losses``), optimiser, checkpoints."""

    def __init__(self, options: TrainOptions) -> None:
        self.options = options
        self.loss = make_loss(options)
        self.strategy = make_strategy(options.cpu_replicas)
        self.run_dir = Path(options.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = _run_logger(self.run_dir / "train.log")
        self.report = RunReport(self.run_dir)
        keras.utils.set_random_seed(options.seed)
        crops = load_prepared(Path(options.data), progress=options.progress)
        self.train_set, self.holdout_set, self.targets, self.holdout_targets = self._split(crops)
        self.lfw = self._lfw()
        with self.strategy.scope():
            self.model = self._student()
            self.loss.build(int(self.model.outputs[0].shape[-1]), len(crops.identities))
            self.optimizer = make_optimizer(options)
            self.optimizer.build(self._variables())
        self.steps_per_epoch = self._steps_per_epoch()
        self.step = 0

    def _student(self) -> keras.Model:
        init = self.options.init_weights
        if init.endswith(".keras"):
            return load_keras_model(Path(init))
        model = build_mobilefacenet(self.options.activation, weight_decay=self.options.weight_decay)
        if init.endswith(".tflite"):
            sample = np.random.default_rng(self.options.seed).permutation(len(self.train_set))
            load_tflite_weights(model, Path(init), self.train_set.images[sample[:512]])
        elif init:
            model.load_weights(init)
        return model

    def _split(
        self, crops: CropSet
    ) -> tuple[CropSet, CropSet | None, np.ndarray, np.ndarray | None]:
        options, spec = self.options, self.loss.teacher
        if spec is not None and spec.cached_dlib:
            by_source = load_teacher_targets(Path(options.data), options.teacher_mirror)
            rows = np.array([i for i, s in enumerate(crops.sources) if s in by_source], dtype=int)
            if not len(rows):
                command = "trainer teacher" + (" --mirror" if options.teacher_mirror else "")
                raise PeepholeError(
                    f"{options.data}: no teacher embeddings cached (run {command} first)"
                )
            crops = crops.subset(rows)
            raw = np.stack([by_source[s] for s in crops.sources])
            targets = teacher_targets(raw)
        elif spec is not None:
            targets = np.zeros((len(crops), 1), dtype=np.float32)
        else:
            if (crops.labels < 0).any() or not crops.identities:
                raise PeepholeError(f"{options.data}: {options.loss} needs a folder per identity")
            targets = crops.labels
        order = np.random.default_rng(options.seed).permutation(len(crops))
        held = int(len(crops) * options.holdout) if spec is not None else 0
        if held == 0:
            return crops, None, targets, None
        holdout, train = order[:held], order[held:]
        return crops.subset(train), crops.subset(holdout), targets[train], targets[holdout]

    def _lfw(self) -> tuple[list[Any], Any] | None:
        """LFW pairs and aligned crops for the progress report, when asked for."""
        options = self.options
        if not (options.eval_every and options.lfw_dir and options.lfw_pairs):
            return None
        from trainer.evaluate import LfwOptions

        cache = Path(options.lfw_cache) if options.lfw_cache else None
        return LfwOptions(Path(options.lfw_dir), Path(options.lfw_pairs), None, cache).load()

    def _steps_per_epoch(self) -> int:
        return max(1, len(self.train_set) // self.loss.batch_images)

    def _variables(self) -> list[keras.Variable]:
        return list(self.model.trainable_variables) + self.loss.variables

    def _train_step_fn(self) -> Callable[[tuple[tf.Tensor, ...]], tf.Tensor]:
        variables = self._variables()
        strategy = self.strategy
        replicas = strategy.num_replicas_in_sync

        def replica_step(*batch: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                loss = self.loss(self.model, batch)
                total = loss + tf.add_n(self.model.losses) if self.model.losses else loss
                # gradients are summed over replicas: each contributes its share
                scaled = total / replicas
            gradients = tape.gradient(scaled, variables)
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return loss

        def train_step(batch: tuple[tf.Tensor, ...]) -> tf.Tensor:
            per_replica = strategy.run(replica_step, args=batch)
            return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

        # tf.function used as a call, not a decorator: TensorFlow is untyped.
        compiled: Callable[[tuple[tf.Tensor, ...]], tf.Tensor] = tf.function(
            train_step, reduce_retracing=True
        )
        return compiled

    # checkpoints -----------------------------------------------------------------------------
    def save(self) -> None:
        weights = self.run_dir / "last.weights.h5"
        partial = self.run_dir / "last.partial.weights.h5"
        self.model.save_weights(partial)
        partial.replace(weights)
        arrays = {f"v{i}": v.numpy() for i, v in enumerate(self.optimizer.variables)}
        arrays.update(self.loss.state())
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
            self.loss.restore(arrays)
        self.step = int(json.loads(state_file.read_text())["step"])
        return True

    # the loop ----------------------------------------------------------------------------------
    def holdout_cosine(self) -> float | None:
        """Mean cosine between student and teacher on held-out clean faces (distillation)."""
        if self.holdout_set is None or self.holdout_targets is None:
            return None
        dataset = pair_dataset(self.holdout_set.images, self.holdout_targets, 128, training=False)
        cosines = []
        for images, targets in dataset:
            student = l2_normalize(self.model(images, training=False))
            teacher = self.loss.teacher_embeddings(images, targets)
            if student.shape[-1] != teacher.shape[-1]:
                return None
            cosines.append(tf.reduce_sum(student * teacher, axis=1).numpy())
        return float(np.concatenate(cosines).mean())

    def lfw_accuracy(self) -> float | None:
        """LFW 10-fold accuracy of the float student on the aligned crops, for the report."""
        if self.lfw is None:
            return None
        from trainer.evaluate import evaluate_lfw

        pairs, aligned = self.lfw
        report, _ = evaluate_lfw(pairs, aligned, keras_embed_fn(self.model))
        return report.verification.accuracy_mean

    def _measure(self) -> None:
        if self.report.last_step() == self.step:
            return
        cosine, lfw = self.holdout_cosine(), self.lfw_accuracy()
        self.log.info(
            "step %d holdout cosine to teacher %s LFW %s", self.step,
            "n/a" if cosine is None else f"{cosine:.4f}",
            "n/a" if lfw is None else f"{100 * lfw:.2f}%",
        )  # fmt: skip
        self.report.add(self.step, holdout_cosine=cosine, lfw=lfw)

    def run(self) -> TrainResult:
        options = self.options
        total_steps = options.epochs * self.steps_per_epoch
        if options.max_steps:
            total_steps = min(total_steps, options.max_steps)
        self.log.info(
            "run %s: %d training crops, %s held out, %d steps/epoch, %d steps, replicas %d, "
            "options %s",
            self.run_dir, len(self.train_set),
            len(self.holdout_set) if self.holdout_set else 0,
            self.steps_per_epoch, total_steps, self.strategy.num_replicas_in_sync,
            json.dumps(asdict(options)),
        )  # fmt: skip
        train_step = self._train_step_fn()
        started = time.monotonic()
        deadline = started + options.max_minutes * 60 if options.max_minutes else math.inf
        window_loss, window_start, window_steps, loss_value = 0.0, time.monotonic(), 0, math.nan
        bar = tqdm(
            total=total_steps, initial=self.step, desc="train", unit="step",
            disable=not options.progress,
        )  # fmt: skip
        dataset = self.loss.dataset(self.train_set.images, self.targets, options.seed + self.step)
        batches = iter(self.strategy.experimental_distribute_dataset(dataset))
        while self.step < total_steps and time.monotonic() <= deadline:
            epoch = self.step / self.steps_per_epoch
            self.optimizer.learning_rate.assign(learning_rate_at(options, epoch))
            loss_value = float(train_step(next(batches)))
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
                    float(self.optimizer.learning_rate.numpy()),
                    window_steps * self.loss.batch_images / max(elapsed, 1e-9),
                )  # fmt: skip
                self.report.add(self.step, loss=window_loss / window_steps)
                window_loss, window_start, window_steps = 0.0, time.monotonic(), 0
            end_of_epoch = self.step % self.steps_per_epoch == 0
            if end_of_epoch or self.step % options.save_every == 0:
                self.save()
            evaluate_now = options.eval_every and self.step % options.eval_every == 0
            if evaluate_now or (end_of_epoch and self.holdout_set is not None):
                self._measure()
        bar.close()
        self.save()
        model_path = self.run_dir / "model.keras"
        self.model.save(model_path)
        cosine = self.holdout_cosine()
        if self.lfw is not None:
            self._measure()
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
