"""Streaming recognition: audio in chunks as it comes, segments closed at its pauses, a partial text meanwhile.

A StreamSession (Recognizer.stream()) works with every model. It decides where segments end on the audio, with
the voice activity detector and the pause rule that cut long files (asr.inference.cutting): a segment closes
once a pause of at least min_pause follows speech, or when it reaches the model's longest training utterance.
Each closed segment is decoded as a piece of a file is (language model, hotwords, word times, offset into the
stream's time), so a stream gives the transcript its whole file gives. The open segment's partial text is
greedy: step by step for a unidirectional model (Stream, below), else the model re-run on the open segment's
audio every PARTIAL_EVERY_SECONDS.

Stream: the unidirectional model step by step. The features of the stream so far are recomputed over a short
window behind its end, so that every frame is the one whole-file extraction gives (python_speech_features'
frames are independent but for the pre-emphasis of their first sample and the deltas of their neighbours:
2 x deltas frames each way); the model's own layers run over the new steps (CTCModel.step_function, traced once
per model: the exports' `step` too), carrying the LSTM states and the look-ahead's tail from chunk to chunk;
decoding is greedy. The logits of a stream are therefore those of the whole file (to float rounding).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import soxr

from asr.data.activity import FRAME_SECONDS, Activity, Detector
from asr.data.features import DELTA_WINDOW, apply_global_stats, extract
from asr.data.text import ctc_collapse
from asr.errors import UserError
from asr.inference.bundle import Bundle
from asr.inference.cutting import Cutting, Piece, split_points, stretches
from asr.inference.options import STREAM_PAUSE_SECONDS, TranscribeOptions
from asr.inference.results import Segment, Transcript, Update, combine
from asr.inference.sources import PCM16_SCALE

if TYPE_CHECKING:
    from asr.inference.recognizer import Recognizer

# A stream's transcript is closed as a segment after this much silence (blank steps) following some text
# (Stream.close_segment, for callers of the step-by-step Stream alone; StreamSession cuts on the audio).
SEGMENT_PAUSE_SECONDS = 0.6
# A bidirectional model's partial text is recomputed (the open segment re-run) after this much new audio: the
# model over a segment of at most max_seconds costs a few tens of milliseconds, twice a second.
PARTIAL_EVERY_SECONDS = 0.5


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


def streamable(bundle: Bundle) -> bool:
    """Whether the model runs step by step (check_streamable passes): its stream's partial text grows as it comes."""
    try:
        check_streamable(bundle)
    except StreamError:
        return False
    return True


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
        self.step = model.step_function()
        options = model.options
        self.states = np.zeros((options.num_layers, 2, options.units), np.float32)  # h, c per LSTM layer
        # the look-ahead's last k top LSTM outputs, and the rows of logits still to drop: those of the k steps before
        # the stream's start (CTCModel.step)
        self.tail = np.zeros((options.lookahead, options.units), np.float32) if options.lookahead else None
        self.delay = options.lookahead
        self.classes = len(bundle.vocab.characters) + 1
        self.logits: list[np.ndarray] = []  # [S, C] per stretch of model steps so far
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
        if self.base + len(self.samples) < self.options.frame_length:  # not one frame: no steps (as a whole file)
            return self.all_logits()
        self._advance(None, final=True)
        stride = self.bundle.model.stride
        last = np.zeros((0, stride * self.pending.shape[1]), np.float32)
        if len(self.pending):  # the whole-file model pads the last step with zero frames
            padded = np.zeros((stride, self.pending.shape[1]), np.float32)
            padded[: len(self.pending)] = self.pending
            last = padded.reshape(1, -1)
            self.pending = self.pending[:0]
        if len(last) or self.tail is not None:  # the look-ahead's last steps (the steps past the end count as zeros)
            self._run(last, final=True)
        return self.all_logits()

    def all_logits(self) -> np.ndarray:
        """Logits [T', C] of the model steps run so far."""
        return np.concatenate([np.zeros((0, self.classes), np.float32), *self.logits])

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

    def _run(self, steps: np.ndarray, final: bool = False) -> None:
        """The model over stacked steps [S, F * stride], its states carried (final: the stream's last steps)."""
        if self.tail is None:
            logits, self.states = self.step(steps, self.states)
        else:
            logits, self.states, self.tail = self.step(steps, self.states, self.tail, np.float32(final))
        logits = logits.numpy()
        dropped = min(self.delay, len(logits))  # rows of the steps before the stream's start
        self.delay -= dropped
        self._record(logits[dropped:])

    def _record(self, logits: np.ndarray) -> None:
        """Keep the logits [S, C] of new steps and their most probable classes."""
        self.logits.append(np.asarray(logits, np.float32))
        self.best += logits.argmax(axis=1).tolist()


