"""Streaming recognition with a unidirectional model: audio in chunks, a transcript that grows as it comes.

The features of the stream so far are recomputed over a short window behind its end, so that every frame is the
one whole-file extraction gives (python_speech_features' frames are independent but for the pre-emphasis of
their first sample and the deltas of their neighbours: 2 x deltas frames each way); the LSTM layers run in
NumPy from the bundle's weights, carrying their states from chunk to chunk; decoding is greedy. The logits of a
stream are therefore those of the whole file (to float rounding).
"""

from __future__ import annotations

import numpy as np

from asr.data.features import DELTA_WINDOW, apply_global_stats, extract
from asr.data.text import ctc_collapse
from asr.errors import UserError
from asr.inference.bundle import Bundle

# A stream's transcript is closed as a segment after this much silence (blank steps) following some text: the
# pause that separates sentences (asr.inference.options.MIN_PAUSE_SECONDS cuts long files at 0.3 s; a stream
# waits longer, so that a partial word is not closed early).
SEGMENT_PAUSE_SECONDS = 0.6


class StreamError(UserError):
    """A model that cannot stream; the message says why and what to train instead."""


def check_streamable(bundle: Bundle) -> None:
    """StreamError unless the model reads its input left to right with nothing from the utterance's end."""
    options = bundle.model.options
    fix = "train one with experiment=demo_streaming or speech_streaming (model.bidirectional=false)"
    if options.bidirectional:
        raise StreamError(f"--stream needs a unidirectional model, this one is bidirectional; {fix}")
    if options.conv_layers:
        raise StreamError(f"--stream does not run a convolutional front-end (model.conv_layers); {fix}")
    if bundle.features.normalize not in ("none", "global"):
        raise StreamError(
            f"--stream cannot normalize per utterance (features.normalize={bundle.features.normalize}: the "
            f"utterance's statistics need its end); {fix} (it uses the training split's global statistics)"
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class Stream:
    """One utterance streamed through a bundle's unidirectional model: feed() chunks of samples, then finish()."""

    def __init__(self, bundle: Bundle) -> None:
        check_streamable(bundle)
        self.bundle = bundle
        self.options = bundle.features
        # frames affected at each side of a window's edge: pre-emphasis (1, at the start) and the deltas
        self.context = DELTA_WINDOW * self.options.deltas
        self.samples = np.zeros(0, np.float32)
        self.base = 0  # the stream's sample index of samples[0] (those before are no longer needed)
        self.frames_done = 0  # feature frames handed to the model
        self.pending = np.zeros((0, bundle.model.num_features), np.float32)  # frames waiting for a full step
        model = bundle.model
        # per LSTM layer: kernel [in, 4u], recurrent kernel [u, 4u], bias [4u] (gates i, f, c, o)
        self.layers = [rnn.get_weights() for rnn in model.rnns]
        self.states = [(np.zeros(w[1].shape[0], np.float32), np.zeros(w[1].shape[0], np.float32)) for w in self.layers]
        self.output = model.logits.get_weights()  # [units, C], [C]
        # the look-ahead's weights [k + 1, units] (step t weighs the top outputs of t .. t + k); the top outputs of
        # the last k steps wait in `tail` for their right context
        self.ahead = model.lookahead.get_weights()[0][:, :, 0] if model.lookahead is not None else None
        self.tail = np.zeros((0, model.options.units), np.float32)
        self.logits: list[np.ndarray] = []  # [C] per model step so far
        self.best: list[int] = []  # the most probable class per model step so far
        self.segment_start = 0  # the first step of the segment not yet closed

    def feed(self, chunk: np.ndarray) -> None:
        """Add float samples [n] at the bundle's rate and run the model over every frame they complete."""
        self.samples = np.concatenate([self.samples, np.asarray(chunk, np.float32)])
        step, length = self.options.frame_step, self.options.frame_length
        total = self.base + len(self.samples)
        complete = 0 if total < length else 1 + (total - length) // step
        self._advance(complete - self.context, final=False)

    def finish(self) -> np.ndarray:
        """Run the rest (the last frames, the last partial step) and return all logits [T', C]."""
        self._advance(None, final=True)
        if len(self.pending):  # the whole-file model pads the last step with zero frames
            stride = self.bundle.model.stride
            padded = np.zeros((stride, self.pending.shape[1]), np.float32)
            padded[: len(self.pending)] = self.pending
            self._run(padded.reshape(1, -1))
            self.pending = self.pending[:0]
        if self.ahead is not None:  # the steps past the end count as zeros, as in the whole-file model
            self._emit(np.zeros((len(self.ahead) - 1, self.tail.shape[1]), np.float32))
        return self.all_logits()

    def all_logits(self) -> np.ndarray:
        """Logits [T', C] of the model steps run so far."""
        return np.array(self.logits, np.float32).reshape(-1, self.output[1].shape[0])

    def text(self, start: int = 0) -> str:
        """Greedy transcript of the steps from `start` on."""
        characters = self.bundle.vocab.characters
        return "".join(characters[k] for k in ctc_collapse(self.best[start:], self.bundle.vocab.blank_index))

    def segment(self) -> str:
        """The open segment's transcript (the steps since the last closed segment), spaces squeezed."""
        return " ".join(self.text(self.segment_start).split())

    def close_segment(self, pause_seconds: float = SEGMENT_PAUSE_SECONDS) -> str | None:
        """The open segment's transcript, closed, when it holds text followed by at least `pause_seconds` of blank
        steps; else None (the segment stays open)."""
        quiet = max(int(round(pause_seconds / self.bundle.seconds_per_step)), 1)
        closed = self.segment()
        if len(self.best) - self.segment_start <= quiet or not closed:
            return None
        if any(k != self.bundle.vocab.blank_index for k in self.best[-quiet:]):
            return None
        self.segment_start = len(self.best)
        return closed

    def _advance(self, upto: int | None, final: bool) -> None:
        """Compute frames [frames_done, upto) (final: to the end) exactly as whole-file extraction does."""
        if not final and (upto is None or upto <= self.frames_done):
            return
        start = max(self.frames_done - self.context - 1, 0)  # a window that starts this many frames before
        feats = extract(self.samples[start * self.options.frame_step - self.base :], self.options)  # [frames, F]
        if self.bundle.cmvn is not None:
            feats = apply_global_stats(feats, self.bundle.cmvn)
        end = len(feats) if final else upto - start
        new = feats[self.frames_done - start : end]
        self.frames_done += len(new)
        self.pending = np.concatenate([self.pending, new.astype(np.float32)])
        stride = self.bundle.model.stride
        steps = len(self.pending) // stride
        if steps:
            self._run(self.pending[: steps * stride].reshape(steps, -1))
            self.pending = self.pending[steps * stride :]
        # the samples before the next window are no longer needed
        keep_from = max(self.frames_done - self.context - 1, 0) * self.options.frame_step
        if keep_from > self.base:
            self.samples = self.samples[keep_from - self.base :]
            self.base = keep_from

    def _run(self, steps: np.ndarray) -> None:
        """The LSTM layers and the output layer over stacked steps [S, F * stride], states carried."""
        x = steps
        for index, (kernel, recurrent, bias) in enumerate(self.layers):
            h, c = self.states[index]
            inputs = x @ kernel + bias  # [S, 4u]
            outputs = []
            for z in inputs:
                i, f, g, o = np.split(z + h @ recurrent, 4)
                c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
                h = _sigmoid(o) * np.tanh(c)
                outputs.append(h)
            self.states[index] = (h, c)
            x = np.array(outputs)  # [S, u]
        self._emit(x)

    def _emit(self, top: np.ndarray) -> None:
        """The output layer over new top LSTM outputs [S, u]: through the look-ahead, the steps whose right context
        is complete."""
        if self.ahead is not None:
            rows = np.concatenate([self.tail, top])
            ready = len(rows) - (len(self.ahead) - 1)
            if ready <= 0:
                self.tail = rows
                return
            top = sum(weights * rows[j : j + ready] for j, weights in enumerate(self.ahead))
            self.tail = rows[ready:]
        self._record(top @ self.output[0] + self.output[1])

    def _record(self, logits: np.ndarray) -> None:
        """Keep the logits [S, C] of new steps and their most probable classes."""
        self.logits += list(logits)
        self.best += logits.argmax(axis=1).tolist()
