"""Long recordings: where to cut a file at its pauses so that no piece is longer than the model was trained on.

A pass over the file, a block at a time (memory stays bounded whatever its length), marks each 30 ms frame
as speech or not with WebRTC's voice activity detector; the cuts then go into the pauses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import webrtcvad

from asr.data.audio import AudioError, audio_info, resample

# webrtcvad reads 16-bit mono PCM at 8, 16, 32 or 48 kHz in frames of 10, 20 or 30 ms.
VAD_RATE = 16000
FRAME_SECONDS = 0.03
FRAME_SAMPLES = int(VAD_RATE * FRAME_SECONDS)
# webrtcvad's aggressiveness, 0-3: 2 calls breaths and room noise non-speech without clipping soft words.
VAD_MODE = 2
# Audio read at once while looking for pauses: one minute of float32 at 48 kHz is 11.5 MB.
BLOCK_SECONDS = 60.0
# A piece starts this long before its first speech frame: the VAD is late on soft onsets such as "sh".
LEAD_SECONDS = 0.2
# A piece ends in the middle of the latest pause of at least MIN_PAUSE_SECONDS that fits (so that pieces are
# as long as allowed and cuts fall between sentences), else of its longest pause; a piece without any pause
# is cut at the longest length allowed.
MIN_PAUSE_SECONDS = 0.3


@dataclass(frozen=True)
class Piece:
    """A [start, end) span of a recording, in seconds."""

    start: float
    end: float


def speech_frames(path: str | Path, block_seconds: float = BLOCK_SECONDS) -> np.ndarray:
    """Speech (True) or not per 30 ms frame of an audio file [frames], read a block at a time."""
    vad = webrtcvad.Vad(VAD_MODE)
    flags: list[bool] = []
    carry = np.zeros(0, np.int16)
    try:
        with soundfile.SoundFile(str(path)) as f:
            rate = f.samplerate
            for block in f.blocks(blocksize=max(int(block_seconds * rate), 1), dtype="float32", always_2d=True):
                mono = np.clip(np.nan_to_num(block.mean(axis=1)), -1.0, 1.0)
                pcm = np.concatenate([carry, (resample(mono, rate, VAD_RATE) * 32767).astype(np.int16)])
                usable = len(pcm) - len(pcm) % FRAME_SAMPLES
                frames = pcm[:usable].reshape(-1, FRAME_SAMPLES)
                flags += [vad.is_speech(frame.tobytes(), VAD_RATE) for frame in frames]
                carry = pcm[usable:]
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"damaged audio file ({e})", "re-export the file") from e
    return np.array(flags, dtype=bool)


def split_points(
    speech: np.ndarray,
    max_frames: int,
    lead: int = round(LEAD_SECONDS / FRAME_SECONDS),
    min_pause: int = round(MIN_PAUSE_SECONDS / FRAME_SECONDS),
) -> list[tuple[int, int]]:
    """[start, end) frame spans over the speech of `speech` [frames], each at most `max_frames` long, starting
    `lead` frames before speech and ending in a pause (see _cut); stretches without speech are left out (a
    recording in which no frame is speech is cut into equal pieces, all of it)."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if not speech.any():
        speech = np.ones_like(speech)
    lead = min(lead, max_frames // 4)  # a piece is mostly what follows its onset
    spans, start, total = [], 0, len(speech)
    voiced = np.flatnonzero(speech)
    while True:
        following = voiced[np.searchsorted(voiced, start) :]
        if not len(following):
            break
        start = max(start, int(following[0]) - lead)
        end = total if total - start <= max_frames else start + _cut(speech[start : start + max_frames], min_pause)
        spans.append((start, end))
        start = end
    return spans


def _cut(window: np.ndarray, min_pause: int) -> int:
    """Where to end a piece that starts at window[0]: in the middle of its latest pause of at least
    `min_pause` frames, else of its longest pause, else at the window's end."""
    pauses = [(a, b) for a, b in _runs(~window) if a > 0]
    if not pauses:
        return len(window)
    long = [(a, b) for a, b in pauses if b - a >= min_pause]
    a, b = long[-1] if long else max(pauses, key=lambda run: run[1] - run[0])
    return max((a + b) // 2, 1)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in flags."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def pieces(path: str | Path, max_seconds: float) -> list[Piece]:
    """The spans of a recording to transcribe one by one: each at most `max_seconds`, cut at pauses; the last
    one reaches the end of the file."""
    duration = audio_info(path).seconds
    speech = speech_frames(path)
    spans = split_points(speech, max(int(max_seconds / FRAME_SECONDS), 1))
    found = [Piece(round(a * FRAME_SECONDS, 3), round(b * FRAME_SECONDS, 3)) for a, b in spans]
    if found and spans[-1][1] == len(speech) and duration - found[-1].start <= max_seconds:
        found[-1] = Piece(found[-1].start, duration)  # the frames leave out the last few milliseconds
    return found or [Piece(0.0, duration)]
