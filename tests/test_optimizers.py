import keras
import numpy as np
import pytest

from asr.training.optimizers import averaged_weights, build_optimizer, learning_rate, uses_average
from asr.training.options import OptimizerOptions


def _lr(options: OptimizerOptions, total: int, step: int) -> float:
    schedule = learning_rate(options, total)
    return float(keras.ops.convert_to_numpy(schedule(step))) if callable(schedule) else schedule


def test_warmup_ratio_is_a_share_of_all_steps():
    options = OptimizerOptions(lr=0.01, schedule="cosine", warmup_ratio=0.1)
    # 1000 steps: 100 of warm-up from 0, the peak at step 100, then cosine to 0 at the last step
    assert _lr(options, 1000, 0) == pytest.approx(0.0)
    assert _lr(options, 1000, 50) == pytest.approx(0.005)
    assert _lr(options, 1000, 100) == pytest.approx(0.01)
    assert _lr(options, 1000, 550) == pytest.approx(0.005, rel=1e-3)  # half way down the cosine
    assert _lr(options, 1000, 1000) == pytest.approx(0.0, abs=1e-7)
    # the same share of a longer run is a longer warm-up
    assert _lr(options, 2000, 100) == pytest.approx(0.005)


@pytest.mark.parametrize("ratio", [1.0, 1.5, -0.1])
def test_a_warmup_of_the_whole_run_or_more_is_refused(ratio):
    with pytest.raises(ValueError, match=r"warmup_ratio is a share of all training steps and must be in \[0, 1\)"):
        OptimizerOptions(schedule="cosine", warmup_ratio=ratio)


def test_optimizer_choice_and_clipping():
    assert isinstance(build_optimizer(OptimizerOptions(name="sgd", momentum=0.9), 10, 2), keras.optimizers.SGD)
    adamw = build_optimizer(OptimizerOptions(name="adamw", weight_decay=0.01, clipnorm=1.0), 10, 2)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.clipnorm == 1.0
    assert build_optimizer(OptimizerOptions(clipnorm=None), 10, 2).clipnorm is None


@pytest.mark.parametrize("momentum", [0.0, 1.0, 1.2, -0.5])
def test_a_moving_average_momentum_outside_0_1_is_refused(momentum):
    with pytest.raises(ValueError, match=r"optimizer.ema_momentum .* must be in \(0, 1\)"):
        OptimizerOptions(ema_momentum=momentum)


def test_averaged_weights_lends_the_moving_averages_and_gives_the_weights_back():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    optimizer = build_optimizer(OptimizerOptions(name="sgd", lr=0.5, clipnorm=None, ema_momentum=0.9), 10, 2)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.9 and uses_average(optimizer)
    assert not uses_average(build_optimizer(OptimizerOptions(), 10, 2))
    model.compile(optimizer=optimizer, loss="mse")
    (kernel,) = model.trainable_variables
    start = keras.ops.convert_to_numpy(kernel).copy()
    for _ in range(3):  # gradient 1 everywhere: each SGD step takes 0.5 off every weight
        optimizer.apply([keras.ops.ones_like(kernel)], [kernel])
    own = keras.ops.convert_to_numpy(kernel).copy()
    np.testing.assert_allclose(own, start - 1.5, rtol=1e-6)
    # the first step copies the weights, later ones move 10 % of the way: start - 0.5, then - 0.55, then - 0.645
    with averaged_weights(model):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), start - 0.645, rtol=1e-5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(kernel), own)
