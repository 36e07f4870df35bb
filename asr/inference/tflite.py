"""A TFLite file of the acoustic model for devices (`asr-export MODEL OUT --tflite`), float32 or quantized.

The file maps normalized features [1, T, F] (float32, T free) to logits [1, T', C]; features, normalization and
greedy decoding run beside it in NumPy (asr.inference.lite), because python_speech_features' MFCC does not
convert to TFLite builtins. A JSON file beside it holds what the runner needs: the feature settings, the
vocabulary, the normalization statistics and the input contract.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

import numpy as np
import tensorflow as tf

from asr import compat
from asr.inference.bundle import Bundle


class Quantization(StrEnum):
    """none: float32; dynamic: int8 weights, float activations; int8: int8 weights and activations (calibrated)."""

    none = "none"
    dynamic = "dynamic"
    int8 = "int8"


def logits_function(bundle: Bundle):
    """The model as a tf.function of one utterance's features [1, T, F] -> logits [1, T', C], every frame real."""
    model = bundle.model

    @tf.function(input_signature=[tf.TensorSpec([1, None, model.num_features], tf.float32, name="features")])
    def logits(features: tf.Tensor) -> tf.Tensor:
        return model({"features": features, "lengths": tf.shape(features)[1:2]}, training=False)

    return logits


def export_tflite(
    bundle: Bundle,
    out: Path,
    quantization: Quantization = Quantization.none,
    calibration: Sequence[np.ndarray] = (),
) -> Path:
    """Write `out` (.tflite) and its sidecar JSON; `calibration`: normalized feature matrices [T, F] for int8."""
    if out.exists() or out.with_suffix(".json").exists():
        raise FileExistsError(f"{out} already exists; choose a new name (nothing is overwritten)")
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [compat.frozen_function(logits_function(bundle).get_concrete_function())]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != Quantization.none:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == Quantization.int8:
        if not calibration:
            raise ValueError("int8 quantization needs calibration features")
        converter.representative_dataset = lambda: ([f[None].astype(np.float32)] for f in calibration)
        # int8 wherever TFLite has the kernel; float input and output, so the runner stays the same
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(converter.convert())
    out.with_suffix(".json").write_text(json.dumps(sidecar(bundle, quantization), indent=2, ensure_ascii=False) + "\n")
    return out


def sidecar(bundle: Bundle, quantization: Quantization) -> dict:
    """What a runner needs beside the .tflite file."""
    cmvn = bundle.cmvn
    return {
        "format": "asr-tflite",
        "version": 1,
        "quantization": str(quantization),
        "input": {"name": "features", "shape": [1, None, bundle.model.num_features], "dtype": "float32"},
        "output": {"name": "logits", "shape": [1, None, len(bundle.vocab.characters) + 1], "dtype": "float32"},
        "features": bundle.features.to_dict(),
        "normalization": None if cmvn is None else {"mean": cmvn[0].tolist(), "std": cmvn[1].tolist()},
        "vocabulary": bundle.vocab.characters,
        "blank_index": bundle.vocab.blank_index,
    }
