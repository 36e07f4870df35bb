"""Shared fixtures: paths to ../shared/data, small WAV writers and bundles of tiny models."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
from absl import logging as absl_logging
from scipy.io import wavfile

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("ASR_SHARED_DATA", ROOT.parent / "shared" / "data"))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# absl (TensorFlow's logging) writes to the sys.stderr of its import, here pytest's capture file, and closes
# that stream when an in-process Hydra run reconfigures logging while capsys holds sys.stderr: keep it on
# the real stderr, which absl never closes.
absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
# Runs started by the tests keep their feature cache out of the user's ~/.cache; matplotlib keeps its font
# list where it was (rebuilding it costs a second per test process).
_user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
os.environ.setdefault("MPLCONFIGDIR", str(_user_cache / "matplotlib"))
_test_cache = tempfile.mkdtemp(prefix="asr-test-cache-")  # removed when this test process exits
atexit.register(shutil.rmtree, _test_cache, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = _test_cache


def pytest_configure(config: pytest.Config) -> None:
    """Property-based tests (hypothesis): the same examples on every run and machine (derandomized, so no example
    database; .hypothesis/ holds only a cache that ignores itself in git), no per-example deadline (a loaded CI
    machine is slow), 100 examples unless a test asks for fewer; `fast` (make test-fast): the first 15 of them.
    HYPOTHESIS_PROFILE=<name> picks the profile. Not in the pytest-xdist controller, which runs no test (importing
    hypothesis costs it a second)."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        return
    from hypothesis import HealthCheck, settings

    settings.register_profile(
        "ci",
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=100,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile("fast", parent=settings.get_profile("ci"), max_examples=15)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def unavailable(message: str) -> NoReturn:
    """What a test needs is not on this machine: a failure in CI (which provides everything), a skip with the
    reason elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_shared_data() -> Path:
    """../shared/data (or $ASR_SHARED_DATA); a failure in CI when missing, a skip elsewhere."""
    if not (SHARED_DATA / "ldc93s1" / "LDC93S1.wav").is_file():
        unavailable(f"shared data not found at {SHARED_DATA} (set ASR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def shared_data() -> Path:
    """../shared/data (or $ASR_SHARED_DATA); see require_shared_data."""
    return require_shared_data()


def sine(rate: int, seconds: float = 0.5, hz: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine wave."""
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def write_wav(path: Path, rate: int, samples: np.ndarray) -> Path:
    """Write samples with scipy (dtype decides the format); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, rate, samples)
    return path


def demo_records(split: str, count: int) -> list[dict]:
    """The first `count` records of the embedded demo corpus's `split` manifest, with absolute audio paths."""
    root = ROOT / "data"
    lines = (root / f"{split}.jsonl").read_text().splitlines()[:count]
    return [{**json.loads(line), "audio": str(root / json.loads(line)["audio"])} for line in lines]


def write_manifest(path: Path, records: list[dict]) -> Path:
    """`records` as a JSONL manifest at `path`."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def tiny_bundle(directory: Path, sample_rate: int = 8000, num_layers: int = 1) -> Path:
    """The bundle of a tiny untrained model (MFCC + deltas, LSTM-8 over 2 stacked frames, the default vocabulary)
    saved in `directory` (a run's model/ folder, or a bundle folder); returns `directory`."""
    from asr.data.features import FeatureOptions
    from asr.data.text import Vocabulary
    from asr.inference.bundle import save_bundle
    from asr.model.ctc import CTCModel
    from asr.model.options import ModelOptions

    features, vocab = FeatureOptions(sample_rate=sample_rate, deltas=1), Vocabulary()
    model = CTCModel(features.num_features, vocab.characters, ModelOptions(num_layers=num_layers, units=8, stride=2))
    model.build_for()
    return save_bundle(directory, model, features, vocab)


def biased_bundle(
    directory: Path, letters: str | dict[str, float] = "one", lm_texts: list[str] | None = None, **saved
) -> Path:
    """A bundle (8 kHz) whose model reads every step alike: the blank most likely (logit 0), `letters` close behind
    (-3 each, or the logits given), the rest far (-8). Greedy decoding gives ""; a language model of `lm_texts`
    (a character 3-gram, alpha 1, bonus 2 per character, in the bundle) or a hotword of those letters brings them
    out. `saved`: more of save_bundle's arguments (max_seconds=...)."""
    from asr.data.features import FeatureOptions
    from asr.data.text import Vocabulary
    from asr.decoding.lm_search import LMDecoder, LMWeights, estimate_character_lm
    from asr.inference.bundle import save_bundle
    from asr.model.ctc import CTCModel
    from asr.model.options import ModelOptions

    features, vocab = FeatureOptions(sample_rate=8000), Vocabulary()
    model = CTCModel(features.num_features, vocab.characters, ModelOptions(num_layers=1, units=8, stride=3))
    model.build_for()
    kernel, bias = model.logits.get_weights()
    bias[:] = -8.0
    bias[vocab.blank_index] = 0.0
    for letter, value in (dict.fromkeys(letters, -3.0) if isinstance(letters, str) else letters).items():
        bias[vocab.characters.index(letter)] = value
    model.logits.set_weights([np.zeros_like(kernel), bias])
    lm = LMDecoder(estimate_character_lm(lm_texts, 3), LMWeights(alpha=1.0, beta=2.0)) if lm_texts else None
    return save_bundle(directory, model, features, vocab, lm=lm, **saved)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """A small model trained for a few epochs on the embedded corpus by `asr-train` (its main(argv), in this
    process; shared by tests). Op determinism is left as it was before."""
    from asr.cli.train import main

    run_dir = tmp_path_factory.mktemp("runs") / "demo"
    overrides = ["trainer.epochs=6", "model.num_layers=1", "model.units=64", "trainer.verbose=0", "augment=none"]
    before = _determinism()
    main([*overrides, f"hydra.run.dir={run_dir}"])
    _set_determinism(before)
    return run_dir


@pytest.fixture(autouse=True)
def _restore_op_determinism():
    """A test that trains turns TensorFlow's op determinism on; the tests after it get the state they had."""
    before = _determinism()
    yield
    if "tensorflow" in sys.modules:
        _set_determinism(before)


def _determinism() -> bool:
    """Whether op determinism is on (False before TensorFlow is imported)."""
    if "tensorflow" not in sys.modules:
        return False
    from asr import compat

    return compat.op_determinism_enabled()


def _set_determinism(on: bool) -> None:
    """Switch TensorFlow's op determinism on or off."""
    from asr import compat

    if on == compat.op_determinism_enabled():
        return
    if on:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    else:
        compat.disable_op_determinism()


def pytest_collection_modifyitems(items) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the tests of the demo_run model share one worker, which
    trains it once; the slow tests go first, so that the quick ones fill the workers' last minutes."""
    for item in items:
        if "demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo_run"))
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order within each
