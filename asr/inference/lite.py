"""Transcribe with an exported .tflite file and nothing but LiteRT, NumPy and this package's light modules.

    from asr.inference.lite import LiteModel
    model = LiteModel("model.tflite")                  # reads model.json beside it
    model.transcribe(samples, sample_rate).text        # float samples in [-1, 1], mono -> a Transcript

A recording longer than the model's longest training utterance is cut at its pauses as the recognizer cuts it
(asr.inference.sources: WebRTC's voice activity detector and NumPy), and a piece without speech is "" without
running the model. No TensorFlow is imported (a device needs `ai-edge-litert`, numpy, soxr, soundfile, webrtcvad
and python_speech_features only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from asr.data.audio import resample
from asr.data.features import FeatureOptions, apply_global_stats, extract
from asr.data.text import Vocabulary
from asr.decoding.alignment import greedy_text, log_softmax
from asr.inference.cutting import DEFAULT_MARGIN_SECONDS, Piece
from asr.inference.options import DEFAULT_MAX_SECONDS, MIN_PAUSE_SECONDS
from asr.inference.results import Segment, Transcript, combine, piece_segment, silent_segment
from asr.inference.sources import WAVEFORM_NAME, InMemory, plan, waveform


class LiteModel:
    """A .tflite acoustic model with its features, cutting and greedy decoding."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        spec = json.loads(self.path.with_suffix(".json").read_text(encoding="utf-8"))
        self.features = FeatureOptions(**spec["features"])
        self.characters: str = spec["vocabulary"]
        self.blank: int = spec["blank_index"]
        self.vocab = Vocabulary(self.characters)
        stats = spec.get("normalization")
        self.cmvn = None if stats is None else (np.float32(stats["mean"]), np.float32(stats["std"]))
        # sidecars written before these were recorded: the bundle's defaults
        self.max_seconds = float(spec.get("max_seconds") or DEFAULT_MAX_SECONDS)
        self.margins = tuple(spec.get("silence_margins") or (DEFAULT_MARGIN_SECONDS, DEFAULT_MARGIN_SECONDS))
        self.stride = int(spec.get("stride") or spec.get("input", {}).get("stride") or 1)
        self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]

    @property
    def sample_rate(self) -> int:
        """The rate the model hears."""
        return self.features.sample_rate

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
        """Greedy CTC decoding of logits [T', C]: repeats merged, blanks dropped (as the recognizer's greedy)."""
        return greedy_text(logits, self.characters)

    def transcribe(
        self,
        samples: np.ndarray,
        sample_rate: int,
        *,
        timestamps: bool = False,
        min_pause: float = MIN_PAUSE_SECONDS,
    ) -> Transcript:
        """The greedy transcript of mono float samples at `sample_rate`, cut at pauses of at least `min_pause`
        seconds when longer than the model's longest training utterance; words with times when `timestamps`."""
        source = InMemory(WAVEFORM_NAME, waveform(np.asarray(samples), self.sample_rate, sample_rate), self.sample_rate)
        pieces = plan(source, self.max_seconds, self.margins, min_pause)
        segments = [self._segment(piece, source) for piece in pieces]
        cut = source.duration > self.max_seconds
        return combine(segments, source.duration, words=timestamps, cut=cut)

    def _segment(self, piece: Piece, source: InMemory) -> Segment:
        """One piece decoded: "" without speech, else greedy, aligned for its words and confidence."""
        signal = source.samples(piece)
        if not piece.speech or not len(signal):
            return silent_segment(piece)
        log_probs = log_softmax(self.logits(self.featurize(signal, self.sample_rate)))
        step = self.stride * self.features.frame_step / self.sample_rate
        return piece_segment(piece, self.decode(log_probs), log_probs, self.vocab, step, source.duration)
