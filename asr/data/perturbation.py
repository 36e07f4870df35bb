"""Training-audio perturbations beside the speed change: vocal tract length perturbation (VTLP) of the spectrum
before the mel filterbank, and additive coloured noise at a signal-to-noise ratio.

Both make fixed variants of each training utterance (augment.vtlp_warps, augment.noise_snr_db), computed once
and cached like the speed variants; each epoch then plays every utterance as one of its variants, drawn from
the run's seed (asr.data.batching). The noise of a variant is drawn from the utterance's samples and the SNR
alone, as its cached features are keyed by them: they stay valid across runs and seeds.
"""

from __future__ import annotations

import hashlib

import numpy as np

# VTLP (Jaitly and Hinton 2013, "Vocal Tract Length Perturbation (VTLP) improves speech recognition"): frequencies
# up to a boundary scale by the warp factor, those above it map linearly onto the rest of the band so that the
# Nyquist frequency stays in place. Their boundary is 4,800 Hz at 16 kHz: 0.6 of the Nyquist frequency.
VTLP_BOUNDARY = 0.6
# Coloured noise: power spectral density ~ 1 / f^exponent; white, pink and brown noise, one drawn per variant.
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
NOISE_VERSION = 1  # bump when the noise a variant gets changes (part of the feature cache key)


def vtlp_frequency(frequencies: np.ndarray, warp: float, nyquist: float) -> np.ndarray:
    """Where VTLP with factor `warp` moves each frequency (Hz): f * warp below the boundary, then linearly to
    the Nyquist frequency, which stays (Jaitly and Hinton 2013, eq. 1); continuous and increasing for any warp
    > 0."""
    boundary = VTLP_BOUNDARY * nyquist * min(warp, 1.0) / warp
    above = nyquist - (nyquist - VTLP_BOUNDARY * nyquist * min(warp, 1.0)) / (nyquist - boundary) * (
        nyquist - frequencies
    )
    return np.where(frequencies <= boundary, frequencies * warp, above)


def vtlp_matrix(nfft: int, sample_rate: int, warp: float) -> np.ndarray:
    """[bins, bins] linear map of a power spectrum (nfft // 2 + 1 bins, as python_speech_features' powspec) to
    its VTLP-warped form: the power at frequency f moves to vtlp_frequency(f); bins in between interpolate."""
    bins = nfft // 2 + 1
    hz = np.arange(bins) * sample_rate / nfft
    moved = vtlp_frequency(hz, warp, sample_rate / 2)
    # column k: where bin k's power lands; row g: the warped spectrum at bin g, read off the moved bins
    return np.stack([np.interp(hz, moved, np.eye(bins)[k]) for k in range(bins)], axis=1)


def noise_rng(signal: np.ndarray, snr_db: float) -> np.random.Generator:
    """The random generator of one noisy variant: from the utterance's samples and the SNR (not the run's seed)."""
    digest = hashlib.sha256(np.ascontiguousarray(signal).tobytes() + f"|{snr_db!r}|v{NOISE_VERSION}".encode())
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def coloured_noise(length: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of `length` samples with power spectral density ~ 1 / f^exponent (0 white, 1 pink,
    2 brown), float64 with unit power (mean square 1)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    frequencies = np.arange(len(spectrum), dtype=np.float64)
    frequencies[0] = 1.0  # the DC bin is dropped below; avoids a division by zero
    spectrum *= frequencies ** (-exponent / 2)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n=length)
    power = np.mean(noise**2)
    return noise / np.sqrt(power) if power > 0 else noise


def add_noise(signal: np.ndarray, snr_db: float) -> tuple[np.ndarray, str]:
    """`signal` with coloured noise added at `snr_db` (signal power over noise power, the whole utterance), the
    colour and the noise drawn from the signal and the SNR; clipped to [-1, 1]. Returns the noisy float32 signal
    and the colour's name."""
    rng = noise_rng(signal, snr_db)
    colour = list(NOISE_COLOURS)[int(rng.integers(len(NOISE_COLOURS)))]
    power = float(np.mean(np.asarray(signal, np.float64) ** 2))
    noise = coloured_noise(len(signal), NOISE_COLOURS[colour], rng) * np.sqrt(power / 10 ** (snr_db / 10))
    return np.clip(signal + noise, -1.0, 1.0).astype(np.float32), colour
