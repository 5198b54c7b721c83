"""Training data: prepared crops in memory, tf.data pipelines with augmentation.

Crops are small (112x112x3 uint8, 37 KB each), so a prepared folder is read once
into one array and tf.data slices it.
Augmentation is what a door camera varies: mirror image, exposure and contrast,
focus blur, and a few pixels of alignment jitter.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from device.errors import PeepholeError
from trainer.constants import INPUT_SIZE, MEAN, STD
from trainer.prepared import read_crop, read_kept


@dataclass(frozen=True)
class CropSet:
    """Aligned crops with integer labels (-1 when unlabeled) and their source paths."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]
    identities: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, rows: np.ndarray) -> CropSet:
        return CropSet(
            self.images[rows], self.labels[rows], [self.sources[i] for i in rows], self.identities
        )


def load_prepared(folder: Path, progress: bool = True) -> CropSet:
    """Every kept crop of a ``trainer prepare`` output folder."""
    kept = read_kept(folder)
    if not kept:
        raise PeepholeError(f"{folder}: no kept crops to train on")
    identities = sorted({s.identity for s in kept if s.identity})
    index = {name: i for i, name in enumerate(identities)}
    images = np.empty((len(kept), INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    for row, sample in enumerate(tqdm(kept, desc="load", unit="crop", disable=not progress)):
        crop = read_crop(folder, sample)
        if crop is None:
            raise PeepholeError(f"{folder / sample.crop}: missing or not a 112x112 crop")
        images[row] = crop
    labels = np.array([index.get(s.identity, -1) for s in kept], dtype=np.int32)
    return CropSet(images, labels, [s.source for s in kept], identities)


def normalise(images: tf.Tensor) -> tf.Tensor:
    """uint8 crops to the model's input, as the manifest's mean/std say."""
    return (tf.cast(images, tf.float32) - MEAN) / STD


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
    """A 5x5 Gaussian blur of one float crop (focus blur; also in ``trainer.views``)."""
    offsets = tf.range(-2, 3, dtype=tf.float32)
    weights = tf.exp(-0.5 * tf.square(offsets / sigma))
    weights = weights / tf.reduce_sum(weights)
    kernel_x = tf.tile(tf.reshape(weights, [1, 5, 1, 1]), [1, 1, 3, 1])
    kernel_y = tf.tile(tf.reshape(weights, [5, 1, 1, 1]), [1, 1, 3, 1])
    x = image[tf.newaxis]
    x = tf.nn.depthwise_conv2d(x, kernel_x, [1, 1, 1, 1], "SAME")
    x = tf.nn.depthwise_conv2d(x, kernel_y, [1, 1, 1, 1], "SAME")
    return x[0]


def augment(image: tf.Tensor, max_shift: int = 4, blur_probability: float = 0.2) -> tf.Tensor:
    """One random variation of a uint8 crop, returned as float32 0-255."""
    x = tf.cast(image, tf.float32)
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_brightness(x, 0.2 * 255.0)
    x = tf.image.random_contrast(x, 0.7, 1.3)
    sigma = tf.random.uniform([], 0.5, 1.5)
    x = tf.cond(
        tf.random.uniform([]) < blur_probability, lambda: gaussian_blur(x, sigma), lambda: x
    )
    padded = tf.pad(x[tf.newaxis], [[0, 0], [max_shift] * 2, [max_shift] * 2, [0, 0]], "REFLECT")
    x = tf.image.random_crop(padded[0], [112, 112, 3])
    return tf.clip_by_value(x, 0.0, 255.0)


def _prepare_batch(images: tf.Tensor, training: bool) -> tf.Tensor:
    if training:
        images = tf.map_fn(augment, images, fn_output_signature=tf.float32)
    return normalise(images)


def pair_dataset(
    images: np.ndarray, targets: np.ndarray, batch_size: int, training: bool, seed: int = 0
) -> tf.data.Dataset:
    """(normalised crop batch, target batch): targets are labels or teacher embeddings."""
    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    if training:
        dataset = dataset.shuffle(min(len(images), 20000), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.map(
        lambda x, y: (_prepare_batch(x, training), y), num_parallel_calls=tf.data.AUTOTUNE
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def identity_batches(
    labels: np.ndarray, identities_per_batch: int, images_per_identity: int, seed: int
) -> Iterator[np.ndarray]:
    """Endless P x K index batches, so every batch holds positives for triplet mining."""
    rng = np.random.default_rng(seed)
    by_label = [np.flatnonzero(labels == label) for label in np.unique(labels[labels >= 0])]
    by_label = [rows for rows in by_label if len(rows) >= 2]
    if len(by_label) < 2:
        raise PeepholeError("triplet training needs at least 2 identities with 2+ images each")
    per_batch = min(identities_per_batch, len(by_label))
    while True:
        chosen = rng.choice(len(by_label), per_batch, replace=False)
        yield np.concatenate(
            [
                rng.choice(
                    by_label[c], images_per_identity, replace=len(by_label[c]) < images_per_identity
                )
                for c in chosen
            ]
        )


def triplet_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    identities_per_batch: int,
    images_per_identity: int,
    seed: int = 0,
) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_generator(
        lambda: identity_batches(labels, identities_per_batch, images_per_identity, seed),
        output_signature=tf.TensorSpec([None], tf.int64),
    )
    images_t = tf.constant(images)
    labels_t = tf.constant(labels)
    dataset = dataset.map(
        lambda rows: (_prepare_batch(tf.gather(images_t, rows), True), tf.gather(labels_t, rows)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def teacher_targets(raw: np.ndarray) -> np.ndarray:
    """Centred, normalised teacher embeddings.

    dlib's descriptors share a large common direction; removing the dataset mean
    spreads their cosines so that they carry identity, not the common offset.
    """
    centred = raw - raw.mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.asarray(centred / np.maximum(norms, 1e-12), dtype=np.float32)
