"""MFCC features from python_speech_features, with optional deltas and per-utterance normalization."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np

# How features are normalized (see FeatureOptions.normalize). Members are named by the values users type
# ("global" is a Python keyword, hence the functional form: Normalize["global"]).
Normalize = StrEnum("Normalize", ["utterance", "utterance_scalar", "global", "both", "none"], module=__name__)
# Guards the division for a constant coefficient (digital silence); far below any real MFCC spread.
STD_FLOOR = 1e-8
# Frames on each side used for delta regression: python_speech_features' documented default (N=2).
DELTA_WINDOW = 2


@dataclass(frozen=True)
class FeatureOptions:
    """How audio becomes model input. Defaults are python_speech_features' own MFCC defaults."""

    sample_rate: int = 16000
    numcep: int = 13
    winlen: float = 0.025  # seconds
    winstep: float = 0.01  # seconds
    nfilt: int = 26
    nfft: int = 0  # 0: the smallest power of two that holds one frame (512 at 16 kHz, 2048 at 44.1 kHz)
    lowfreq: float = 0.0
    highfreq: float = 0.0  # 0: Nyquist
    preemph: float = 0.97
    ceplifter: int = 22
    append_energy: bool = True
    deltas: int = 0  # 0: MFCC only; 1: + delta; 2: + delta + delta-delta
    # utterance: each coefficient to zero mean, unit variance over the utterance's frames;
    # utterance_scalar: one mean and one std over the whole matrix (the seed article's recipe);
    # global: per coefficient, by mean/std over all frames of the training split (kept in the bundle);
    # both: utterance, then global; none.
    normalize: Normalize = Normalize.utterance

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"features.sample_rate must be positive, got {self.sample_rate}")
        if self.numcep <= 0 or self.nfilt < self.numcep:
            raise ValueError(f"need 0 < features.numcep <= features.nfilt, got {self.numcep}, {self.nfilt}")
        if not 0 < self.winstep <= self.winlen:
            raise ValueError(f"need 0 < features.winstep <= features.winlen, got {self.winstep}, {self.winlen}")
        if self.nfft and self.nfft < self.frame_length:
            raise ValueError(
                f"features.nfft={self.nfft} is shorter than one frame ({self.frame_length} samples at "
                f"{self.sample_rate} Hz); set it >= {self.frame_length} or 0 to derive it"
            )
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"features.deltas must be 0, 1 or 2, got {self.deltas}")
        try:
            object.__setattr__(self, "normalize", Normalize(self.normalize))  # a bundle stores the plain value
        except ValueError:
            raise ValueError(
                f"features.normalize must be one of {[m.value for m in Normalize]}, got {self.normalize!r}"
            ) from None

    @property
    def frame_length(self) -> int:
        """Samples in one analysis window (rounded half up, as python_speech_features does)."""
        return int(math.floor(self.winlen * self.sample_rate + 0.5))

    @property
    def frame_step(self) -> int:
        """Samples between the starts of consecutive windows."""
        return int(math.floor(self.winstep * self.sample_rate + 0.5))

    def seconds(self, frames: int) -> float:
        """The longest audio that makes `frames` frames (python_speech_features pads the last window)."""
        return ((frames - 1) * self.frame_step + self.frame_length) / self.sample_rate

    @property
    def fft_size(self) -> int:
        """FFT size actually used: `nfft`, or the smallest power of two holding a frame."""
        return self.nfft or 2 ** math.ceil(math.log2(self.frame_length))

    @property
    def num_features(self) -> int:
        """Width of one feature frame."""
        return self.numcep * (1 + self.deltas)

    def to_dict(self) -> dict:
        """Plain dict (JSON types only) for the inference bundle and the feature cache key."""
        return {**asdict(self), "normalize": self.normalize.value}


def compute_mfcc(signal: np.ndarray, options: FeatureOptions, warp: float = 1.0) -> np.ndarray:
    """MFCC (+ deltas) of a float waveform at options.sample_rate: [frames, num_features] float32; with a `warp`
    other than 1, of its spectrum warped by VTLP (augment.vtlp_warps, training only)."""
    from python_speech_features import delta, mfcc  # SciPy's FFT modules: imported when features are made

    if warp != 1.0:
        feats = vtlp_mfcc(signal, options, warp)
    else:
        feats = mfcc(
            signal,
            samplerate=options.sample_rate,
            winlen=options.winlen,
            winstep=options.winstep,
            numcep=options.numcep,
            nfilt=options.nfilt,
            nfft=options.fft_size,
            lowfreq=options.lowfreq,
            highfreq=options.highfreq or None,
            preemph=options.preemph,
            ceplifter=options.ceplifter,
            appendEnergy=options.append_energy,
        )  # [frames, numcep]
    parts = [feats]
    if options.deltas >= 1:
        parts.append(delta(feats, DELTA_WINDOW))
    if options.deltas == 2:
        parts.append(delta(parts[1], DELTA_WINDOW))
    return np.concatenate(parts, axis=1).astype(np.float32)


