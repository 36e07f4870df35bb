"""Training-audio perturbations beside the speed change: vocal tract length perturbation (VTLP) of the spectrum
before the mel filterbank, additive coloured noise or babble at a signal-to-noise ratio, and simulated
reverberation.

Each makes fixed variants of each training utterance (augment.vtlp_warps, augment.noise_snr_db,
augment.babble_snr_db, augment.reverb_rt60), computed once and cached like the speed variants; each epoch then
plays every utterance as one of its variants, drawn from the run's seed (asr.data.batching). The noise and the
room of a variant are drawn from the utterance's samples and the setting alone, the talkers of its babble from
its key and the setting, as its cached features are keyed by them: they stay valid across runs and seeds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from scipy.signal import fftconvolve

# VTLP (Jaitly and Hinton 2013, "Vocal Tract Length Perturbation (VTLP) improves speech recognition"): frequencies
# up to a boundary scale by the warp factor, those above it map linearly onto the rest of the band so that the
# Nyquist frequency stays in place. Their boundary is 4,800 Hz at 16 kHz: 0.6 of the Nyquist frequency.
VTLP_BOUNDARY = 0.6
# Coloured noise: power spectral density ~ 1 / f^exponent; white, pink and brown noise, one drawn per variant.
NOISE_COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
NOISE_VERSION = 1  # bump when the noise a variant gets changes (part of the feature cache key)
# Reverberation: a synthetic room impulse response in Polack's statistical model (Polack 1993; the "exponentially
# decaying noise" tail of Lehmann and Johansson 2008): a direct-path impulse, then Gaussian noise whose energy falls
# by 60 dB at the reverberation time RT60. The tail starts after a few milliseconds (the first reflections of a
# room a few metres across) and its energy against the direct sound's (the direct-to-reverberant ratio, DRR) is
# drawn per utterance over the range of measured rooms at 1-3 m from the talker (about -5 to +10 dB, ACE
# challenge corpus, Eaton et al. 2016).
REVERB_PREDELAY_SECONDS = 0.003
REVERB_DRR_DB = (-5.0, 10.0)
REVERB_VERSION = 1  # bump when the room a variant gets changes (part of the feature cache key)
# Babble: the speech of other training utterances summed under an utterance, the noise of a room full of talkers.
# 3-7 talkers per variant, as the MUSAN babble of Kaldi's augmentation recipes (Snyder et al. 2018, "X-vectors:
# robust DNN embeddings for speaker recognition": 3-7 speakers summed), each at the same level before the sum.
BABBLE_TALKERS = (3, 7)
# Draws of a talker before one of the utterance's own speaker is accepted (a corpus of one voice has no other).
BABBLE_DRAWS = 20
BABBLE_VERSION = 1  # bump when the babble a variant gets changes (part of the feature cache key)


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


def signal_rng(signal: np.ndarray, setting: str) -> np.random.Generator:
    """The random generator of one variant: from the utterance's samples and the variant's setting (not the run's
    seed)."""
    digest = hashlib.sha256(np.ascontiguousarray(signal).tobytes() + f"|{setting}".encode())
    return np.random.default_rng(int.from_bytes(digest.digest()[:8], "little"))


def noise_rng(signal: np.ndarray, snr_db: float) -> np.random.Generator:
    """The random generator of one noisy variant: from the utterance's samples and the SNR (not the run's seed)."""
    return signal_rng(signal, f"{snr_db!r}|v{NOISE_VERSION}")


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


def babble_talkers(keys: Sequence[str], speakers: Sequence[str | None], snr_db: float) -> list[tuple[int, ...]]:
    """For each utterance, the indices of the BABBLE_TALKERS other utterances whose speech makes its babble at
    `snr_db`: of other speakers where the speakers are known, drawn from the utterance's key and the SNR (not
    the run's seed); () where there is no other utterance."""
    chosen = []
    for n, key in enumerate(keys):
        rng = np.random.default_rng(
            int.from_bytes(hashlib.sha256(f"{key}|babble {snr_db!r}|v{BABBLE_VERSION}".encode()).digest()[:8], "little")
        )
        wanted = min(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1)), len(keys) - 1)
        talkers: list[int] = []
        for _ in range(wanted * BABBLE_DRAWS):
            if len(talkers) == wanted:
                break
            other = int(rng.integers(len(keys)))
            same_voice = speakers[n] is not None and speakers[other] == speakers[n]
            if other != n and other not in talkers and not same_voice:
                talkers.append(other)
        others = (m for m in rng.permutation(len(keys)) if m != n and m not in talkers)
        talkers += [int(m) for _, m in zip(range(wanted - len(talkers)), others, strict=False)]  # any voice
        chosen.append(tuple(talkers))
    return chosen


