"""The baseline of `asr-bench train`: the seed article's naive way (13 MFCC computed once, every utterance padded to
the longest with a Masking sentinel, in-memory arrays into `fit(batch_size=..., shuffle=True)`, no validation)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from asr.bench.common import epoch_timer, peak_rss_mb

if TYPE_CHECKING:
    from asr.data.features import FeatureOptions
    from asr.model.options import ModelOptions
    from asr.training.options import RunOptions


# The seed article's features: python_speech_features.mfcc's default 13 cepstra, no deltas, computed once.
NAIVE_NUMCEP = 13
# Padding value of the naive arrays, masked by keras.layers.Masking: far outside scalar-normalized MFCC values
# (|x| < ~20), so no real frame equals it.
NAIVE_PAD_VALUE = -100.0


def naive_mfcc(signal: np.ndarray, options: FeatureOptions) -> np.ndarray:
    """The seed article's features: 13 MFCC (python_speech_features), one scalar mean and std per utterance."""
    from python_speech_features import mfcc

    feats = mfcc(signal, samplerate=options.sample_rate, numcep=NAIVE_NUMCEP, nfft=options.fft_size)
    return ((feats - feats.mean()) / max(float(feats.std()), 1e-8)).astype(np.float32)


def naive_arrays(features: Sequence[np.ndarray], labels: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """x [N, T, 13]: every utterance padded with NAIVE_PAD_VALUE to the longest; y [N, 1 + L]: the frame count,
    then the labels padded with -1 (the count rides in y so that Keras's loss gets it with the batch)."""
    longest, most = max(len(f) for f in features), max(len(t) for t in labels)
    x = np.full((len(features), longest, features[0].shape[1]), NAIVE_PAD_VALUE, np.float32)
    y = np.full((len(features), 1 + most), -1, np.int32)
    for i, (f, t) in enumerate(zip(features, labels, strict=True)):
        x[i, : len(f)] = f
        y[i, 0] = len(f)
        y[i, 1 : 1 + len(t)] = t
    return x, y


def naive_model(options: ModelOptions, classes: int) -> object:
    """keras.Sequential-style functional model: Masking on the pad value, the preset's (Bi)LSTM stack with its
    dropout, Dense logits (the blank last), ended by an identity that drops the mask: the loss is per
    utterance, Keras would otherwise weigh it per frame."""
    import keras
    import tensorflow as tf

    class EndMask(keras.layers.Layer):
        """Identity whose output carries no Keras mask."""

        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs: tf.Tensor) -> tf.Tensor:
            return tf.identity(inputs)  # a new tensor: the input's mask attribute stays behind

        def compute_mask(self, inputs: tf.Tensor, mask: tf.Tensor | None = None) -> None:
            return None

    inputs = keras.Input(shape=(None, NAIVE_NUMCEP))
    x = keras.layers.Masking(mask_value=NAIVE_PAD_VALUE)(inputs)
    for _ in range(options.num_layers):
        lstm = keras.layers.LSTM(options.units, return_sequences=True)
        x = keras.layers.Bidirectional(lstm)(x) if options.bidirectional else lstm(x)
        x = keras.layers.Dropout(options.dropout)(x)
    return keras.Model(inputs, EndMask()(keras.layers.Dense(classes)(x)))


def packed_ctc_loss(blank: int) -> Callable:
    """CTC loss per utterance of y = [frame count, labels padded with -1] (see naive_arrays) and the logits."""
    import keras

    def loss(y_true: object, y_pred: object) -> object:
        y_true = keras.ops.cast(y_true, "int32")  # Keras hands y over as float32
        labels = y_true[:, 1:]
        label_lengths = keras.ops.sum(keras.ops.cast(labels >= 0, "int32"), axis=1)
        return keras.ops.ctc_loss(keras.ops.maximum(labels, 0), y_pred, label_lengths, y_true[:, 0], mask_index=blank)

    return loss


def train_naive(options: RunOptions, items: Sequence[tuple], classes: int, epochs: int) -> dict:
    """The seed article's way (run in a spawned process of its own): 13 MFCC computed once per utterance, every
    utterance padded to the longest with a Masking sentinel, in-memory arrays into fit(batch_size, shuffle=True),
    no validation; the preset's LSTM stack and optimizer. Wall seconds per epoch, padding share, peak memory."""
    import keras

    from asr.data.audio import load_audio
    from asr.training.optimizers import build_optimizer

    keras.backend.clear_session()
    keras.utils.set_random_seed(options.seed)
    started = time.perf_counter()
    features = [naive_mfcc(load_audio(a, options.features.sample_rate, s, e), options.features) for a, s, e, _ in items]
    feature_seconds = time.perf_counter() - started
    x, y = naive_arrays(features, [labels for *_, labels in items])
    real = int(y[:, 0].sum())
    batch_size = options.trainer.batch_size
    model = naive_model(options.model, classes)
    steps = math.ceil(len(x) / batch_size)
    model.compile(
        optimizer=build_optimizer(options.optimizer, steps, options.trainer.epochs), loss=packed_ctc_loss(classes - 1)
    )
    timer = epoch_timer()
    model.fit(x, y, batch_size=batch_size, shuffle=True, epochs=epochs, callbacks=[timer], verbose=0)
    return {
        "epoch_seconds": timer.epochs,
        "feature_seconds": feature_seconds,
        "padding_share": float((x.shape[0] * x.shape[1] - real) / real),
        "frames": real,
        "padded_shape": list(x.shape),
        "peak_rss_mb": peak_rss_mb(),
    }
