"""Read WAV files into float32 mono waveforms at a target sample rate."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from scipy.io import wavfile

# Full-scale values of each integer PCM layout as scipy.io.wavfile returns it:
# 8-bit is unsigned with its zero at 128; 24-bit arrives left-justified in int32, so it shares int32's scale.
_UINT8_ZERO = 128.0
_INT_FULL_SCALE = {np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


# File name endings read as audio when a folder is searched (any case).
AUDIO_SUFFIXES = (".wav",)


def audio_files(folder: Path) -> list[Path]:
    """Every audio file below `folder` (recursive), sorted by path."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


class AudioError(Exception):
    """A WAV file could not be read; the message names the file, the problem and what to do."""

    def __init__(self, path: str | Path, reason: str, fix: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        message = f"{path}: {reason}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


def to_float(samples: np.ndarray) -> np.ndarray:
    """Scale integer or float PCM samples to float32 in [-1, 1]."""
    if samples.dtype == np.uint8:
        return ((samples.astype(np.float32) - _UINT8_ZERO) / _UINT8_ZERO).astype(np.float32)
    if samples.dtype in _INT_FULL_SCALE:
        return (samples.astype(np.float64) / _INT_FULL_SCALE[samples.dtype]).astype(np.float32)
    if samples.dtype.kind == "f":
        return np.clip(samples.astype(np.float32), -1.0, 1.0)
    raise ValueError(f"unsupported sample type {samples.dtype}")


def resample(signal: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D signal from `rate` to `target_rate` with a polyphase filter."""
    if rate == target_rate:
        return signal
    from scipy.signal import resample_poly  # scipy.signal takes a second to import; --help should not wait

    g = math.gcd(rate, target_rate)
    return resample_poly(signal, target_rate // g, rate // g).astype(np.float32)


def load_audio(path: str | Path, sample_rate: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Read a WAV file as float32 mono in [-1, 1] at `sample_rate`, optionally cut to [start, end) seconds.

    Any width scipy reads (8/16/24/32-bit integer, 32/64-bit float) and any number of channels (averaged)
    is accepted. Raises AudioError naming the file on any failure.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "file not found", "check the path in the manifest or directory")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", wavfile.WavFileWarning)
            rate, samples = wavfile.read(path)
    except wavfile.WavFileWarning as e:
        raise AudioError(path, f"damaged WAV file: {e}", "re-export or re-download the file") from e
    except Exception as e:  # scipy raises ValueError, EOFError, struct.error... for broken files
        raise AudioError(path, f"not a readable WAV file: {e}", "convert it to PCM or float WAV, e.g. with sox") from e
    if samples.size == 0:
        raise AudioError(path, "the file holds no audio samples", "remove it from the dataset")
    try:
        signal = to_float(samples)
    except ValueError as e:
        raise AudioError(path, str(e), "convert it to 16-bit PCM, e.g. with sox") from e
    if signal.ndim == 2:  # [samples, channels] -> mono
        signal = signal.mean(axis=1, dtype=np.float32)
    if start is not None or end is not None:
        signal = _cut(path, signal, rate, start, end)
    return resample(signal, rate, sample_rate)


def _cut(path: Path, signal: np.ndarray, rate: int, start: float | None, end: float | None) -> np.ndarray:
    """Return signal[start:end] (seconds), checking the range lies inside the file."""
    duration = len(signal) / rate
    first = 0.0 if start is None else start
    last = duration if end is None else end
    if not 0.0 <= first < last <= duration + 1e-6:
        raise AudioError(
            path,
            f"cut [{first}, {last}] s lies outside the audio (0 to {duration:.3f} s)",
            "fix `start`/`end` in the manifest",
        )
    return signal[int(round(first * rate)) : int(round(last * rate))]