def vtlp_mfcc(signal: np.ndarray, options: FeatureOptions, warp: float) -> np.ndarray:
    """python_speech_features' MFCC [frames, numcep] with the power spectrum of every frame VTLP-warped before
    the mel filterbank (asr.data.perturbation): its steps with its own functions, so a warp of 1 gives mfcc()'s
    output."""
    from python_speech_features import sigproc
    from python_speech_features.base import get_filterbanks, lifter
    from scipy.fftpack import dct

    from asr.data.perturbation import vtlp_matrix

    rate, nfft = options.sample_rate, options.fft_size
    emphasized = sigproc.preemphasis(signal, options.preemph)
    spectrum = sigproc.powspec(sigproc.framesig(emphasized, options.winlen * rate, options.winstep * rate), nfft)
    tiny = np.finfo(float).eps  # python_speech_features' floor before the logarithms
    energy = spectrum.sum(axis=1)  # of the frame as recorded: the warp moves power, it adds none
    energy = np.where(energy == 0, tiny, energy)
    banks = get_filterbanks(options.nfilt, nfft, rate, options.lowfreq, options.highfreq or rate / 2)
    energies = spectrum @ vtlp_matrix(nfft, rate, warp).T @ banks.T
    logs = np.log(np.where(energies == 0, tiny, energies))
    feats = lifter(dct(logs, type=2, axis=1, norm="ortho")[:, : options.numcep], options.ceplifter)
    if options.append_energy:
        feats[:, 0] = np.log(energy)
    return feats


def normalize_utterance(feats: np.ndarray, mode: str) -> np.ndarray:
    """Normalize one utterance's unpadded [frames, n] features by its own statistics (mode `both`: per
    coefficient; `global` and `none` leave them as they are: global statistics come later)."""
    if mode in ("none", "global"):
        return feats.astype(np.float32)
    if mode == "both":
        mode = "utterance"
    if mode == "utterance_scalar":
        mean, std = feats.mean(), feats.std()
    elif mode == "utterance":
        mean, std = feats.mean(axis=0, keepdims=True), feats.std(axis=0, keepdims=True)
    else:
        raise ValueError(f"unknown normalization {mode!r}; use one of {[m.value for m in Normalize]}")
    return ((feats - mean) / np.maximum(std, STD_FLOOR)).astype(np.float32)


def extract(signal: np.ndarray, options: FeatureOptions, warp: float = 1.0) -> np.ndarray:
    """Waveform -> normalized features [frames, num_features] (`warp`: VTLP, see compute_mfcc)."""
    return normalize_utterance(compute_mfcc(signal, options, warp), options.normalize)


def stacked_frames(frames, stride: int):
    """Model steps for `frames` feature frames when `stride` consecutive frames are stacked into one step:
    ceil(frames / stride). Works on ints, NumPy arrays and integer tensors alike."""
    return (frames + stride - 1) // stride


def apply_global_stats(feats, stats: tuple[np.ndarray, np.ndarray]):
    """Features [..., F] normalized by global per-coefficient statistics (mean [F], std [F]); NumPy arrays
    and tensors alike."""
    mean, std = stats
    return (feats - mean) / std


def global_stats(utterances: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Per-coefficient mean and std [n] over every real frame of unpadded [frames, n] matrices (NumPy arrays,
    or anything np.asarray reads, such as features left in the cache: those are read one at a time)."""
    if all(isinstance(u, np.ndarray) for u in utterances):
        frames = np.concatenate(utterances).astype(np.float64)
        return frames.mean(axis=0).astype(np.float32), np.maximum(frames.std(axis=0), STD_FLOOR).astype(np.float32)
    count, total = 0, 0.0
    for u in utterances:  # two passes (mean, then squared deviations): as exact as the in-memory formula
        total = total + np.asarray(u, np.float64).sum(axis=0)
        count += len(u)
    mean = total / count
    squares = sum(((np.asarray(u, np.float64) - mean) ** 2).sum(axis=0) for u in utterances)
    return mean.astype(np.float32), np.maximum(np.sqrt(squares / count), STD_FLOOR).astype(np.float32)
