"""Speed and memory measured against a baseline in the same run (the `asr-bench` command).

transcribe: the real-time factor (processing seconds / audio seconds) of `asr-transcribe`'s path (files batched
by length, one traced graph) and of a naive baseline (one file at a time, the Keras model called eagerly),
on the same files, in the same process. Machines are noisy: compare the ratio, not the seconds.

jobs: N short training jobs one after another in one process, as a Hydra multirun with the basic launcher
runs them; the resident memory after each job, against the first job's as the baseline, shows whether
memory grows per job.

resample: the resampler of asr.data.audio (soxr) against scipy's polyphase `resample_poly` on the same
signals: audio seconds per wall second, and the quality of each as the signal-to-error ratio of a resampled
sine against the same sine computed at the target rate.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr.system import usable_cpus


def bench_transcribe(model_dir: Path, audio: Sequence[str], batch_size: int, baseline_files: int) -> dict:
    """RTF of batched transcription and of the one-file-at-a-time eager baseline."""
    import tensorflow as tf

    from asr.inference.bundle import load_bundle
    from asr.inference.options import DecodeOptions
    from asr.inference.transcribe import expand_inputs, ready_inference, run
    from asr.model.decoding import decode_batch

    bundle = load_bundle(model_dir)
    items = expand_inputs(audio)
    options = DecodeOptions(batch_size=batch_size)
    infer = ready_inference(bundle, options)  # part of loading, as in asr-transcribe
    started = time.perf_counter()
    records = list(run(items, bundle, options, infer))
    batched_seconds = time.perf_counter() - started
    ok = [r for r in records if "error" not in r]
    audio_seconds = sum(r["duration_s"] for r in ok)

    from asr.data.audio import load_audio

    subset = items[:baseline_files] if baseline_files else items
    subset_audio = 0.0
    started = time.perf_counter()
    baseline_texts = []
    for item in subset:
        signal = load_audio(item.audio, bundle.features.sample_rate, item.start, item.end)
        subset_audio += len(signal) / bundle.features.sample_rate
        feats = bundle.featurize(signal)[None]
        lengths = np.array([feats.shape[1]], np.int32)
        logits = bundle.model({"features": tf.constant(feats), "lengths": tf.constant(lengths)}, training=False)
        baseline_texts += decode_batch(logits, bundle.model.output_lengths(lengths), bundle.vocab)
    baseline_seconds = time.perf_counter() - started
    same = sum(t == r.get("text") for t, r in zip(baseline_texts, records, strict=False))
    batched_rtf = batched_seconds / audio_seconds
    baseline_rtf = baseline_seconds / subset_audio
    return {
        "benchmark": "transcribe",
        "model": str(model_dir),
        "files": len(items),
        "failed": len(records) - len(ok),
        "audio_seconds": round(audio_seconds, 3),
        "batched": {"seconds": round(batched_seconds, 3), "rtf": round(batched_rtf, 5), "batch_size": batch_size},
        "baseline_one_file_eager": {
            "files": len(subset),
            "seconds": round(baseline_seconds, 3),
            "rtf": round(baseline_rtf, 5),
        },
        "speedup_vs_baseline": round(baseline_rtf / batched_rtf, 2),
        "identical_transcripts": f"{same}/{len(subset)}",
    }


def resident_mb() -> float:
    """This process's resident memory now (Linux /proc; peak RSS elsewhere), in MB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_jobs(jobs: int, overrides: Sequence[str], work_dir: Path) -> dict:
    """Resident memory after each of `jobs` training runs in this process (config: the defaults + overrides)."""
    from asr.config import compose
    from asr.training.loop import train

    options = compose(overrides)
    after = []
    for job in range(jobs):
        started = time.perf_counter()
        train(options, work_dir / str(job), [*overrides])
        after.append(
            {"job": job, "rss_mb": round(resident_mb(), 1), "seconds": round(time.perf_counter() - started, 2)}
        )
    growth = (after[-1]["rss_mb"] - after[0]["rss_mb"]) / max(jobs - 1, 1)
    return {
        "benchmark": "jobs",
        "overrides": list(overrides),
        "jobs": after,
        "baseline_rss_mb_after_first_job": after[0]["rss_mb"],
        "growth_mb_per_job_after_the_first": round(growth, 2),
    }


def machine() -> dict:
    """Where the numbers were taken."""
    import tensorflow as tf

    return {"host": platform.node(), "cpus": usable_cpus(), "python": platform.python_version(), "tf": tf.__version__}


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
        row["speedup"] = round(row["soxr_audio_s_per_s"] / row["resample_poly_audio_s_per_s"], 2)
        cases.append(row)
    return {"what": "resample", "seconds_of_audio": seconds, "repeats": repeats, "cases": cases}
