"""The machine's float32 matmul rate, part of `asr-bench train`: at 2048^3 (the practical peak) and at the LSTM
stack's step shapes, the yardstick of the training's FLOP rate."""

from __future__ import annotations

import os
from collections.abc import Sequence

from asr.bench.common import (
    FLOP_PER_MULTIPLY_ADD,
    LSTM_GATES,
    MATMUL_REPEATS,
    MATMUL_SIZE,
    cpu_model,
    machine,
    matmul_gflops,
)


def bench_machine(batch_size: int, widths: Sequence[int], units: int, bidirectional: bool) -> dict:
    """The machine's matmul rate measured now: at 2048^3 (the practical peak) and at each LSTM layer's step
    shape [batch, input + units] x [input + units, 4 units], combined weighted by the layers' FLOPs."""
    directions = 2 if bidirectional else 1
    shapes, flop, seconds = [], 0.0, 0.0
    for width in dict.fromkeys(widths):  # distinct input widths, in layer order
        m, k, n = batch_size, width + units, LSTM_GATES * units
        rate = matmul_gflops(m, k, n)
        layer_flop = widths.count(width) * directions * FLOP_PER_MULTIPLY_ADD * m * k * n
        flop, seconds = flop + layer_flop, seconds + layer_flop / rate
        shapes.append({"shape": [m, k, n], "layers": widths.count(width), "gflops": round(rate, 2)})
    return {
        **machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "matmul_gflops_2048": round(matmul_gflops(MATMUL_SIZE, MATMUL_SIZE, MATMUL_SIZE), 2),
        "matmul_gflops_lstm_step": round(flop / seconds, 2),
        "lstm_step_shapes": shapes,
        "matmul_timing": f"fastest of {MATMUL_REPEATS} graph loops after a warm-up, float32, TensorFlow's threads",
    }
