"""Read audio files (every format libsndfile reads) into float32 mono waveforms at a target sample rate."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from asr.errors import UserError

# File name endings read as audio when a folder is searched (any case): the containers libsndfile reads
# that speech corpora come in (TIMIT's NIST SPHERE files are often named .WAV).
AUDIO_SUFFIXES = (
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".mp3",
    ".sph",
    ".nist",
    ".aif",
    ".aiff",
    ".aifc",
    ".au",
    ".caf",
    ".w64",
    ".rf64",
)
# soxr's "HQ" preset: 2-3x faster than scipy's resample_poly here, and no worse (a 1 kHz sine from 22.05 or
# 44.1 kHz to 16 kHz comes out at >130 dB SNR, resample_poly's at 78-91 dB; docs/results.md).
RESAMPLE_QUALITY = "HQ"
# RIFF layouts whose header states the size of the sample data (a shorter file was cut off).
_RIFF_FORMATS = ("WAV", "WAVEX")
CONVERT_FIX = "convert it to WAV or FLAC, e.g. `ffmpeg -i in out.flac`, or remove it from the dataset"


class AudioError(UserError):
    """An audio file could not be read; the message names the file, the problem and what to do."""

    def __init__(self, path: str | Path, reason: str, fix: str = "", kind: str = "unreadable_audio") -> None:
        self.path = str(path)
        self.reason = reason
        self.kind = kind  # how a dataset report files it: unreadable_audio, silent_audio
        message = f"{path}: {reason}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


def audio_files(folder: Path) -> list[Path]:
    """Every audio file below `folder` (recursive), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def resample(signal: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D float waveform in [-1, 1] from `rate` to `target_rate` (soxr), clipped to [-1, 1] again:
    the filter rings past full scale near clipped samples (a full-scale square wave comes out at +-1.12)."""
    if rate == target_rate:
        return signal
    out = soxr.resample(signal, rate, target_rate, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)
    return np.clip(out, -1.0, 1.0, out=out)


def _riff_shortfall(path: Path) -> int:
    """Bytes of sample data a RIFF WAV header announces beyond the end of the file (0: complete)."""
    with path.open("rb") as f:
        head = f.read(12)
        size = path.stat().st_size
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return 0
        order = "<" if head[:4] == b"RIFF" else ">"
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return 0
            name, length = chunk[:4], struct.unpack(f"{order}I", chunk[4:])[0]
            if name == b"data":
                return max(f.tell() + length - size, 0)
            f.seek(length + (length & 1), 1)  # chunks are padded to an even length


def _frame_range(path: Path, rate: int, frames: int, start: float | None, end: float | None) -> tuple[int, int]:
    """First and last (exclusive) frame of the [start, end) cut in seconds, checked against the file."""
    duration = frames / rate
    first = 0.0 if start is None else start
    last = duration if end is None else end
    if not 0.0 <= first < last <= duration + 1e-6:
        raise AudioError(
            path,
            f"cut [{first}, {last}] s lies outside the audio (0 to {duration:.3f} s)",
            "fix `start`/`end` in the manifest",
        )
    return int(round(first * rate)), min(int(round(last * rate)), frames)


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says."""

    samplerate: int
    channels: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.samplerate


def audio_info(path: str | Path) -> AudioInfo:
    """Rate, channels and frames of an audio file (its header only); AudioError if it is missing, not audio,
    cut off, or empty."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found", "check the path in the manifest or directory")
    try:
        info = soundfile.info(str(path))
        missing = _riff_shortfall(path) if info.format in _RIFF_FORMATS else 0
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError, OSError, MemoryError) as e:
        raise AudioError(path, f"not a readable audio file ({_reason(e)})", CONVERT_FIX) from e
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError(path, f"the header states {info.samplerate} Hz and {info.channels} channels", CONVERT_FIX)
    if missing:
        raise AudioError(path, f"damaged audio file: the last {missing} bytes of its samples are missing", CONVERT_FIX)
    if info.frames == 0:
        raise AudioError(path, "the file holds no audio samples", "remove it from the dataset")
    return AudioInfo(info.samplerate, info.channels, info.frames)


@dataclass(frozen=True)
class Recording:
    """A waveform as read: float32 mono in [-1, 1] at the file's own rate, and what it was converted from."""

    samples: np.ndarray  # [N] float32
    samplerate: int
    channels: int
    subtype: str  # libsndfile's sample format: PCM_16, PCM_24, FLOAT, VORBIS, ...


def read_audio(path: str | Path, start: float | None = None, end: float | None = None) -> Recording:
    """Read an audio file as float32 mono in [-1, 1] at its own rate, optionally cut to [start, end) seconds
    (only those frames are read); AudioError naming the file on any failure, never NaN or inf."""
    path = Path(path)
    info = audio_info(path)
    first, last = (
        (0, info.frames)
        if start is None and end is None
        else _frame_range(path, info.samplerate, info.frames, start, end)
    )
    try:
        with soundfile.SoundFile(str(path)) as f:
            subtype = f.subtype
            f.seek(first)
            samples = f.read(last - first, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, MemoryError) as e:
        raise AudioError(path, f"damaged audio file ({_reason(e)})", CONVERT_FIX) from e
    if samples.size == 0:
        raise AudioError(path, "the file holds no audio samples", "remove it from the dataset")
    if not np.isfinite(samples).all():  # checked before averaging: inf - inf is NaN, with a RuntimeWarning
        raise AudioError(path, "the samples include NaN or infinite values", "re-export the file")
    # Channels averaged in float64: finite float32 samples far beyond full scale cannot overflow to inf or NaN.
    signal = samples.mean(axis=1, dtype=np.float64).astype(np.float32) if samples.shape[1] > 1 else samples[:, 0]
    return Recording(np.clip(signal, -1.0, 1.0), info.samplerate, info.channels, subtype)


def load_audio(path: str | Path, sample_rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at `sample_rate`, optionally cut to [start, end) seconds
    (only those frames are read).

    Every format and sample type libsndfile reads (WAV of any width, A-law, u-law, float, WAVE_FORMAT_EXTENSIBLE;
    FLAC, OGG Vorbis, Opus, MP3, NIST SPHERE, AIFF, ...), any number of channels (averaged), any rate.
    Raises AudioError naming the file on any failure.
    """
    recording = read_audio(path, start, end)
    signal = resample(recording.samples, recording.samplerate, sample_rate)
    if signal.size == 0:  # a few samples at a higher rate: none at sample_rate (an empty waveform breaks MFCCs)
        raise AudioError(
            path,
            f"too short: {recording.samples.size} samples at {recording.samplerate} Hz leave none at {sample_rate} Hz",
            "remove it from the dataset",
        )
    return signal


# Levels below which a training file counts as silent (rejected): 10 dB under the quietest peak and 16 dB under
# the quietest RMS level of the recordings in ../shared/data (FSDD: peak -39.6 dBFS, RMS -53.4 dBFS).
SILENCE_PEAK_DBFS = -50.0
SILENCE_RMS_DBFS = -70.0
# A sample at or above this magnitude (0.999 of full scale) counts as clipped; more than CLIP_SHARE of them is
# reported as a warning (the file is still used). No file in ../shared/data has more than 0.06 %.
CLIP_LEVEL = 0.999
CLIP_SHARE = 0.001


def _dbfs(value: float) -> float:
    """An amplitude as dB relative to full scale (-inf for 0)."""
    return 20.0 * math.log10(value) if value > 0 else -math.inf


@dataclass(frozen=True)
class Levels:
    """Peak and RMS level (dBFS) and the share of clipped samples of a waveform."""

    peak_dbfs: float
    rms_dbfs: float
    clipped_share: float

    @classmethod
    def of(cls, samples: np.ndarray) -> Levels:
        magnitude = np.abs(samples)
        rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
        return cls(_dbfs(float(magnitude.max())), _dbfs(rms), float(np.mean(magnitude >= CLIP_LEVEL)))

    def silence(self) -> str | None:
        """Why the waveform counts as silent, or None."""
        if self.peak_dbfs == -math.inf:
            return "digital silence (every sample is 0)"
        if self.peak_dbfs < SILENCE_PEAK_DBFS or self.rms_dbfs < SILENCE_RMS_DBFS:
            return (
                f"near-silence (peak {self.peak_dbfs:.1f} dBFS, RMS {self.rms_dbfs:.1f} dBFS; a training file needs "
                f"a peak of at least {SILENCE_PEAK_DBFS:g} dBFS and an RMS of at least {SILENCE_RMS_DBFS:g} dBFS)"
            )
        return None

    def clipping(self) -> str | None:
        """A warning when more than CLIP_SHARE of the samples are clipped, or None."""
        if self.clipped_share <= CLIP_SHARE:
            return None
        return f"{self.clipped_share:.2%} of the samples are clipped (at full scale; more than {CLIP_SHARE:.1%})"


# Trimming a training utterance (data.trim_silence): 10 ms frames; the speech runs from the first to the last
# frame within TRIM_TOP_DB of the loudest one (librosa's trim works the same way, with 60 dB), and TRIM_MARGIN_SECONDS
# of what lies beyond is kept on each side. 40 dB keeps soft word endings: on the recorded Dutch sentences of
# ../shared/data/fillets_nl it puts the end of speech 0.19 s later on average than WebRTC's voice activity detector
# (mode 2), more than 0.3 s earlier in 3 % of them, and cuts 18 % of their audio. A recording whose noise floor
# lies within 40 dB of its speech stays whole.
TRIM_FRAME_SECONDS = 0.01
TRIM_TOP_DB = 40.0
TRIM_MARGIN_SECONDS = 0.2


def speech_span(samples: np.ndarray, rate: int) -> tuple[int, int]:
    """[start, end) in samples of mono `samples` at `rate`: from TRIM_MARGIN_SECONDS before the first frame within
    TRIM_TOP_DB of the loudest frame to as long after the last; the whole signal when it is all zeros."""
    frame = max(int(rate * TRIM_FRAME_SECONDS), 1)
    count = -(-len(samples) // frame)
    padded = np.zeros(count * frame, np.float64)
    padded[: len(samples)] = samples
    power = np.mean(np.square(padded.reshape(count, frame)), axis=1)  # [frames]
    if not count or power.max() <= 0.0:
        return 0, len(samples)
    loud = np.flatnonzero(power >= power.max() * 10.0 ** (-TRIM_TOP_DB / 10.0))
    margin = int(rate * TRIM_MARGIN_SECONDS)
    return max(int(loud[0]) * frame - margin, 0), min((int(loud[-1]) + 1) * frame + margin, len(samples))


def trim_silence(samples: np.ndarray, rate: int) -> np.ndarray:
    """`samples` without the silence before and after its speech, but TRIM_MARGIN_SECONDS of it (speech_span)."""
    start, end = speech_span(samples, rate)
    return samples[start:end]


def _reason(error: Exception) -> str:
    """libsndfile's own words for a failure, without soundfile's "Error opening '<path>': " prefix."""
    text = str(error)
    return text.split(": ", 1)[1] if text.startswith("Error opening") and ": " in text else text
