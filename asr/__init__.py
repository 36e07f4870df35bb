"""asr: a small CTC speech-recognition pipeline on TensorFlow 2 / Keras 3, configured with Hydra.

The public API, for notebooks and scripts (imported on first use, so `import asr` stays light):

    import asr
    options = asr.compose(["experiment=demo", "trainer.epochs=5"])  # typed, validated options
    result = asr.train(options, "runs/notebook")                     # a RunResult (result.json)
    bundle = asr.load_bundle("runs/notebook")                         # a run dir or its model/ folder
    asr.transcribe(bundle, [waveform], sample_rate=16000)             # -> ["the transcript"]

Layout: asr.data (audio, text, datasets, features, preparation, batching) -> asr.model (the CTC model,
decoding, metrics) -> asr.inference (bundle, transcription, export) and asr.training (loop, callbacks,
checkpoints); asr.cli holds the console commands, which only parse arguments and call those.
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
    "transcribe": "asr.inference.transcribe",
    "RunOptions": "asr.training.options",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    """Import a public name's module when the name is first used."""
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'asr' has no attribute {name!r}")
