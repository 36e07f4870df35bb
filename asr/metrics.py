"""Corpus-level label and word error rates as Keras metrics with summed states."""

from __future__ import annotations

import keras
import tensorflow as tf


def words_sparse(ids: tf.SparseTensor, characters: tf.Tensor, space: str = " ") -> tf.SparseTensor:
    """Label ids sparse [B, (L)] -> words sparse [B, (W)] strings, split on runs of spaces."""
    padding = tf.cast(tf.shape(characters)[0] - 1, ids.values.dtype)  # last entry of `characters` is ""
    dense = tf.sparse.to_dense(ids, default_value=padding)  # [B, L]
    sentences = tf.strings.reduce_join(tf.gather(characters, dense), axis=-1)  # [B]
    return tf.strings.split(sentences, sep=None).to_sparse()  # whitespace, empty words dropped


class ErrorRate(keras.metrics.Metric):
    """Σ edit distance(hypothesis, reference) / Σ reference length over everything seen since reset.

    Sums, not a mean of per-utterance ratios, so the value is the corpus rate whatever the batching.
    """

    def __init__(self, name: str = "ler", **kwargs) -> None:
        super().__init__(name=name, **kwargs)
        self.errors = self.add_variable(shape=(), initializer="zeros", name="errors", aggregation="sum")
        self.length = self.add_variable(shape=(), initializer="zeros", name="length", aggregation="sum")

    def update_state(self, hypothesis: tf.SparseTensor, truth: tf.SparseTensor, sample_weight=None) -> None:
        """Add one batch: sparse [B, (L)] hypotheses and references of the same dtype."""
        distance = tf.edit_distance(hypothesis, truth, normalize=False)  # [B]
        self.errors.assign_add(tf.reduce_sum(tf.cast(distance, self.dtype)))
        self.length.assign_add(tf.cast(tf.size(truth.values), self.dtype))

    def result(self) -> tf.Tensor:
        return tf.math.divide_no_nan(self.errors, self.length)

    def reset_state(self) -> None:
        self.errors.assign(0.0)
        self.length.assign(0.0)
