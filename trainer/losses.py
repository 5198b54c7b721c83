"""Training objectives: ArcFace, FaceNet triplet with online semi-hard mining, distillation."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


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
