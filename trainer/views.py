"""Consistent views: one augmented crop that the student and the online teacher both see.

What varies at a door, and on the way to the device's crop: alignment (landmark
noise shifts, scales and turns the crop), mirror image, exposure and contrast,
infrared night images (grey), focus blur, JPEG from IP cameras, a hand or a scarf
across the face, and, as a regulariser that keeps the student honest between
identities, mixup of two faces. Because the teacher sees the same view, every
augmented crop has a correct target, however strong the augmentation.

Cached targets (dlib's, computed on the clean crop) are only right for a clean
view, so the first ``clean_count`` crops of each batch stay unaugmented.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from trainer.constants import INPUT_SIZE
from trainer.data import gaussian_blur, normalise

MAX_SHIFT = 6.0
SCALE_RANGE = (0.9, 1.1)
MAX_ROTATION_DEGREES = 10.0
GREY_PROBABILITY = 0.15
BLUR_PROBABILITY = 0.2
JPEG_PROBABILITY = 0.3
OCCLUSION_PROBABILITY = 0.2
MIXUP_PROBABILITY = 0.15


def _jitter_alignment(x: tf.Tensor) -> tf.Tensor:
    """A random similarity transform about the crop's centre (reflected at the border)."""
    scale = tf.random.uniform([], *SCALE_RANGE)
    angle = tf.random.uniform([], -1.0, 1.0) * MAX_ROTATION_DEGREES * math.pi / 180.0
    shift = tf.random.uniform([2], -MAX_SHIFT, MAX_SHIFT)
    centre = (INPUT_SIZE - 1) / 2.0
    # output pixel -> input pixel: p_in = R(-angle) (p_out - c - shift) / scale + c
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    ox, oy = centre + shift[0], centre + shift[1]
    transform = tf.stack(
        [cos, sin, centre - cos * ox - sin * oy, -sin, cos, centre + sin * ox - cos * oy, 0.0, 0.0]
    )
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x[tf.newaxis],
        transforms=transform[tf.newaxis],
        output_shape=[INPUT_SIZE, INPUT_SIZE],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]


def _occlude(x: tf.Tensor) -> tf.Tensor:
    """A flat rectangle of a random colour over part of the face."""
    height = tf.random.uniform([], 20, 56, dtype=tf.int32)
    width = tf.random.uniform([], 20, 56, dtype=tf.int32)
    top = tf.random.uniform([], 0, INPUT_SIZE - height, dtype=tf.int32)
    left = tf.random.uniform([], 0, INPUT_SIZE - width, dtype=tf.int32)
    rows = tf.range(INPUT_SIZE)[:, tf.newaxis]
    cols = tf.range(INPUT_SIZE)[tf.newaxis, :]
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    colour = tf.random.uniform([3], 0.0, 255.0)
    return tf.where(inside[..., tf.newaxis], colour, x)


def _chance(probability: float) -> tf.Tensor:
    return tf.random.uniform([]) < probability


def strong_view(x: tf.Tensor) -> tf.Tensor:
    """One strongly augmented view of a float32 0-255 crop."""
    x = _jitter_alignment(x)
    x = tf.image.random_flip_left_right(x)
    x = tf.image.random_brightness(x, 0.25 * 255.0)
    x = tf.image.random_contrast(x, 0.6, 1.4)
    x = tf.clip_by_value(x, 0.0, 255.0)
    x = tf.cond(
        _chance(GREY_PROBABILITY),
        lambda: tf.tile(tf.image.rgb_to_grayscale(x), [1, 1, 3]),
        lambda: x,
    )
    sigma = tf.random.uniform([], 0.5, 1.8)
    x = tf.cond(_chance(BLUR_PROBABILITY), lambda: gaussian_blur(x, sigma), lambda: x)
    x = tf.cond(
        _chance(JPEG_PROBABILITY),
        lambda: 255.0 * tf.image.random_jpeg_quality(x / 255.0, 25, 85),
        lambda: x,
    )
    x = tf.cond(_chance(OCCLUSION_PROBABILITY), lambda: _occlude(x), lambda: x)
    x.set_shape([INPUT_SIZE, INPUT_SIZE, 3])
    return tf.clip_by_value(x, 0.0, 255.0)


def _mixup(x: tf.Tensor) -> tf.Tensor:
    """Blend some crops with another crop of the batch (a face between two people)."""
    count = tf.shape(x)[0]
    partner = tf.gather(x, tf.random.shuffle(tf.range(count)))
    weight = tf.random.uniform([count, 1, 1, 1], 0.3, 0.7)
    mixed = tf.cast(tf.random.uniform([count, 1, 1, 1]) < MIXUP_PROBABILITY, tf.float32)
    weight = mixed * weight + (1.0 - mixed)
    return weight * x + (1.0 - weight) * partner


def consistent_batch(images: tf.Tensor, clean_count: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(normalised batch, clean mask): the first ``clean_count`` crops stay as they are."""
    x = tf.cast(images, tf.float32)
    augmented = tf.map_fn(strong_view, x[clean_count:], fn_output_signature=tf.float32)
    x = tf.concat([x[:clean_count], _mixup(augmented)], axis=0)
    count = tf.shape(images)[0]
    clean = tf.cast(tf.range(count) < clean_count, tf.float32)
    return normalise(x), clean


def consistent_dataset(
    images: np.ndarray,
    cached_targets: np.ndarray | None,
    batch_size: int,
    clean_fraction: float,
    seed: int,
) -> tf.data.Dataset:
    """Endless (normalised views, cached targets, clean mask) batches.

    Without cached targets no crop needs to stay clean, and the targets are zeros.
    """
    clean_count = round(clean_fraction * batch_size) if cached_targets is not None else 0
    targets = (
        cached_targets
        if cached_targets is not None
        else np.zeros((len(images), 1), dtype=np.float32)
    )
    dataset = tf.data.Dataset.from_tensor_slices((images, targets))
    dataset = dataset.shuffle(min(len(images), 20000), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat().batch(batch_size, drop_remainder=True)

    def views(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        batch, clean = consistent_batch(x, clean_count)
        return batch, y, clean

    dataset = dataset.map(views, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
