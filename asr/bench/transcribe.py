"""`asr-bench transcribe`: the real-time factor (processing seconds / audio seconds) of `asr-transcribe`'s path
(the recognizer: files batched by length, one traced graph) and of a naive baseline (one file at a time, the Keras
model called eagerly), on the same files, in the same process. Machines are noisy: compare the ratio, not the
seconds."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def bench_transcribe(
    model_dir: Path, audio: Sequence[str], batch_size: int, baseline_files: int, hotwords: str | None = None
) -> dict:
    """RTF of batched transcription, greedy, with the bundle's language model (when it has one) and with
    `hotwords` (a file, when given), of the same files in one run, with their error rates where the inputs carry
    transcripts; and of the one-file-at-a-time eager baseline (with the language model when there is one)."""
    import asr
    from asr.data.audio import AudioError
    from asr.data.text import error_rates
    from asr.inference.options import TranscribeOptions
    from asr.inference.sources import expand_inputs

    recognizer = asr.load(model_dir)  # loading (and tracing) is not timed, as in asr-transcribe's RTF
    has_lm = recognizer.bundle.lm_source is not None
    items = expand_inputs(audio)
    options = TranscribeOptions(batch_size=batch_size)
    decodings, texts = {}, {}
    for name, lm, boost in (
        ("greedy", "none", None),
        ("hotwords", "bundle", hotwords),
        ("language_model", "bundle", None),
    ):
        if (name == "language_model" and not has_lm) or (name == "hotwords" and boost is None):
            continue
        chosen = recognizer.with_options(lm=lm, hotwords=boost).ready()  # the language model read before timing
        started = time.perf_counter()
        results = list(chosen.timed_many(items, options))
        seconds = time.perf_counter() - started
        log.info("%s: %d files in %.2f s", name, len(results), seconds)
        ok = [(item, r) for item, (r, _) in zip(items, results, strict=True) if not isinstance(r, AudioError)]
        audio_seconds = sum(r.duration for _, r in ok)
        texts[name] = [None if isinstance(r, AudioError) else r.text for r, _ in results]
        decodings[name] = {"seconds": round(seconds, 3), "rtf": round(seconds / audio_seconds, 5)}
        scored = [(recognizer.bundle.vocab.normalize(item.text), r.text) for item, r in ok if item.text is not None]
        if scored:
            rates = error_rates([ref for ref, _ in scored], [hyp for _, hyp in scored])
            decodings[name] |= {"cer": round(rates["ler"], 5), "wer": round(rates["wer"], 5)}
    main = "language_model" if has_lm else "greedy"
    for name in ("language_model", "hotwords"):
        if name in decodings:
            decodings[name]["x_greedy"] = round(decodings[name]["seconds"] / decodings["greedy"]["seconds"], 2)
    baseline = eager_baseline(recognizer, items[:baseline_files] if baseline_files else items)
    same = sum(t == r for t, r in zip(baseline["texts"], texts[main], strict=False))
    batched_rtf = decodings[main]["rtf"]
    return {
        "benchmark": "transcribe",
        "model": str(model_dir),
        "files": len(items),
        "language_model": has_lm,
        "failed": sum(t is None for t in texts[main]),
        "audio_seconds": round(audio_seconds, 3),
        "batched": {"seconds": decodings[main]["seconds"], "rtf": batched_rtf, "batch_size": batch_size},
        "decodings": decodings,
        "baseline_one_file_eager": {k: v for k, v in baseline.items() if k != "texts"},
        "speedup_vs_baseline": round(baseline["rtf"] / batched_rtf, 2),
        "identical_transcripts": f"{same}/{len(baseline['texts'])}",
    }


def eager_baseline(recognizer, items: Sequence) -> dict:
    """One file at a time, the Keras model called eagerly, greedy or the language model's search (no cutting):
    files, seconds, rtf and the transcripts."""
    import tensorflow as tf

    from asr.data.audio import load_audio
    from asr.decoding.alignment import greedy_text, utterance_log_probs

    bundle, lm = recognizer.bundle, recognizer.language_model()
    rate = bundle.features.sample_rate
    audio_seconds, texts = 0.0, []
    started = time.perf_counter()
    for item in items:
        signal = load_audio(item.audio, rate, item.start, item.end)
        audio_seconds += len(signal) / rate
        feats = bundle.featurize(signal)[None]
        lengths = np.array([feats.shape[1]], np.int32)
        logits = bundle.model({"features": tf.constant(feats), "lengths": tf.constant(lengths)}, training=False)
        (log_probs,) = utterance_log_probs(logits, bundle.model.output_lengths(lengths))
        text = (
            greedy_text(log_probs, bundle.vocab.characters)
            if lm is None
            else lm.decode(log_probs, bundle.vocab.characters)
        )
        texts.append(" ".join(text.split()))
    seconds = time.perf_counter() - started
    return {"files": len(items), "seconds": round(seconds, 3), "rtf": round(seconds / audio_seconds, 5), "texts": texts}
