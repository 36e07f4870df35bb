"""The feature pipeline of asr.data.features as TensorFlow ops on padded waveform batches (for the SavedModel).

It follows python_speech_features step by step (pre-emphasis, rectangular frames zero-padded at the end,
power spectrum, the same mel filterbank matrix, log, orthonormal DCT-II, lifter, log energy as c0, deltas
with edge padding), then the per-utterance normalization, all masked by each waveform's true length.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from python_speech_features.base import get_filterbanks

from asr.data.features import DELTA_WINDOW, STD_FLOOR, FeatureOptions

# python_speech_features replaces exact zeros by NumPy's float64 epsilon before taking logs.
_EPS = float(np.finfo(float).eps)


def frame_counts(lengths: tf.Tensor, options: FeatureOptions) -> tf.Tensor:
    """Frames per waveform [B] from sample counts [B], as python_speech_features counts them."""
    frame, step = options.frame_length, options.frame_step
    extra = tf.math.ceil(tf.cast(tf.maximum(lengths - frame, 0), tf.float32) / step)
    return tf.where(lengths <= frame, 1, 1 + tf.cast(extra, tf.int32))


def _deltas(feats: tf.Tensor, counts: tf.Tensor) -> tf.Tensor:
    """python_speech_features.delta on each row of [B, T, n], the edge frame repeated at both real ends."""
    t = tf.broadcast_to(tf.range(tf.shape(feats)[1])[None, :], tf.shape(feats)[:2])  # [B, T]
    last = (counts - 1)[:, None]  # [B, 1]
    total = tf.zeros_like(feats)
    for k in range(1, DELTA_WINDOW + 1):
        ahead = tf.gather(feats, tf.minimum(t + k, last), batch_dims=1)
        behind = tf.gather(feats, tf.maximum(t - k, 0), batch_dims=1)
        total += k * (ahead - behind)
    return total / (2 * sum(k * k for k in range(1, DELTA_WINDOW + 1)))


def _normalize(feats: tf.Tensor, mask: tf.Tensor, mode: str) -> tf.Tensor:
    """Per-utterance normalization over the real frames only; padded frames come out as 0."""
    weights = tf.cast(mask, feats.dtype)[:, :, None]  # [B, T, 1]
    if mode in ("none", "global"):  # global statistics are applied by the caller
        return feats * weights
    if mode == "both":
        mode = "utterance"
    axes = [1, 2] if mode == "utterance_scalar" else [1]
    count = tf.reduce_sum(tf.broadcast_to(weights, tf.shape(feats)), axis=axes, keepdims=True)
    mean = tf.reduce_sum(feats * weights, axis=axes, keepdims=True) / count
    var = tf.reduce_sum(tf.square(feats - mean) * weights, axis=axes, keepdims=True) / count
    return (feats - mean) / tf.maximum(tf.sqrt(var), STD_FLOOR) * weights


def features(waveforms: tf.Tensor, lengths: tf.Tensor, options: FeatureOptions) -> tuple[tf.Tensor, tf.Tensor]:
    """Zero-padded float32 waveforms [B, N] at options.sample_rate and lengths [B] ->
    normalized features [B, T, num_features] (padding rows 0) and frame counts [B]."""
    waveforms = tf.convert_to_tensor(waveforms, tf.float32)
    lengths = tf.cast(lengths, tf.int32)
    samples = tf.shape(waveforms)[1]
    inside = tf.sequence_mask(lengths, samples, dtype=tf.float32)  # [B, N]
    x = waveforms * inside
    if options.preemph:
        x = tf.concat([x[:, :1], x[:, 1:] - options.preemph * x[:, :-1]], axis=1) * inside
    counts = frame_counts(lengths, options)  # [B]
    needed = tf.reduce_max(counts)
    # room for the last frame of the longest waveform, then rectangular frames [B, T, frame]
    x = tf.pad(x, [[0, 0], [0, options.frame_length + needed * options.frame_step]])
    frames = tf.signal.frame(x, options.frame_length, options.frame_step)[:, :needed]
    spectrum = tf.signal.rfft(frames, fft_length=[options.fft_size])  # [B, T, nfft/2 + 1]
    power = tf.square(tf.abs(spectrum)) / options.fft_size
    energy = tf.reduce_sum(power, axis=-1)  # [B, T]
    energy = tf.where(energy == 0.0, _EPS, energy)
    bank = get_filterbanks(
        options.nfilt, options.fft_size, options.sample_rate, options.lowfreq, options.highfreq or None
    )  # [nfilt, nfft/2 + 1]
    mel = tf.matmul(power, tf.constant(bank.T, tf.float32))  # [B, T, nfilt]
    mel = tf.where(mel == 0.0, _EPS, mel)
    cepstra = tf.signal.dct(tf.math.log(mel), type=2, norm="ortho")[:, :, : options.numcep]
    if options.ceplifter > 0:
        n = np.arange(options.numcep)
        cepstra *= tf.constant(1 + (options.ceplifter / 2.0) * np.sin(np.pi * n / options.ceplifter), tf.float32)
    if options.append_energy:
        cepstra = tf.concat([tf.math.log(energy)[:, :, None], cepstra[:, :, 1:]], axis=2)
    parts = [cepstra]
    if options.deltas >= 1:
        parts.append(_deltas(cepstra, counts))
    if options.deltas == 2:
        parts.append(_deltas(parts[1], counts))
    feats = tf.concat(parts, axis=2)
    return _normalize(feats, tf.sequence_mask(counts, needed), options.normalize), counts
