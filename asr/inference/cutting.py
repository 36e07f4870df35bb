"""Long recordings: where to cut a recording so that each piece is speech the way the training utterances were.

The recording is cut at every pause that the voice activity detector finds (asr.data.activity): one piece per
stretch of speech, with as much of the surrounding silence as the training utterances had before and after
their speech. No TensorFlow here: the recognizer, its streams and the TFLite runner cut alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.data.activity import FRAME_SECONDS, SILENT_DB, Activity, file_activity
from asr.data.audio import audio_info
from asr.inference.options import MIN_PAUSE_SECONDS

# Silence kept before and after a piece's speech when the bundle does not say how much its training
# utterances had (bundles written before it was measured): the detector is late on soft onsets such as "sh".
DEFAULT_MARGIN_SECONDS = 0.2
# A frame this far under the loudest of its stretch is the recording's silence (room noise), not speech: webrtcvad
# calls the first and last 0.1 s of room noise of the demo corpus's utterances speech, 20-30 dB under their vowels.
QUIET_DB = 20.0
# A stretch of speech shorter than this (a click, a cough, a breath the detector took for speech) is too short
# to be decoded alone: it joins the neighbour across the shorter pause when the two fit in one piece.
MIN_SPEECH_SECONDS = 0.15


@dataclass(frozen=True)
class Piece:
    """A [start, end) span of a recording, in seconds; `speech`: whether it holds any (Activity.holds_speech): a
    piece without is transcribed as "" and never decoded."""

    start: float
    end: float
    speech: bool = True


@dataclass(frozen=True)
class Cutting:
    """How a long recording is cut: the longest piece, the silence kept (before, after) its speech and the
    shortest pause cut at, in seconds."""

    max_seconds: float
    margins: tuple[float, float] = (DEFAULT_MARGIN_SECONDS, DEFAULT_MARGIN_SECONDS)
    min_pause: float = MIN_PAUSE_SECONDS

    def __post_init__(self) -> None:
        if self.max_seconds <= 0 or self.min_pause <= 0 or min(self.margins) < 0:
            raise ValueError(f"max_seconds and min_pause must be > 0 and margins >= 0, got {self}")

    def frames(self, seconds: float) -> int:
        """Seconds as a count of the detector's frames (at least one)."""
        return max(round(seconds / FRAME_SECONDS), 1)


