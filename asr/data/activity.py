"""Where a recording holds speech: WebRTC's voice activity detector and the energy of each 30 ms frame.

Long recordings are cut at the pauses this finds (asr.inference.cutting), and the silence that training
utterances have before and after their speech is measured with it, so that the pieces of a long recording get
the same margins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr
import webrtcvad

from asr.data.audio import AudioError

# webrtcvad reads 16-bit mono PCM at 8, 16, 32 or 48 kHz in frames of 10, 20 or 30 ms.
VAD_RATE = 16000
FRAME_SECONDS = 0.03
FRAME_SAMPLES = int(VAD_RATE * FRAME_SECONDS)
# webrtcvad's aggressiveness, 0-3: 2 calls breaths and room noise non-speech without clipping soft words.
VAD_MODE = 2
# Audio read at once while looking for pauses: one minute of float32 at 48 kHz is 11.5 MB.
BLOCK_SECONDS = 60.0
# Frames quieter than this hold no signal (digital silence: 16-bit audio's quantization noise alone is at
# -101 dBFS); they are never speech, whatever the detector's hangover says after a word.
SILENT_DB = -80.0
# A stretch of audio whose loudest voiced 30 ms frame is quieter than this holds no speech, whatever the detector
# says (it flags a few frames of any noise): 10 dB under the quietest loudest frame of 150 files sampled from each
# corpus of ../shared/data and data/ (FSDD -45.4 dBFS; the others -30 to -10 dBFS). Noise at -60 dBFS peaks at
# -59 dBFS per frame. Measured by `asr-bench recognizer` (words out for quiet noise).
SPEECH_FLOOR_DB = -55.0
# Training utterances whose margins are measured: spread evenly over the split, enough for a stable median.
MARGIN_SAMPLE = 200


@dataclass(frozen=True)
class Activity:
    """Per 30 ms frame of a recording: the detector's speech flags [frames] and the energy in dBFS [frames]."""

    speech: np.ndarray
    energy: np.ndarray

    @property
    def voiced(self) -> np.ndarray:
        """Speech frames that hold a signal [frames]."""
        return self.speech & (self.energy > SILENT_DB)

    def holds_speech(self, start: int = 0, end: int | None = None) -> bool:
        """Whether frames [start, end) hold speech: a voiced frame at least as loud as SPEECH_FLOOR_DB."""
        voiced = self.voiced[start:end]
        return bool(voiced.any() and self.energy[start:end][voiced].max() >= SPEECH_FLOOR_DB)


class Detector:
    """The activity of audio fed a block (or a stream's chunk) at a time: the samples that do not fill a frame
    wait for the next block, and the resampling to VAD_RATE carries its state across blocks."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.vad = webrtcvad.Vad(VAD_MODE)
        self.flags: list[bool] = []
        self.energies: list[np.ndarray] = []
        self.carry = np.zeros(0, np.int16)
        self.resampler = None if rate == VAD_RATE else soxr.ResampleStream(rate, VAD_RATE, 1, dtype="float32")

    @property
    def frames(self) -> int:
        """Frames analysed so far."""
        return len(self.flags)

    def feed(self, samples: np.ndarray, last: bool = False) -> None:
        """Add [n] or [n, channels] float samples at the detector's rate (`last`: the end of the audio)."""
        mono = np.clip(np.nan_to_num(samples.mean(axis=1) if samples.ndim == 2 else samples), -1.0, 1.0)
        mono = np.ascontiguousarray(mono, np.float32)
        if self.resampler is not None:
            mono = self.resampler.resample_chunk(mono, last=last)
        pcm = np.concatenate([self.carry, (np.clip(mono, -1.0, 1.0) * 32767).astype(np.int16)])
        usable = len(pcm) - len(pcm) % FRAME_SAMPLES
        frames = pcm[:usable].reshape(-1, FRAME_SAMPLES)  # [n, FRAME_SAMPLES]
        self.flags += [self.vad.is_speech(frame.tobytes(), VAD_RATE) for frame in frames]
        power = np.mean((frames.astype(np.float64) / 32768.0) ** 2, axis=1)
        self.energies.append(10 * np.log10(power + 1e-10))
        self.carry = pcm[usable:]

    def activity(self, start: int = 0) -> Activity:
        """The activity of the frames from `start` on."""
        energy = np.concatenate(self.energies) if self.energies else np.zeros(0)
        self.energies = [energy]
        return Activity(np.array(self.flags[start:], dtype=bool), energy[start:])


def file_activity(path: str | Path, block_seconds: float = BLOCK_SECONDS) -> Activity:
    """The activity of an audio file's frames, read a block at a time (memory stays bounded)."""
    try:
        with soundfile.SoundFile(str(path)) as f:
            detector = Detector(f.samplerate)
            for block in f.blocks(blocksize=max(int(block_seconds * f.samplerate), 1), dtype="float32", always_2d=True):
                detector.feed(block)
            detector.feed(np.zeros(0, np.float32), last=True)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise AudioError(path, f"damaged audio file ({e})", "re-export the file") from e
    return detector.activity()


def signal_activity(samples: np.ndarray, rate: int) -> Activity:
    """The activity of the frames of float samples [n] at `rate`."""
    detector = Detector(rate)
    detector.feed(np.asarray(samples, np.float32), last=True)
    return detector.activity()


def edge_silence(activity: Activity) -> tuple[float, float] | None:
    """Seconds before the first and after the last voiced frame; None when no frame is voiced."""
    voiced = np.flatnonzero(activity.voiced)
    if not len(voiced):
        return None
    return float(voiced[0] * FRAME_SECONDS), float((len(activity.voiced) - 1 - voiced[-1]) * FRAME_SECONDS)


def silence_margins(signals: Iterable[tuple[np.ndarray, int]]) -> tuple[float, float] | None:
    """Median silence before and after the speech of (samples [n], rate) signals, in seconds (rounded to the
    30 ms frame); None when none of them holds speech."""
    edges = [e for samples, rate in signals if (e := edge_silence(signal_activity(samples, rate))) is not None]
    if not edges:
        return None
    lead, trail = np.median(np.array(edges), axis=0)
    return round(float(lead), 3), round(float(trail), 3)


def sample_evenly(count: int, limit: int = MARGIN_SAMPLE) -> list[int]:
    """Up to `limit` indices spread evenly over range(count), first and last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})
