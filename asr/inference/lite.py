"""Transcribe with an exported .tflite file and nothing but LiteRT, NumPy and this module's feature code.

    from asr.inference.lite import LiteModel
    model = LiteModel("model.tflite")           # reads model.json beside it
    model.transcribe(samples, sample_rate)      # float samples in [-1, 1], mono -> "the transcript"

No TensorFlow is imported (a device needs `ai-edge-litert`, numpy, soxr and python_speech_features only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from asr.data.audio import resample
from asr.data.features import FeatureOptions, apply_global_stats, extract
from asr.data.text import ctc_collapse


class LiteModel:
    """A .tflite acoustic model with its features and greedy decoding."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        spec = json.loads(self.path.with_suffix(".json").read_text(encoding="utf-8"))
        self.features = FeatureOptions(**spec["features"])
        self.characters: str = spec["vocabulary"]
        self.blank: int = spec["blank_index"]
        stats = spec.get("normalization")
        self.cmvn = None if stats is None else (np.float32(stats["mean"]), np.float32(stats["std"]))
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    def featurize(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float samples at `sample_rate` -> the model's normalized input [T, F]."""
        signal = resample(np.asarray(samples, np.float32), sample_rate, self.features.sample_rate)
        feats = extract(signal, self.features)
        return feats if self.cmvn is None else apply_global_stats(feats, self.cmvn)

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits [T', C] of features [T, F]."""
        batch = np.ascontiguousarray(features[None], dtype=np.float32)  # [1, T, F]
        self.interpreter.resize_tensor_input(self.input, batch.shape)
        self.interpreter.allocate_tensors()
        self.interpreter.set_tensor(self.input, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output)[0]

    def decode(self, logits: np.ndarray) -> str:
        """Greedy CTC decoding of logits [T', C]: repeats merged, blanks dropped (as asr-transcribe's greedy)."""
        return "".join(self.characters[k] for k in ctc_collapse(logits.argmax(axis=1), self.blank))

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        """The greedy transcript of mono float samples at `sample_rate`."""
        return self.decode(self.logits(self.featurize(samples, sample_rate)))
