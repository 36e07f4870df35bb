"""Shared fixtures: paths to ../shared/data and small WAV writers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ASR_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Runs started by the tests keep their feature cache out of the user's ~/.cache.
os.environ["XDG_CACHE_HOME"] = str(Path(__import__("tempfile").mkdtemp(prefix="asr-test-cache-")))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (or $ASR_SHARED_DATA); a failure in CI when missing, a skip elsewhere."""
    if not (SHARED_DATA / "ldc93s1" / "LDC93S1.wav").is_file():
        message = f"shared data not found at {SHARED_DATA} (set ASR_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


def sine(rate: int, seconds: float = 0.5, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine wave."""
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_wav(path: Path, rate: int, samples: np.ndarray) -> Path:
    """Write samples with scipy (dtype decides the format); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, samples)
    return path


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A small model trained for a few epochs on the embedded corpus (in this process; shared by tests)."""
    from asr.config import compose
    from asr.training.loop import train

    run_dir = tmp_path_factory.mktemp("runs") / "demo"
    overrides = ["trainer.epochs=6", "model.num_layers=1", "model.units=64", "trainer.verbose=0", "augment=none"]
    train(compose(overrides), run_dir, overrides)
    return run_dir


@pytest.fixture(autouse=True)
def _restore_op_determinism():
    """A test that trains turns TensorFlow's op determinism on; the tests after it get the state they had."""
    import sys

    before = "tensorflow" in sys.modules and _determinism()
    yield
    if "tensorflow" in sys.modules and _determinism() != before:
        from asr import compat

        if before:
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
        else:
            compat.disable_op_determinism()


def _determinism() -> bool:
    from asr import compat

    return compat.op_determinism_enabled()
