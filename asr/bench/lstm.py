"""`asr-bench lstm`: what bounds the training's FLOP rate: one training step of the preset's LSTM stack per batch
size and per implementation variant, as GFLOP/s and as a share of the 2048^3 matmul rate measured in the same run."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from asr.bench.common import (
    LSTM_GATES,
    MATMUL_SIZE,
    TRAINING_FLOP_FACTOR,
    matmul_gflops,
    refuse_conv_front_end,
    stack_forward_flop_per_frame,
)
from asr.system import usable_cpus

if TYPE_CHECKING:
    from asr.model.options import ModelOptions

log = logging.getLogger(__name__)


LSTM_BATCH_SIZES = (8, 16, 32, 64, 128)
LSTM_FRAMES = 150  # LSTM steps per timed batch: about a 3 s sentence at stride 2, 4.5 s at stride 3
LSTM_REPEATS = 5  # timed steps per variant after two warm-up steps; the median is reported
# What each variant of the LSTM stack changes (Keras 3 LSTM on TensorFlow's CPU backend)
LSTM_VARIANTS = {
    "default": {},  # what asr-train runs: keras.layers.LSTM, implementation 2 (one fused gate product per step)
    "implementation_1": {"implementation": 1},  # four smaller gate products per step
    "unroll": {"unroll": True},  # the step loop unrolled into one graph (fixed length only)
    "xla": {"jit_compile": True},  # the whole step compiled by XLA (without the CTC loss, which XLA lacks)
}


def _lstm_step_seconds(
    model_options: ModelOptions, input_width: int, batch: int, frames: int, variant: dict, repeats: int
) -> float:
    """Median seconds of one training step (forward, backward, Adam update) of the (Bi)LSTM stack and output layer
    on a random [batch, frames, input_width] batch with a mean-square loss, as `variant` builds it."""
    import keras
    import tensorflow as tf

    layer_options = {k: v for k, v in variant.items() if k in ("implementation", "unroll")}
    inputs = keras.Input((frames, input_width))
    x = inputs
    for _ in range(model_options.num_layers):
        lstm = keras.layers.LSTM(model_options.units, return_sequences=True, **layer_options)
        x = keras.layers.Bidirectional(lstm)(x) if model_options.bidirectional else lstm(x)
    model = keras.Model(inputs, keras.layers.Dense(32)(x))
    optimizer = keras.optimizers.Adam()
    features = tf.random.normal([batch, frames, input_width], seed=0)

    @tf.function(jit_compile=variant.get("jit_compile", False))
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(features, training=True)))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    for _ in range(2):
        step().numpy()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - began)
    keras.backend.clear_session()
    return statistics.median(times)


def bench_lstm(
    overrides: Sequence[str],
    batch_sizes: Sequence[int] = LSTM_BATCH_SIZES,
    frames: int = LSTM_FRAMES,
    repeats: int = LSTM_REPEATS,
) -> dict:
    """What bounds the training's FLOP rate: one training step of the preset's LSTM stack per batch size and
    per implementation variant, as GFLOP/s and as a share of the 2048^3 matmul rate measured in the same run."""
    from asr.config import compose

    options = compose(overrides)
    refuse_conv_front_end(options.model.conv_layers)
    if options.trainer.threads is not None:  # before TensorFlow runs anything: asr-train's thread settings
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(options.trainer.threads)
        tf.config.threading.set_inter_op_parallelism_threads(options.trainer.threads)
    began = datetime.now().astimezone()
    shape = options.model
    input_width = options.features.num_features * shape.stride
    forward, widths = stack_forward_flop_per_frame(input_width, shape.units, shape.num_layers, shape.bidirectional, 32)
    peak = matmul_gflops(MATMUL_SIZE, MATMUL_SIZE, MATMUL_SIZE)
    rows = []
    for name, variant in LSTM_VARIANTS.items():
        for batch in batch_sizes if name == "default" else (options.trainer.batch_size,):
            log.info("variant %s, batch %d", name, batch)
            seconds = _lstm_step_seconds(shape, input_width, batch, frames, variant, repeats)
            gflops = TRAINING_FLOP_FACTOR * forward * batch * frames / seconds / 1e9
            step_shape = [batch, widths[0] + shape.units, LSTM_GATES * shape.units]
            rows.append(
                {
                    "variant": name,
                    "batch": batch,
                    "step_seconds": round(seconds, 4),
                    "ms_per_lstm_step": round(seconds / frames * 1e3, 3),
                    "training_gflops": round(gflops, 2),
                    "utilization": round(gflops / peak, 4),
                    "matmul_gflops_at_step_shape": round(matmul_gflops(*step_shape), 2),
                }
            )
    return {
        "benchmark": "lstm",
        "preset": options.name,
        "overrides": list(overrides),
        "date": began.isoformat(timespec="seconds"),
        "cpus": usable_cpus(),
        "tensorflow_threads": _tf_threads(),
        "model": {
            "num_layers": shape.num_layers,
            "units": shape.units,
            "bidirectional": shape.bidirectional,
            "input_width": input_width,
            "frames": frames,
        },
        "matmul_gflops_2048": round(peak, 2),
        "rows": rows,
        "what": (
            "one training step (forward, backward, Adam) of the LSTM stack and a Dense layer on a random batch with "
            "a mean-square loss (no CTC, no data pipeline); median of the timed steps after two warm-ups"
        ),
    }


def _tf_threads() -> dict:
    """TensorFlow's intra- and inter-op thread settings (0: TensorFlow picks, one per core)."""
    import tensorflow as tf

    return {
        "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
    }


def lstm_table(result: dict) -> str:
    """A few lines of `bench_lstm`'s result for the console."""
    lines = [f"{'variant':18}{'batch':>6}{'s/step':>9}{'GFLOP/s':>9}{'of peak':>9}{'matmul at step':>16}"]
    for r in result["rows"]:
        lines.append(
            f"{r['variant']:18}{r['batch']:>6}{r['step_seconds']:>9.3f}{r['training_gflops']:>9.1f}"
            f"{r['utilization']:>9.1%}{r['matmul_gflops_at_step_shape']:>16.1f}"
        )
    lines.append(f"matmul 2048^3: {result['matmul_gflops_2048']:.1f} GFLOP/s")
    return "\n".join(lines)
