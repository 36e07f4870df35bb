"""`asr-bench transcribe MODEL AUDIO... | asr-bench jobs [N] [OVERRIDES...]`: speed and memory, with a baseline.

transcribe: the real-time factor (processing seconds / audio seconds) of `asr-transcribe`'s path (files batched
by length, one traced graph) and of a naive baseline (one file at a time, the Keras model called eagerly),
on the same files, in the same process. Machines are noisy: compare the ratio, not the seconds.

jobs: N short training jobs one after another in one process, as a Hydra multirun with the basic launcher
runs them; the resident memory after each job, against the first job's as the baseline, shows whether
memory grows per job.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# A job small enough to repeat: the demo corpus, 2 epochs of a 1x64 BiLSTM, no speed variants.
SHORT_JOB = ["trainer.epochs=2", "model.num_layers=1", "model.units=64", "data.speeds=[1.0]", "trainer.verbose=0"]


def bench_transcribe(model_dir: Path, audio: Sequence[str], batch_size: int, baseline_files: int) -> dict:
    """RTF of batched transcription and of the one-file-at-a-time eager baseline."""
    import tensorflow as tf

    from asr.bundle import load_bundle
    from asr.decoding import decode_batch
    from asr.transcribe import DecodeOptions, expand_inputs, ready_inference, run

    bundle = load_bundle(model_dir)
    items = expand_inputs(audio)
    options = DecodeOptions(batch_size=batch_size)
    infer = ready_inference(bundle, options)  # part of loading, as in asr-transcribe
    started = time.perf_counter()
    records = list(run(items, bundle, options, infer))
    batched_seconds = time.perf_counter() - started
    ok = [r for r in records if "error" not in r]
    audio_seconds = sum(r["duration_s"] for r in ok)

    from asr.audio import load_audio

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
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from asr.config import register
    from asr.train import train

    register()
    with initialize_config_module(config_module="asr.conf", version_base="1.3"):
        config = OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))
    after = []
    for job in range(jobs):
        started = time.perf_counter()
        train(config, work_dir / str(job), [*overrides])
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

    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(), "tf": tf.__version__}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-bench`."""
    parser = argparse.ArgumentParser(prog="asr-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    transcribe = sub.add_parser("transcribe", help="RTF of asr-transcribe vs one-file-at-a-time eager decoding")
    transcribe.add_argument("model", help="training run directory or bundle")
    transcribe.add_argument("audio", nargs="+", help="WAV files, directories or manifests")
    transcribe.add_argument("--batch-size", type=int, default=32)
    transcribe.add_argument("--baseline-files", type=int, default=0, help="baseline on the first N files (0: all)")
    jobs = sub.add_parser("jobs", help="memory after each of N training jobs run in one process")
    jobs.add_argument("count", type=int, nargs="?", default=5, help="how many jobs (default 5)")
    jobs.add_argument("overrides", nargs="*", default=SHORT_JOB, help=f"Hydra overrides (default: {SHORT_JOB})")
    parser.add_argument("--out", default="bench.json", help="JSON file to write (default: bench.json)")
    args = parser.parse_args(argv)
    if args.what == "transcribe":
        measured = bench_transcribe(Path(args.model), args.audio, args.batch_size, args.baseline_files)
    else:
        with tempfile.TemporaryDirectory(prefix="asr-bench-") as work_dir:
            measured = bench_jobs(args.count, args.overrides, Path(work_dir))
    result = {"machine": machine(), **measured}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
