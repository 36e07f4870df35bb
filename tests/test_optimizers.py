import keras
import pytest

from asr.training.optimizers import build_optimizer, learning_rate
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
    assert build_optimizer(OptimizerOptions(clipnorm=0.0), 10, 2).clipnorm is None  # 0: the old "off"
