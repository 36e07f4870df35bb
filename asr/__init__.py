"""asr: a small CTC speech-recognition pipeline on TensorFlow 2 / Keras 3, configured with Hydra.

The public API, for notebooks and scripts (imported on first use, so `import asr` stays light):

    import asr
    options = asr.compose(["experiment=demo", "trainer.epochs=5"])  # typed, validated options
    result = asr.train(options, "runs/notebook")                     # a RunResult (result.json)
    recognizer = asr.load("runs/notebook")                            # a run, a bundle or a shipped model's name
    recognizer.transcribe("long.wav").text                            # cut at pauses; also bytes or a waveform
    session = recognizer.stream()                                     # session.accept(pcm), session.finish()

Layout: asr.data (audio, text, datasets, features, preparation, batching) -> asr.decoding (greedy, beam, language
models, hotwords, alignment) -> asr.model (the CTC model, metrics) -> asr.inference (bundle, recognizer, streams,
exports) and asr.training (loop, callbacks, checkpoints); asr.cli holds the console commands, which only parse
arguments and call those.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "compose": "asr.config",
    "to_options": "asr.config",
    "train": "asr.training.loop",
    "load_bundle": "asr.inference.bundle",
    "load": "asr.inference.recognizer",
    "Recognizer": "asr.inference.recognizer",
    "Transcript": "asr.inference.results",
    "RunOptions": "asr.training.options",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name == "transcribe":  # retired in 2026-12 (docs/upgrading.md)
        raise AttributeError(
            "asr.transcribe was retired: use asr.load(path).transcribe(waveform, sample_rate=...) (docs/upgrading.md)"
        )
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
