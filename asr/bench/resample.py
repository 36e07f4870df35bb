"""`asr-bench resample`: the resampler of asr.data.audio (soxr) against scipy's polyphase `resample_poly` on the
same signals: audio seconds per wall second, and the quality of each as the signal-to-error ratio of a resampled
sine against the same sine computed at the target rate."""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)


# Conversions to time in `asr-bench resample`: the rates corpora come in, to the two feature rates.
RESAMPLE_CASES = ((44100, 16000), (22050, 16000), (48000, 16000), (8000, 16000), (16000, 8000))
RESAMPLE_TONE_HZ = 1000.0  # well inside every band of RESAMPLE_CASES


def _tone(rate: int, seconds: float) -> np.ndarray:
    """A 1 kHz sine at half scale, float32."""
    return (0.5 * np.sin(2 * np.pi * RESAMPLE_TONE_HZ * np.arange(int(rate * seconds)) / rate)).astype(np.float32)


def _snr_db(resampled: np.ndarray, reference: np.ndarray) -> float:
    """Signal-to-error ratio (dB) away from the edges (filters ring there)."""
    n = min(len(resampled), len(reference))
    edge = n // 10
    error = resampled[edge : n - edge] - reference[edge : n - edge]
    return float(10 * np.log10(np.sum(reference[edge : n - edge] ** 2) / max(np.sum(error**2), 1e-30)))


def bench_resample(seconds: float = 60.0, repeats: int = 3) -> dict:
    """soxr (what asr.data.audio uses) against scipy.signal.resample_poly: speed and quality per conversion."""
    import math

    from scipy.signal import resample_poly

    from asr.data.audio import resample

    def poly(x: np.ndarray, rate: int, target: int) -> np.ndarray:
        g = math.gcd(rate, target)
        return resample_poly(x, target // g, rate // g).astype(np.float32)

    cases = []
    for rate, target in RESAMPLE_CASES:
        signal, reference = _tone(rate, seconds), _tone(target, seconds)
        row = {"from_hz": rate, "to_hz": target}
        for name, function in (("soxr", resample), ("resample_poly", poly)):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                out = function(signal, rate, target)
                times.append(time.perf_counter() - started)
            row[f"{name}_audio_s_per_s"] = round(seconds / min(times), 1)
            row[f"{name}_snr_db"] = round(_snr_db(out, reference), 1)
        log.info("%d -> %d Hz: measured", rate, target)
        row["speedup"] = round(row["soxr_audio_s_per_s"] / row["resample_poly_audio_s_per_s"], 2)
        cases.append(row)
    return {"what": "resample", "seconds_of_audio": seconds, "repeats": repeats, "cases": cases}
