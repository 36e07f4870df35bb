"""Corpus-level label and word error rates as Keras metrics with summed states."""

from __future__ import annotations

import keras
import tensorflow as tf

from asr.decoding.ctc import sparse_to_strings


def words_sparse(ids: tf.SparseTensor, table: tf.Tensor) -> tf.SparseTensor:
    """Label ids sparse [B, (L)] -> words sparse [B, (W)] strings, split on runs of whitespace (`table`: see
    asr.decoding.ctc.text_table)."""
    return tf.strings.split(sparse_to_strings(ids, table), sep=None).to_sparse()  # empty words dropped


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
