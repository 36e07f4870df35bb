"""The audio a recognizer is given, whatever its form: a file, the bytes of a file, a waveform, a manifest entry.

Each becomes a Source: float32 mono samples at the model's rate, its duration, its voice activity
(asr.data.activity) and the samples of any span. A file up to IN_MEMORY_SECONDS is read whole, as a waveform
is; a longer one is read a piece at a time (memory stays bounded). No TensorFlow here (the TFLite runner uses it).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile

from asr.data.activity import Activity, file_activity, signal_activity
from asr.data.audio import CONVERT_FIX, AudioError, audio_files, audio_info, load_audio, resample
from asr.data.datasets import Utterance, read_csv, read_jsonl
from asr.inference.cutting import Cutting, Piece, plan_pieces

# Files up to this long are read whole (an hour at 16 kHz is 230 MB of float32; half an hour at 16 kHz, 115 MB,
# is what a caller of transcribe() can be expected to hold); longer ones a piece at a time.
IN_MEMORY_SECONDS = 1800.0
# How bytes and waveforms are named in errors and records.
BYTES_NAME = "<bytes>"
WAVEFORM_NAME = "<waveform>"
# The scale of 16-bit PCM.
PCM16_SCALE = 32768.0

Audio = str | Path | bytes | np.ndarray | Utterance


class Source(Protocol):
    """Audio at a model's rate."""

    name: str
    duration: float  # seconds

    def activity(self) -> Activity: ...

    def samples(self, piece: Piece) -> np.ndarray: ...


@dataclass(frozen=True)
class InMemory:
    """Samples [n] float32 mono at `rate`."""

    name: str
    signal: np.ndarray
    rate: int

    @property
    def duration(self) -> float:
        return len(self.signal) / self.rate

    def activity(self) -> Activity:
        return signal_activity(self.signal, self.rate)

    def samples(self, piece: Piece) -> np.ndarray:
        return self.signal[round(piece.start * self.rate) : round(piece.end * self.rate)]


@dataclass(frozen=True)
class OnDisk:
    """A long audio file, read a piece at a time at `rate`."""

    name: str
    path: Path
    rate: int
    duration: float

    def activity(self) -> Activity:
        return file_activity(self.path)

    def samples(self, piece: Piece) -> np.ndarray:
        return load_audio(self.path, self.rate, piece.start, piece.end)


def expand_inputs(paths: Sequence[str | Path]) -> list[Utterance]:
    """Files as given, folders as their audio files (recursive, sorted), `.jsonl` / `.csv` manifests as their
    entries (with the reference transcripts)."""
    items = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            items += [Utterance(p) for p in audio_files(path)]
        elif path.suffix == ".jsonl":
            items += read_jsonl(path)
        elif path.suffix == ".csv":
            items += read_csv(path)
        else:
            items.append(Utterance(path))
    return items


def open_audio(audio: Audio, rate: int, sample_rate: int | None = None) -> Source:
    """`audio` as a Source at `rate`: a path (str or Path), the bytes of an audio file, a mono waveform (float in
    [-1, 1] or int16 PCM, at `sample_rate`) or a manifest entry (its [start, end) span). AudioError for audio that
    cannot be read; ValueError for a waveform without its rate or not mono."""
    if isinstance(audio, Utterance):
        if audio.start is None and audio.end is None:
            return open_audio(audio.audio, rate)
        return InMemory(str(audio.audio), load_audio(audio.audio, rate, audio.start, audio.end), rate)
    if isinstance(audio, str | Path):
        info = audio_info(audio)
        if info.seconds > IN_MEMORY_SECONDS:
            return OnDisk(str(audio), Path(audio), rate, info.seconds)
        return InMemory(str(audio), load_audio(audio, rate), rate)
    if isinstance(audio, bytes | bytearray | memoryview):
        return InMemory(BYTES_NAME, read_bytes(bytes(audio), rate), rate)
    if isinstance(audio, np.ndarray):
        return InMemory(WAVEFORM_NAME, waveform(audio, rate, sample_rate), rate)
    raise TypeError(f"audio must be a path, the bytes of an audio file or a numpy waveform, got {type(audio).__name__}")


def read_bytes(data: bytes, rate: int) -> np.ndarray:
    """The bytes of an audio file (any format libsndfile reads) as float32 mono at `rate`; AudioError if they are
    not audio."""
    if not data:
        raise AudioError(BYTES_NAME, "no audio: zero bytes", "send the bytes of an audio file (WAV, FLAC, OGG, MP3)")
    try:
        samples, file_rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(BYTES_NAME, f"not a readable audio file ({e})", CONVERT_FIX) from e
    if samples.size == 0:
        raise AudioError(BYTES_NAME, "the file holds no audio samples", "send a recording")
    if not np.isfinite(samples).all():
        raise AudioError(BYTES_NAME, "the samples include NaN or infinite values", "re-export the file")
    mono = samples.mean(axis=1, dtype=np.float64).astype(np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return resample(np.clip(mono, -1.0, 1.0), file_rate, rate)


def waveform(samples: np.ndarray, rate: int, sample_rate: int | None) -> np.ndarray:
    """Mono samples at `sample_rate` (float in [-1, 1], or int16 PCM) as float32 at `rate`."""
    if sample_rate is None:
        raise ValueError("a waveform needs its sample_rate: transcribe(samples, sample_rate=16000)")
    if samples.ndim != 1:
        raise ValueError(f"a waveform must be mono, shape [n], got shape {samples.shape}: average its channels first")
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / PCM16_SCALE
    elif not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"a waveform must hold float samples in [-1, 1] (or int16 PCM), got {samples.dtype}")
    if not np.isfinite(samples).all():
        raise AudioError(WAVEFORM_NAME, "the samples include NaN or infinite values", "pass finite samples")
    return resample(np.clip(samples.astype(np.float32), -1.0, 1.0), int(sample_rate), rate)


def plan(source: Source, max_seconds: float, margins: tuple[float, float], min_pause: float) -> list[Piece]:
    """The pieces `source` is decoded in: the whole of it when it is at most `max_seconds` long, else cut at its
    pauses (asr.inference.cutting); each marked with whether it holds speech."""
    cutting = Cutting(max_seconds, margins, min_pause) if source.duration > max_seconds else None
    return plan_pieces(source.activity(), source.duration, cutting)