def pcm_samples(pcm: bytes | np.ndarray) -> np.ndarray:
    """A chunk as float32 samples: bytes of 16-bit little-endian mono PCM, int16 samples, or float samples in
    [-1, 1]."""
    if isinstance(pcm, bytes | bytearray | memoryview):
        return np.frombuffer(bytes(pcm), "<i2").astype(np.float32) / PCM16_SCALE
    samples = np.asarray(pcm)
    if samples.ndim != 1:
        raise ValueError(f"a chunk must be mono samples [n], got shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / PCM16_SCALE
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"a chunk must be 16-bit PCM bytes, int16 or float samples, got {samples.dtype}")
    return np.clip(np.nan_to_num(samples.astype(np.float32)), -1.0, 1.0)


class StreamSession:
    """One stream through a recognizer: accept() chunks as they come, then finish().

    Times are seconds of the stream (at the model's rate: the first sample is 0). Not for several threads at once.
    """

    def __init__(
        self, recognizer: Recognizer, sample_rate: int, *, min_pause: float | None = None, beam_width: int = 0
    ) -> None:
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
        self.recognizer = recognizer
        bundle = recognizer.bundle
        self.rate = recognizer.sample_rate
        pause = STREAM_PAUSE_SECONDS if min_pause is None else min_pause
        self.options = TranscribeOptions(beam_width=beam_width, timestamps=True, min_pause=pause)
        self.decoder = recognizer.decoder(self.options)  # the language model is read now, not at the first pause
        self.cutting = Cutting(bundle.max_seconds, recognizer.margins, pause)
        self.resampler = None if sample_rate == self.rate else soxr.ResampleStream(sample_rate, self.rate, 1, "float32")
        self.detector = Detector(self.rate)
        self.samples = np.zeros(0, np.float32)  # at the model's rate, from stream sample `origin` on
        self.origin = 0
        self.received = 0  # samples at the model's rate so far
        self.region = 0  # the detector's first frame of the open segment
        self.segments: list[Segment] = []
        self.steps = Stream(bundle) if streamable(bundle) else None
        self.partial = ""
        self.partial_at = 0  # samples received when the partial text was last recomputed (bidirectional models)
        self.odd_byte = b""  # half a 16-bit sample left by a chunk of an odd number of bytes
        self.finished = False

    @property
    def seconds(self) -> float:
        """Seconds of audio accepted so far."""
        return self.received / self.rate

    def accept(self, pcm: bytes | np.ndarray) -> Update:
        """Add a chunk (bytes of 16-bit little-endian mono PCM, or float samples in [-1, 1]) at the session's rate:
        the open segment's partial text and the segments this chunk closed."""
        if self.finished:
            raise ValueError("the stream is finished: start another with Recognizer.stream()")
        if isinstance(pcm, bytes | bytearray | memoryview):
            data = self.odd_byte + bytes(pcm)
            self.odd_byte = data[len(data) - len(data) % 2 :]
            pcm = data[: len(data) - len(data) % 2]
        samples = pcm_samples(pcm)
        if self.resampler is not None:
            samples = self.resampler.resample_chunk(samples)
        self._add(samples, last=False)
        closed = self._close(final=False)
        self._update_partial()
        return Update(self.partial, tuple(closed))

    def finish(self) -> Transcript:
        """Close the open segment and return the transcript of the whole stream (all its segments, with words)."""
        if not self.finished:
            rest = np.zeros(0, np.float32)
            if self.resampler is not None:
                rest = self.resampler.resample_chunk(rest, last=True)
            self._add(rest, last=True)
            if self.steps is not None:
                self.steps.finish()
            self._close(final=True)
            self.partial, self.finished = "", True
        found = None
        if self.recognizer.hotwords is not None:
            from asr.decoding.hotwords import hotwords_in

            found = tuple(hotwords_in(" ".join(s.text for s in self.segments), self.recognizer.hotwords))
        return combine(self.segments, self.seconds, words=True, cut=True, hotwords=found)

    def _add(self, samples: np.ndarray, last: bool) -> None:
        """Keep samples at the model's rate and feed the detector (and the step-by-step model)."""
        self.samples = np.concatenate([self.samples, samples])
        self.received += len(samples)
        self.detector.feed(samples, last=last)
        if self.steps is not None and len(samples):
            self.steps.feed(samples)

    def _close(self, final: bool) -> list[Segment]:
        """Decode and keep the segments that end in the audio so far (final: all of it)."""
        activity = self.detector.activity(self.region)
        spans, cut_at = self._closing(activity, final)
        if not spans:
            self._drop_silence(activity, final)
            return []
        pieces = []
        for a, b in spans:
            start = (self.region + a) * FRAME_SECONDS
            end = self.seconds if final and b == len(activity.voiced) else (self.region + b) * FRAME_SECONDS
            piece = Piece(round(start, 3), round(min(end, self.seconds), 3), activity.holds_speech(a, b))
            first, last = round(piece.start * self.rate) - self.origin, round(piece.end * self.rate) - self.origin
            pieces.append((piece, self.samples[max(first, 0) : max(last, 0)]))
        closed = self.recognizer.decode_pieces(pieces, self.decoder, self.options, self.seconds)
        self.segments += closed
        self._move_region(self.region + cut_at)
        return closed

    def _closing(self, activity: Activity, final: bool) -> tuple[list[tuple[int, int]], int]:
        """The frame spans (of the open region) that close now, and the region's frame where the next one begins."""
        frames = len(activity.voiced)
        max_frames = max(int(self.cutting.max_seconds / FRAME_SECONDS), 1)
        pause = self.cutting.frames(self.cutting.min_pause)
        margins = tuple(round(m / FRAME_SECONDS) for m in self.cutting.margins)

        def cut(end: int) -> list[tuple[int, int]]:
            part = Activity(activity.speech[:end], activity.energy[:end])
            return split_points(part.voiced, max_frames, part.energy, min_pause=pause, margins=margins)

        if final:
            return (cut(frames) if activity.holds_speech() else []), frames
        found = stretches(activity.voiced, pause)
        if not found:
            return [], 0
        # a stretch followed by a pause as long as the cutting's is complete; it closes where a file's piece would
        # end: its trailing margin, or the middle of the pause when that comes first (once it is known)
        if len(found) > 1:
            (_, b), (a, _) = found[-2], found[-1]
            end = min(b + margins[1], (b + a) // 2)
            return cut(end), end
        b = found[-1][1]
        if frames - b >= max(pause, 2 * margins[1]):
            return cut(b + margins[1]), b + margins[1]
        if frames - found[0][0] > max_frames:  # speech without a pause as long as a piece may be: cut it
            spans = cut(frames)
            if len(spans) > 1:
                return spans[:-1], spans[-1][0]
        return [], 0

    def _drop_silence(self, activity: Activity, final: bool) -> None:
        """Without speech in the open region, keep only the silence a next segment's margin may need."""
        if final or activity.voiced.any():
            return
        keep = round(self.cutting.margins[0] / FRAME_SECONDS) + 1
        if len(activity.voiced) > keep:
            self._move_region(self.region + len(activity.voiced) - keep)

    def _move_region(self, frame: int) -> None:
        """Open the next segment at the detector's `frame`; the samples before it are no longer needed."""
        self.region = frame
        first = round(frame * FRAME_SECONDS * self.rate)
        if first > self.origin:
            self.samples = self.samples[first - self.origin :]
            self.origin = first

    def _update_partial(self) -> None:
        """The open segment's greedy text ("" while it holds no speech): step by step, or re-run every
        PARTIAL_EVERY_SECONDS."""
        if not self.detector.activity(self.region).holds_speech():
            self.partial = ""
            return
        if self.steps is not None:
            first_step = int(self.region * FRAME_SECONDS / self.recognizer.bundle.seconds_per_step)
            self.partial = " ".join(self.steps.text(first_step).split())
            return
        if self.received - self.partial_at < PARTIAL_EVERY_SECONDS * self.rate:
            return
        self.partial_at = self.received
        start = round(self.region * FRAME_SECONDS * self.rate) - self.origin
        (self.partial,) = self.recognizer.greedy_texts([self.samples[max(start, 0) :]])
