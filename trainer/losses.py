"""Training objectives: ArcFace, FaceNet triplet with online semi-hard mining, distillation.

The loss functions are plain tensors in, a scalar out. ``Loss`` is what a run trains
with: one object per objective, sharing one interface (as InsightFace's arcface_torch
``losses.py``), chosen once from the options by ``make_loss``; it says which batches
it needs, scores a batch with the student, and owns what trains or runs beside the
student (the ArcFace head, the online teacher).
"""

from __future__ import annotations

import abc
import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from device.errors import PeepholeError
from trainer.data import pair_dataset, triplet_dataset
from trainer.model import load_keras_model
from trainer.recipes import LOSSES, TeacherSpec, TrainOptions
from trainer.views import consistent_dataset


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    return tf.math.l2_normalize(x, axis=-1, epsilon=1e-10)


class ArcFaceHead(keras.layers.Layer):  # type: ignore[misc]  # Keras is untyped
    """Additive angular margin logits (Deng et al., 2019): s * cos(theta + m) for the true class.

    Where theta + m would pass pi the logit falls back to ``cos(theta) - m sin(m)``
    (InsightFace's rule) so it stays monotonic in theta.
    """

    def __init__(
        self, num_classes: int, scale: float = 64.0, margin: float = 0.5, **kwargs: object
    ):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        embedding_size = input_shape[-1]
        if embedding_size is None:
            raise ValueError("ArcFaceHead needs a known embedding size")
        self.centres = self.add_weight(
            name="centres",
            shape=(int(embedding_size), self.num_classes),
            initializer=keras.initializers.GlorotUniform(),
        )

    def call(self, embeddings: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        cosine = tf.matmul(l2_normalize(embeddings), tf.math.l2_normalize(self.centres, axis=0))
        cosine = tf.clip_by_value(cosine, -1.0 + 1e-7, 1.0 - 1e-7)
        sine = tf.sqrt(1.0 - tf.square(cosine))
        with_margin = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        threshold = math.cos(math.pi - self.margin)
        with_margin = tf.where(
            cosine > threshold, with_margin, cosine - math.sin(math.pi - self.margin) * self.margin
        )
        one_hot = tf.one_hot(labels, self.num_classes, dtype=cosine.dtype)
        return self.scale * (one_hot * with_margin + (1.0 - one_hot) * cosine)


def arcface_loss(head: ArcFaceHead, embeddings: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    logits = head(embeddings, labels)
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def triplet_semihard_loss(
    embeddings: tf.Tensor, labels: tf.Tensor, margin: float = 0.2
) -> tf.Tensor:
    """FaceNet's loss on L2-normalised embeddings, triplets mined inside the batch.

    For every anchor-positive pair the negative is the closest one that is still
    farther than the positive (semi-hard); when none is, the farthest negative
    (the easiest, so training does not collapse early, as in FaceNet).
    """
    x = l2_normalize(embeddings)
    squared = tf.reduce_sum(tf.square(x), axis=1)
    distances = tf.maximum(
        squared[:, None] - 2.0 * tf.matmul(x, x, transpose_b=True) + squared[None, :], 0.0
    )
    same = tf.equal(labels[:, None], labels[None, :])
    size = tf.shape(labels)[0]
    positives = tf.logical_and(same, tf.logical_not(tf.eye(size, dtype=tf.bool)))
    negatives = tf.logical_not(same)

    # [anchor, positive, negative] masks and distances
    d_ap = distances[:, :, None]
    d_an = distances[:, None, :]
    semi_hard = tf.logical_and(negatives[:, None, :], d_an > d_ap)
    large = tf.reduce_max(distances) + 1.0
    closest_semi_hard = tf.reduce_min(tf.where(semi_hard, d_an, large), axis=2)
    farthest_negative = tf.reduce_max(
        tf.where(negatives, distances, tf.zeros_like(distances)), axis=1, keepdims=True
    )
    has_semi_hard = tf.reduce_any(semi_hard, axis=2)
    chosen = tf.where(has_semi_hard, closest_semi_hard, farthest_negative)
    losses = tf.maximum(distances - chosen + margin, 0.0)
    mask = tf.cast(positives, losses.dtype)
    return tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def distillation_loss(
    student: tf.Tensor, teacher: tf.Tensor, relation_weight: float = 1.0
) -> tf.Tensor:
    """Match the teacher's direction (1 - cosine) and its in-batch similarity structure.

    ``teacher`` is already centred and normalised (see data.teacher_targets): dlib's raw
    descriptors all share a large common component, so their plain cosines crowd near 1.
    The relation term (mean squared difference of the two cosine matrices) teaches the
    student which faces are alike, which is what verification measures.
    """
    s = l2_normalize(student)
    t = l2_normalize(teacher)
    direct = tf.reduce_mean(1.0 - tf.reduce_sum(s * t, axis=1))
    relation = tf.reduce_mean(
        tf.square(tf.matmul(s, s, transpose_b=True) - tf.matmul(t, t, transpose_b=True))
    )
    return direct + relation_weight * relation


def consistent_distillation_loss(
    student: tf.Tensor,
    online: tf.Tensor,
    cached: tf.Tensor | None,
    clean: tf.Tensor,
    relation_weight: float = 1.0,
) -> tf.Tensor:
    """Distillation from a teacher that saw the same view, optionally ensembled with a cached one.

    ``online`` is the online teacher's embedding of the very crop the student saw.
    The direct term (1 - cosine) needs the student and that teacher in one space
    (the same width), as when the student starts from the teacher's weights; with
    another width only the relation term teaches. ``cached`` (dlib's descriptors of
    the clean crop, centred and normalised) joins the ensemble only where both
    crops of a pair are clean: there the target similarity is the mean of the two
    teachers', which is the cosine of their concatenated normalised embeddings.
    """
    s = l2_normalize(student)
    m = l2_normalize(online)
    target = tf.matmul(m, m, transpose_b=True)
    if cached is not None:
        d = l2_normalize(cached)
        both_clean = clean[:, None] * clean[None, :]
        target += 0.5 * both_clean * (tf.matmul(d, d, transpose_b=True) - target)
    relation = tf.reduce_mean(tf.square(tf.matmul(s, s, transpose_b=True) - target))
    if student.shape[-1] != online.shape[-1]:
        return relation_weight * relation
    direct = tf.reduce_mean(1.0 - tf.reduce_sum(s * m, axis=1))
    return direct + relation_weight * relation


Batch = tuple[tf.Tensor, ...]


class Loss(abc.ABC):
    """One objective of a run. ``teacher`` is None when it learns from identity labels."""

    teacher: TeacherSpec | None = None

    def __init__(self, batch_images: int) -> None:
        self.batch_images = batch_images  # crops per step, over all replicas

    def build(self, embedding_size: int, identities: int) -> None:  # noqa: B027 (optional)
        """Create what trains or runs beside the student (inside the strategy's scope)."""

    @property
    def variables(self) -> list[keras.Variable]:
        """Trained with the student's own variables."""
        return []

    @abc.abstractmethod
    def dataset(self, images: np.ndarray, targets: np.ndarray, seed: int) -> tf.data.Dataset:
        """Endless training batches: ``targets`` are the labels or the cached teacher's."""

    @abc.abstractmethod
    def __call__(self, student: keras.Model, batch: Batch) -> tf.Tensor:
        """The loss of one batch, with the student in training mode."""

    def teacher_embeddings(self, images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        """The teacher's normalised view of held-out crops (``targets``: the cached ones)."""
        return targets

    def state(self) -> dict[str, np.ndarray]:
        """Arrays a checkpoint keeps beside the optimiser's."""
        return {}

    def restore(self, arrays: np.lib.npyio.NpzFile) -> None:  # noqa: B027 (optional)
        """Reload what ``state`` saved."""


class ArcFaceLoss(Loss):
    def __init__(self, batch_size: int, scale: float, margin: float) -> None:
        super().__init__(batch_size)
        self.scale, self.margin = scale, margin
        self.head: ArcFaceHead | None = None

    def build(self, embedding_size: int, identities: int) -> None:
        self.head = ArcFaceHead(identities, self.scale, self.margin, name="arcface")
        self.head.build((None, embedding_size))

    @property
    def variables(self) -> list[keras.Variable]:
        assert self.head is not None
        return list(self.head.trainable_variables)

    def dataset(self, images: np.ndarray, targets: np.ndarray, seed: int) -> tf.data.Dataset:
        return pair_dataset(images, targets, self.batch_images, True, seed).repeat()

    def __call__(self, student: keras.Model, batch: Batch) -> tf.Tensor:
        assert self.head is not None
        images, labels = batch
        return arcface_loss(self.head, student(images, training=True), labels)

    def state(self) -> dict[str, np.ndarray]:
        assert self.head is not None
        return {"head": self.head.centres.numpy()}

    def restore(self, arrays: np.lib.npyio.NpzFile) -> None:
        assert self.head is not None
        self.head.centres.assign(arrays["head"])


class TripletLoss(Loss):
    def __init__(self, identities_per_batch: int, images_per_identity: int, margin: float) -> None:
        super().__init__(identities_per_batch * images_per_identity)
        self.identities_per_batch = identities_per_batch
        self.images_per_identity = images_per_identity
        self.margin = margin

    def dataset(self, images: np.ndarray, targets: np.ndarray, seed: int) -> tf.data.Dataset:
        return triplet_dataset(
            images, targets, self.identities_per_batch, self.images_per_identity, seed=seed
        )

    def __call__(self, student: keras.Model, batch: Batch) -> tf.Tensor:
        images, labels = batch
        return triplet_semihard_loss(student(images, training=True), labels, self.margin)


class DistillationLoss(Loss):
    """Towards dlib's cached descriptors of the clean crops."""

    def __init__(self, teacher: TeacherSpec, batch_size: int, relation_weight: float) -> None:
        super().__init__(batch_size)
        self.teacher = teacher
        self.relation_weight = relation_weight

    def dataset(self, images: np.ndarray, targets: np.ndarray, seed: int) -> tf.data.Dataset:
        return pair_dataset(images, targets, self.batch_images, True, seed).repeat()

    def __call__(self, student: keras.Model, batch: Batch) -> tf.Tensor:
        images, targets = batch
        return distillation_loss(student(images, training=True), targets, self.relation_weight)


class ConsistentDistillationLoss(Loss):
    """Towards an online Keras teacher that sees the student's very view (``trainer.views``),
    with dlib's cached descriptors on clean crops when the teacher is ``dlib+MODEL``."""

    def __init__(
        self, teacher: TeacherSpec, batch_size: int, relation_weight: float, clean_fraction: float
    ) -> None:
        super().__init__(batch_size)
        self.teacher = teacher
        self.cached_dlib = teacher.cached_dlib
        self.relation_weight = relation_weight
        self.clean_fraction = clean_fraction
        self.online_model = Path(teacher.online_model)
        self.online: keras.Model | None = None

    def build(self, embedding_size: int, identities: int) -> None:
        self.online = load_keras_model(self.online_model)
        self.online.trainable = False

    def dataset(self, images: np.ndarray, targets: np.ndarray, seed: int) -> tf.data.Dataset:
        cached = targets if self.cached_dlib else None
        return consistent_dataset(images, cached, self.batch_images, self.clean_fraction, seed)

    def __call__(self, student: keras.Model, batch: Batch) -> tf.Tensor:
        assert self.online is not None
        images, cached, clean = batch
        online = self.online(images, training=False)
        embeddings = student(images, training=True)
        return consistent_distillation_loss(
            embeddings,
            online,
            cached if self.cached_dlib else None,
            clean,
            self.relation_weight,
        )

    def teacher_embeddings(self, images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        assert self.online is not None
        return l2_normalize(self.online(images, training=False))


def make_loss(options: TrainOptions) -> Loss:
    """The run's objective, from ``options.loss`` (and, to distil, ``options.teacher``)."""
    if options.loss == "arcface":
        return ArcFaceLoss(options.batch_size, options.arcface_scale, options.arcface_margin)
    if options.loss == "triplet":
        return TripletLoss(
            options.identities_per_batch, options.images_per_identity, options.triplet_margin
        )
    if options.loss == "distill":
        teacher = options.teacher_spec
        if teacher.online_model:
            return ConsistentDistillationLoss(
                teacher, options.batch_size, options.relation_weight, options.clean_fraction
            )
        return DistillationLoss(teacher, options.batch_size, options.relation_weight)
    raise PeepholeError(f"unknown loss {options.loss!r} ({', '.join(LOSSES)})")