def split_points(
    speech: np.ndarray,
    max_frames: int,
    energy: np.ndarray | None = None,
    min_pause: int = round(MIN_PAUSE_SECONDS / FRAME_SECONDS),
    margins: tuple[int, int] = (round(DEFAULT_MARGIN_SECONDS / FRAME_SECONDS),) * 2,
    min_speech: int = round(MIN_SPEECH_SECONDS / FRAME_SECONDS),
) -> list[tuple[int, int]]:
    """[start, end) frame spans to decode one by one, at most `max_frames` each: one per stretch of speech in
    `speech` [frames] (stretches apart by pauses of at least `min_pause` frames), with `margins` (before,
    after) frames of the pause around it (at most half of it each, and none of its frames that hold no signal
    by `energy` [frames]); a stretch under `min_speech` frames joins a
    neighbour when the two fit together, and a span over `max_frames` is cut at its quietest frame (else, without
    `energy`, at the limit). Silence between the spans is left out; a recording in which no frame is
    speech is cut into equal pieces."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    total = len(speech)
    if not speech.any():
        speech = np.ones_like(speech)
    lead, trail = (min(m, max_frames // 4) for m in margins)  # a piece is mostly speech
    found = _merge_short(stretches(speech, min_pause), min_speech, max_frames - lead - trail)
    spans = []
    for i, (a, b) in enumerate(found):
        before = 0 if i == 0 else (found[i - 1][1] + a + 1) // 2  # the middle of the pause before
        after = total if i == len(found) - 1 else (b + found[i + 1][0]) // 2
        start, end = max(a - lead, before), min(b + trail, after)
        if energy is not None:
            start, end = _without_spliced_silence(start, end, a, b, energy, lead, trail)
        spans += _within_limit(start, end, max_frames, energy)
    return spans


def _without_spliced_silence(
    start: int, end: int, a: int, b: int, energy: np.ndarray, lead: int, trail: int
) -> tuple[int, int]:
    """A span [start, end) around the stretch [a, b) with no digital silence (no signal) in its margins, but where
    the stretch's speech meets digital silence directly: an utterance whose own silence was digital keeps it as
    its margin, as the training utterances that began and ended so had it (the margins are measured on them the
    same way, asr.data.activity.edge_silence). A stretch whose first (last) margin's worth of frames are all
    QUIET_DB under its loudest carries the recording's own silence there (the detector took its room noise for
    speech): digital silence beyond it was spliced in, and is left out. Measured on the demo long file
    (asr-bench recognizer): CER 0.47 % as file by file; looking at the edge frame alone, 1.42 %; always trimming
    digital silence, 2.13 %; never, 5.9 %."""
    peak = energy[a:b].max(initial=SILENT_DB)

    def keeps(inside: np.ndarray, outside: int) -> bool:  # speech right against digital silence at this edge
        return 0 <= outside < len(energy) and energy[outside] <= SILENT_DB and not (inside < peak - QUIET_DB).all()

    if not lead or not keeps(energy[a : a + lead], a - 1):
        while start < a and energy[start] <= SILENT_DB:
            start += 1
    if not trail or not keeps(energy[max(b - trail, a) : b], b):
        while end > b and energy[end - 1] <= SILENT_DB:
            end -= 1
    return start, end


def stretches(speech: np.ndarray, min_pause: int) -> list[tuple[int, int]]:
    """[start, end) of each stretch of speech: runs of speech frames joined across pauses under `min_pause`."""
    joined: list[list[int]] = []
    for a, b in _runs(speech):
        if joined and a - joined[-1][1] < min_pause:
            joined[-1][1] = b
        else:
            joined.append([a, b])
    return [(a, b) for a, b in joined]


def _merge_short(stretches: list[tuple[int, int]], min_speech: int, limit: int) -> list[tuple[int, int]]:
    """Stretches under `min_speech` frames joined to the neighbour across the shorter pause, where the two
    together span at most `limit` frames; the others as they are."""
    merged = list(stretches)
    i = 0
    while i < len(merged):
        a, b = merged[i]
        neighbours = []  # (pause between, neighbour's index)
        if i > 0:
            neighbours.append((a - merged[i - 1][1], i - 1))
        if i + 1 < len(merged):
            neighbours.append((merged[i + 1][0] - b, i + 1))
        joined = False
        for _, j in sorted(neighbours) if b - a < min_speech else ():
            lo, hi = min(i, j), max(i, j)
            if merged[hi][1] - merged[lo][0] <= limit:
                merged[lo : hi + 1] = [(merged[lo][0], merged[hi][1])]
                i, joined = lo, True
                break
        i += not joined
    return merged


def _within_limit(start: int, end: int, max_frames: int, energy: np.ndarray | None) -> list[tuple[int, int]]:
    """[start, end) as spans of at most `max_frames`, each ending after the quietest frame of the second half of
    the longest piece allowed (`energy` [frames]), or at the limit without energies."""
    spans = []
    while end - start > max_frames:
        if energy is None or len(energy) < start + max_frames:
            cut = start + max_frames
        else:
            lowest = start + max_frames // 2
            cut = lowest + int(np.argmin(energy[lowest : start + max_frames])) + 1
        spans.append((start, cut))
        start = cut
    spans.append((start, end))
    return spans


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in flags."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def cut_spans(activity: Activity, cutting: Cutting) -> list[tuple[int, int]]:
    """[start, end) frame spans of a recording's `activity` to decode one by one (split_points)."""
    return split_points(
        activity.voiced,
        max(int(cutting.max_seconds / FRAME_SECONDS), 1),
        activity.energy,
        min_pause=cutting.frames(cutting.min_pause),
        margins=(round(cutting.margins[0] / FRAME_SECONDS), round(cutting.margins[1] / FRAME_SECONDS)),
    )


def plan_pieces(activity: Activity, duration: float, cutting: Cutting | None) -> list[Piece]:
    """The pieces of a recording of `duration` seconds: the whole of it (cutting None), or one per stretch of
    speech between pauses (cut_spans), each marked with whether it holds speech."""
    if cutting is None:
        return [Piece(0.0, duration, activity.holds_speech())]
    spans = cut_spans(activity, cutting)
    found = [
        Piece(round(a * FRAME_SECONDS, 3), round(min(b * FRAME_SECONDS, duration), 3), activity.holds_speech(a, b))
        for a, b in spans
    ]
    if found and spans[-1][1] == len(activity.voiced):  # the frames leave out the last few milliseconds
        found[-1] = Piece(found[-1].start, duration, found[-1].speech)
    return found or [Piece(0.0, duration, activity.holds_speech())]


def pieces(
    path: str | Path,
    max_seconds: float,
    margins: tuple[float, float] = (DEFAULT_MARGIN_SECONDS, DEFAULT_MARGIN_SECONDS),
    min_pause: float = MIN_PAUSE_SECONDS,
) -> list[Piece]:
    """The spans of an audio file to transcribe one by one: one per stretch of speech between pauses of at least
    `min_pause` seconds, with `margins` (before, after) seconds of silence, each at most `max_seconds`."""
    return plan_pieces(file_activity(path), audio_info(path).seconds, Cutting(max_seconds, margins, min_pause))
