"""A TFLite file of the acoustic model for devices (`asr-export MODEL OUT --tflite`), float32 or quantized.

The file maps normalized features [1, T, F] (float32, T free) to logits [1, T', C]; features, normalization and
greedy decoding run beside it in NumPy (asr.inference.lite), because python_speech_features' MFCC does not
convert to TFLite builtins. A JSON file beside it holds what the runner needs: the feature settings, the
vocabulary, the normalization statistics and the input contract. With `--stream` the file holds the model's step
function instead (CTCModel.step_function, which the recognizer's streams run): a stream's stacked steps and LSTM
states in, logits and states out.
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
    """none: float32; dynamic: int8 weights, float activations; int8: int8 weights and activations (calibrated),
    but for FLOAT_OPS."""

    none = "none"
    dynamic = "dynamic"
    int8 = "int8"


# Ops that full int8 keeps in float: the LSTM cell's elementwise products and sums (c = f * c + i * g, and
# the gates' biases), whose int8 rounding accumulates over the steps. Measured on fillets_nl test (Keras greedy
# CER 40.20 %): every op in int8 40.83 %, with these in float 40.13 %, with the gates' activations in float
# instead 40.83 % (docs/deployment.md).
FLOAT_OPS = ("MUL", "ADD")


def logits_function(bundle: Bundle) -> tf.types.experimental.PolymorphicFunction:
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
        samples = lambda: ([f[None].astype(np.float32)] for f in calibration)  # noqa: E731
        converter.representative_dataset = samples
        # int8 wherever TFLite has the kernel, FLOAT_OPS aside; float input and output, so the runner stays the same
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter,
            debug_dataset=samples,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS)),
        )
        flat = debugger.get_nondebug_quantized_model()
    else:
        flat = converter.convert()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(flat)
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
        # how asr.inference.lite cuts long recordings and times words, as the recognizer does
        "max_seconds": bundle.max_seconds,
        "silence_margins": None if bundle.margins is None else list(bundle.margins),
        "stride": bundle.model.stride,
    }


def export_tflite_step(bundle: Bundle, out: Path) -> Path:
    """Write `out` (.tflite) holding the model's step function (CTCModel.step_function: the one the recognizer's
    streams run), for streaming on a device, and its sidecar JSON."""
    from asr.inference.stream import check_streamable

    check_streamable(bundle)
    if out.exists() or out.with_suffix(".json").exists():
        raise FileExistsError(f"{out} already exists; choose a new name (nothing is overwritten)")
    function = bundle.model.step_function().get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([compat.frozen_function(function)])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(converter.convert())
    spec = sidecar(bundle, Quantization.none)
    width = bundle.model.num_features * bundle.model.stride
    spec["input"] = {"name": "steps", "shape": [None, width], "dtype": "float32", "stride": bundle.model.stride}
    options = bundle.model.options
    spec["states"] = {"shape": [options.num_layers, 2, options.units], "dtype": "float32"}
    if options.lookahead:  # see CTCModel.step
        spec["tail"] = {"shape": [options.lookahead, options.units], "dtype": "float32"}
        spec["final"] = {"shape": [], "dtype": "float32"}
        spec["delay_steps"] = options.lookahead
    out.with_suffix(".json").write_text(json.dumps(spec, indent=2, ensure_ascii=False) + "\n")
    return out