def add_babble(signal: np.ndarray, talkers: Sequence[np.ndarray], snr_db: float) -> np.ndarray:
    """`signal` with the sum of `talkers` (each brought to the same power, looped or cut to the signal's length
    from a start drawn from the signal and the SNR) added at `snr_db`; clipped to [-1, 1]. Silent talkers are
    left out; with none left the signal is returned as it is."""
    rng = signal_rng(signal, f"babble {snr_db!r}|v{BABBLE_VERSION}")
    babble = np.zeros(len(signal))
    for talker in talkers:
        speech = np.asarray(talker, np.float64)
        power = np.mean(speech**2) if speech.size else 0.0
        if power > 0:
            start = int(rng.integers(len(speech)))
            babble += np.take(speech, np.arange(start, start + len(signal)), mode="wrap") / np.sqrt(power)
    babble_power = np.mean(babble**2)
    if babble_power == 0:
        return np.asarray(signal, np.float32)
    power = float(np.mean(np.asarray(signal, np.float64) ** 2))
    babble *= np.sqrt(power / 10 ** (snr_db / 10) / babble_power)
    return np.clip(signal + babble, -1.0, 1.0).astype(np.float32)


def room_response(rt60: float, sample_rate: int, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """[rt60 * sample_rate] float64 impulse response of a synthetic room: 1 at sample 0 (the direct sound), then
    after REVERB_PREDELAY_SECONDS a Gaussian tail whose energy decays by 60 dB at `rt60` seconds, scaled so that
    the direct sound's energy over the tail's is `drr_db`."""
    length = max(int(round(rt60 * sample_rate)), 2)
    start = min(max(int(round(REVERB_PREDELAY_SECONDS * sample_rate)), 1), length - 1)
    t = np.arange(length - start) / sample_rate
    # amplitude envelope: energy exp(-2 a t) falls by 10^6 (60 dB) at t = rt60, so a = 3 ln 10 / rt60
    tail = rng.standard_normal(length - start) * np.exp(-3.0 * np.log(10.0) * t / rt60)
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    response = np.zeros(length)
    response[0] = 1.0
    response[start:] = tail
    return response


def add_reverb(signal: np.ndarray, rt60: float, sample_rate: int) -> tuple[np.ndarray, float]:
    """`signal` as heard in a synthetic room of reverberation time `rt60` seconds (room_response, the DRR drawn
    from the signal and the RT60), cut to its own length and brought back to its RMS level; clipped to [-1, 1].
    Returns the float32 signal and the drawn DRR in dB."""
    rng = signal_rng(signal, f"reverb {rt60!r}|v{REVERB_VERSION}")
    drr_db = float(rng.uniform(*REVERB_DRR_DB))
    source = np.asarray(signal, np.float64)
    heard = fftconvolve(source, room_response(rt60, sample_rate, drr_db, rng))[: len(source)]
    level, heard_level = np.sqrt(np.mean(source**2)), np.sqrt(np.mean(heard**2))
    if heard_level > 0:
        heard *= level / heard_level
    return np.clip(heard, -1.0, 1.0).astype(np.float32), drr_db
