"""`asr-bench transcribe`: the real-time factor (processing seconds / audio seconds) of `asr-transcribe`'s path
(files batched by length, one traced graph) and of a naive baseline (one file at a time, the Keras model called
eagerly), on the same files, in the same process. Machines are noisy: compare the ratio, not the seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def bench_transcribe(
    model_dir: Path, audio: Sequence[str], batch_size: int, baseline_files: int, hotwords: str | None = None
) -> dict:
    """RTF of batched transcription, greedy, with the bundle's language model (when it has one) and with
    `hotwords` (a file, when given), of the same files in one run, with their error rates where the inputs carry
    transcripts; and of the one-file-at-a-time eager baseline (with the language model when there is one)."""
    import tensorflow as tf

    from asr.data.text import error_rates
    from asr.decoding.ctc import decode_batch, utterance_log_probs
    from asr.inference.bundle import load_bundle
    from asr.inference.options import DecodeOptions
    from asr.inference.transcribe import choose_lm, expand_inputs, ready_inference, run

    bundle = load_bundle(model_dir)
    items = expand_inputs(audio)
    options = DecodeOptions(batch_size=batch_size)
    infer = ready_inference(bundle, options)  # part of loading, as in asr-transcribe
    decodings = {}
    for name, lm, boost in (
        ("greedy", "none", None),
        ("hotwords", "bundle", hotwords),
        ("language_model", "bundle", None),
    ):
        if (lm == "bundle" and bundle.lm is None and boost is None) or (name == "hotwords" and boost is None):
            continue
        chosen = choose_lm(bundle, replace(options, lm=lm, hotwords=boost))
        started = time.perf_counter()
        records = list(run(items, chosen, options, infer))
        seconds = time.perf_counter() - started
        log.info("%s: %d files in %.2f s", name, len(records), seconds)
        ok = [r for r in records if "error" not in r]
        audio_seconds = sum(r["duration_s"] for r in ok)
        scored = [r for r in ok if "ref" in r]
        decodings[name] = {"seconds": round(seconds, 3), "rtf": round(seconds / audio_seconds, 5)}
        if scored:
            rates = error_rates([r["ref"] for r in scored], [r["text"] for r in scored])
            decodings[name] |= {"cer": round(rates["ler"], 5), "wer": round(rates["wer"], 5)}
    batched = decodings["language_model" if bundle.lm is not None else "greedy"]
    batched_seconds = batched["seconds"]
    for name in ("language_model", "hotwords"):
        if name in decodings:
            decodings[name]["x_greedy"] = round(decodings[name]["seconds"] / decodings["greedy"]["seconds"], 2)

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
        if bundle.lm is not None:
            (log_probs,) = utterance_log_probs(logits, bundle.model.output_lengths(lengths))
            baseline_texts.append(bundle.lm.decode(log_probs, bundle.vocab.characters))
        else:
            baseline_texts += decode_batch(logits, bundle.model.output_lengths(lengths), bundle.vocab)
    baseline_seconds = time.perf_counter() - started
    same = sum(t == r.get("text") for t, r in zip(baseline_texts, records, strict=False))
    batched_rtf = batched_seconds / audio_seconds
    baseline_rtf = baseline_seconds / subset_audio
    return {
        "benchmark": "transcribe",
        "model": str(model_dir),
        "files": len(items),
        "language_model": bundle.lm is not None,
        "failed": len(records) - len(ok),
        "audio_seconds": round(audio_seconds, 3),
        "batched": {"seconds": round(batched_seconds, 3), "rtf": round(batched_rtf, 5), "batch_size": batch_size},
        "decodings": decodings,
        "baseline_one_file_eager": {
            "files": len(subset),
            "seconds": round(baseline_seconds, 3),
            "rtf": round(baseline_rtf, 5),
        },
        "speedup_vs_baseline": round(baseline_rtf / batched_rtf, 2),
        "identical_transcripts": f"{same}/{len(subset)}",
    }
