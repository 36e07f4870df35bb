"""What several benchmarks share: where the numbers were taken (the machine, its float32 matmul rate), memory,
a fresh process per measurement, wall-clock seconds per epoch (warm-up left out), audio seconds of training items,
and the FLOP count of the LSTM stack."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from asr.errors import UserError
from asr.system import die_with_parent, usable_cpus

WARMUP_EPOCHS = 1  # the first epoch of each pipeline traces its graphs: timed, but left out of the figures
MATMUL_SIZE = 2048  # the "practical peak" shape: [2048, 2048] x [2048, 2048], float32
MATMUL_REPEATS = 3  # timed runs of each matmul loop after one warm-up run; the fastest is reported
# Each timed loop at an LSTM step shape multiplies about this many FLOPs: a step's matmul is a few MFLOP, too
# short to time alone, so the loop repeats it inside one graph (no Python between the products).
MATMUL_LOOP_FLOP = 1e9
FLOP_PER_MULTIPLY_ADD = 2
LSTM_GATES = 4  # input, forget, cell and output gate: one [input + units, units] product each
# Backward pass ~ 2x the forward FLOPs (gradients with respect to the activations and to the weights): a
# training step is ~ 3x a forward pass.
TRAINING_FLOP_FACTOR = 3


def machine() -> dict:
    """Where the numbers were taken."""
    import tensorflow as tf

    return {"host": platform.node(), "cpus": usable_cpus(), "python": platform.python_version(), "tf": tf.__version__}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (getrusage ru_maxrss: KB on Linux), in MB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(function: Callable, *args: object) -> dict:
    """function(*args) in a fresh spawned process (its own TensorFlow state, its own peak memory)."""
    context, parent = get_context("spawn"), os.getpid()
    with ProcessPoolExecutor(1, context, initializer=die_with_parent, initargs=(parent,)) as pool:
        return pool.submit(function, *args).result()


def epoch_figures(seconds: Sequence[float]) -> dict:
    """median, min and max of the measured epochs' seconds (after the warm-up)."""
    measured = list(seconds[WARMUP_EPOCHS:])
    return {
        "median": round(statistics.median(measured), 3),
        "min": round(min(measured), 3),
        "max": round(max(measured), 3),
    }


def epoch_timer() -> object:
    """A Keras callback recording each epoch's wall time (from the end of the previous one; the first from the
    start of training) and the validation time inside it."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall seconds per epoch and of each epoch's validation."""

        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[float] = []
            self.validation: list[float] = []
            self._mark = self._test_started = 0.0
            self._test_seconds = 0.0

        def on_train_begin(self, logs: dict | None = None) -> None:
            self._mark = time.perf_counter()

        def on_test_begin(self, logs: dict | None = None) -> None:
            self._test_started = time.perf_counter()

        def on_test_end(self, logs: dict | None = None) -> None:
            self._test_seconds += time.perf_counter() - self._test_started

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            self.epochs.append(now - self._mark)
            self.validation.append(self._test_seconds)
            self._mark, self._test_seconds = now, 0.0

    return EpochTimer()


def audio_seconds(items: Sequence[tuple]) -> float:
    """Seconds of audio of (audio, start, end, labels) items, from the files' headers and the cuts."""
    from asr.data.audio import audio_info

    total = 0.0
    for audio, start, end, _ in items:
        seconds = audio_info(audio).seconds
        total += min(seconds if end is None else end, seconds) - (start or 0.0)
    return total


def refuse_conv_front_end(conv_layers: int) -> None:
    """The FLOP counts cover stacked frames into the LSTM stack: a convolutional front-end would go uncounted."""
    if conv_layers:
        raise UserError(
            f"model.conv_layers={conv_layers}: asr-bench counts the FLOPs of stacked frames into the LSTM stack "
            "and would leave the convolutions out; benchmark with model.conv_layers=0 (time a run with the "
            "front-end through asr-train's train_seconds)"
        )


def stack_forward_flop_per_frame(
    input_width: int, units: int, layers: int, bidirectional: bool, classes: int
) -> tuple[float, list[int]]:
    """Forward FLOPs per LSTM step of the (Bi)LSTM stack plus the output layer (the gate products only:
    elementwise gate arithmetic is < 1 % of them), and each layer's input width."""
    directions = 2 if bidirectional else 1
    flop, width, widths = 0.0, input_width, []
    for _ in range(layers):
        widths.append(width)
        flop += directions * FLOP_PER_MULTIPLY_ADD * LSTM_GATES * units * (width + units)
        width = units * directions
    return flop + FLOP_PER_MULTIPLY_ADD * width * classes, widths


def matmul_gflops(m: int, k: int, n: int, repeats: int = MATMUL_REPEATS) -> float:
    """GFLOP/s of TensorFlow's float32 matmul [m, k] x [k, n]: the fastest of `repeats` timed graph loops."""
    import tensorflow as tf

    a, b = tf.random.normal([m, k]), tf.random.normal([k, n])
    flop = FLOP_PER_MULTIPLY_ADD * m * k * n
    inner = max(1, math.ceil(MATMUL_LOOP_FLOP / flop))

    @tf.function
    def loop() -> tf.Tensor:
        def body(i: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            x = a + tf.cast(i, tf.float32)  # depends on i: every product is computed, none hoisted or merged
            return i + 1, total + tf.reduce_sum(tf.matmul(x, b))

        return tf.while_loop(lambda i, _: i < inner, body, (tf.constant(0), tf.constant(0.0)), parallel_iterations=1)[1]

    loop().numpy()  # warm-up: tracing and the first run
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        loop().numpy()
        times.append(time.perf_counter() - started)
    return flop * inner / min(times) / 1e9
