"""What a recognizer returns: a Transcript of segments and words, and a stream's Update (no TensorFlow here:
the TFLite runner and the server's callers import these alone).

    transcript.text                          # "three oh one nine"
    transcript.segments[0].start             # seconds of the recording
    transcript.to_dict()                     # asr-transcribe --json's record, without "audio" and "seconds"
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from asr.decoding.alignment import aligned_words

if TYPE_CHECKING:
    from asr.data.text import Vocabulary
    from asr.inference.cutting import Piece

# Digits kept of a time or a confidence in the JSON records (milliseconds; confidences to 1e-4).
TIME_DIGITS = 3
CONFIDENCE_DIGITS = 4
# The confidence of a piece without speech, never decoded: nothing was said.
SILENCE_CONFIDENCE = 1.0


@dataclass(frozen=True)
class Word:
    """A word with its start and end in seconds of the recording (or stream) and its confidence in [0, 1]."""

    start: float
    end: float
    word: str
    confidence: float

    def to_dict(self) -> dict:
        """{word, start, end, confidence}: an element of the record's "words"."""
        return {
            "word": self.word,
            "start": round(self.start, TIME_DIGITS),
            "end": round(self.end, TIME_DIGITS),
            "confidence": round(self.confidence, CONFIDENCE_DIGITS),
        }


@dataclass(frozen=True)
class Segment:
    """A piece of a recording (or a closed segment of a stream) decoded alone: its span in seconds, its text,
    its confidence in [0, 1] and its words (with times in seconds of the whole recording)."""

    start: float
    end: float
    text: str
    confidence: float
    words: tuple[Word, ...] = ()

    def to_dict(self, words: bool = False) -> dict:
        """{start, end, text, confidence} (+ words): an element of the record's "chunks"."""
        record = {
            "start": round(self.start, TIME_DIGITS),
            "end": round(self.end, TIME_DIGITS),
            "text": self.text,
            "confidence": round(self.confidence, CONFIDENCE_DIGITS),
        }
        if words:
            record["words"] = [w.to_dict() for w in self.words]
        return record


@dataclass(frozen=True)
class Transcript:
    """The transcript of one recording (or stream).

    `segments`: the pieces it was decoded in, in order (one for a recording decoded whole); `words`: every
    segment's words, or None when word times were not asked for; `nbest`: the n best transcripts with their
    log probabilities ({"text", "score"}), when asked; `cut`: whether the recording was longer than the model's
    longest training utterance and so cut at its pauses; `hotwords`: the hotwords found in the text, or None
    when none were given."""

    text: str
    duration: float
    confidence: float
    segments: tuple[Segment, ...] = ()
    words: tuple[Word, ...] | None = None
    nbest: tuple[dict, ...] = ()
    cut: bool = False
    hotwords: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        """asr-transcribe --json's record of the recording: text, duration_s, confidence; nbest and words when
        asked; chunks (its pieces) when the recording was cut and words were asked; hotwords when given."""
        record = {"duration_s": round(self.duration, TIME_DIGITS), "text": self.text}
        if self.nbest:
            record["nbest"] = [dict(n) for n in self.nbest]
        if self.words is not None:
            record["words"] = [w.to_dict() for w in self.words]
        record["confidence"] = round(self.confidence, CONFIDENCE_DIGITS)
        if self.cut and self.words is not None:
            # "chunks" holds the segments (the pieces the recording was cut into): the key is a public contract of
            # asr-transcribe --json and stays, though the code calls them pieces and segments
            record["chunks"] = [s.to_dict() for s in self.segments]
        if self.hotwords is not None:
            record["hotwords"] = list(self.hotwords)
        return record


@dataclass(frozen=True)
class Update:
    """What one call of StreamSession.accept found: the open segment's text so far (greedy, it may change) and
    the segments that closed since the previous call (final: decoded as pieces of a file are)."""

    partial: str
    closed: tuple[Segment, ...] = ()


def joined_text(segments: Iterable[Segment]) -> str:
    """The segments' texts joined by single spaces (an empty segment adds nothing)."""
    return " ".join(s.text for s in segments if s.text)


def segments_confidence(segments: Iterable[Segment]) -> float:
    """The confidence of several segments: theirs, weighted by the lengths of their texts (alike when all are
    empty); 1.0 for none."""
    segments = list(segments)
    if not segments:
        return 1.0
    sizes = [len(s.text) for s in segments]
    total = sum(sizes)
    if not total:
        return sum(s.confidence for s in segments) / len(segments)
    return sum(size * s.confidence for size, s in zip(sizes, segments, strict=True)) / total


def combine(
    segments: Iterable[Segment],
    duration: float,
    *,
    words: bool = False,
    cut: bool = False,
    nbest: tuple[dict, ...] = (),
    hotwords: tuple[str, ...] | None = None,
) -> Transcript:
    """The Transcript of a recording decoded in `segments` (in order); its words when `words`."""
    segments = tuple(segments)
    return Transcript(
        text=joined_text(segments),
        duration=duration,
        confidence=segments_confidence(segments),
        segments=segments,
        words=tuple(w for s in segments for w in s.words) if words else None,
        nbest=nbest,
        cut=cut,
        hotwords=hotwords,
    )


def silent_segment(piece: Piece) -> Segment:
    """The segment of a piece without speech: no text, never decoded."""
    return Segment(piece.start, piece.end, "", SILENCE_CONFIDENCE)


def piece_segment(
    piece: Piece, text: str, log_probs: np.ndarray, vocab: Vocabulary, seconds_per_step: float, duration: float
) -> Segment:
    """The segment of a piece decoded to `text` from its log probabilities [T, C]: the text aligned to them for its
    words (times in seconds of the recording, within the piece and the recording's `duration`) and confidence
    (its words', weighted by their letters; for no words, the blank's mean posterior: that nothing was said)."""
    text = " ".join(text.split())
    end = min(piece.end, duration)
    aligned = aligned_words(text, log_probs, vocab)
    words = tuple(
        Word(
            min(piece.start + w["first"] * seconds_per_step, end),
            min(piece.start + (w["last"] + 1) * seconds_per_step, end),
            w["word"],
            w["confidence"],
        )
        for w in aligned
    )
    if words:
        confidence = float(np.average([w.confidence for w in words], weights=[len(w.word) for w in words]))
    else:
        confidence = float(np.mean(np.exp(log_probs[:, vocab.blank_index]))) if len(log_probs) else SILENCE_CONFIDENCE
    return Segment(piece.start, piece.end, text, confidence, words)
