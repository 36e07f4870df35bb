"""`asr-bench pocketsphinx MANIFEST [--limit N] [--model RUN]`: CMU PocketSphinx out of the box (its wheel's US
English acoustic model, language model and dictionary, default settings) on the files of a manifest, and, with a
model of ours, that model on the same files; both scored alike (the same references, the same normalization, the
project's corpus CER and WER) with wall-clock times. A classical recognizer trained on far more English than ours
is the yardstick a user knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asr.data.datasets import Utterance, read_split
from asr.data.text import error_rates, normalize_text
from asr.errors import UserError

log = logging.getLogger(__name__)

POCKETSPHINX_VERSION = "5.1.1"  # pinned in requirements.lock; the version the figures came from
SAMPLE_RATE = 16000  # the rate of the wheel's en-us acoustic model (its config's samprate)
# float samples -> 16-bit PCM, what PocketSphinx's process_raw reads: x 32768, rounded, as libsndfile scales 16-bit
# files to float (a 16-bit file comes back bit for bit: PocketSphinx's transcripts change with the last bit)
INT16_SCALE = 32768
SAMPLES = 5  # transcripts listed in the JSON beside the figures
# Both systems' transcripts and the references are scored as normalize_text(text, fold=True): lower case, accents
# folded, punctuation out, single spaces (PocketSphinx writes lower-case English words).
NORMALIZATION = "asr.data.text.normalize_text(fold=True) of references and transcripts alike"


class PocketSphinxMissing(UserError):
    """The pocketsphinx package is not installed."""


def scored_items(manifest: Path, limit: int | None) -> tuple[list[Utterance], int]:
    """The manifest's first `limit` entries (all with None) that have a transcript and no reader problem, and how
    many of those first entries were left out."""
    items = read_split(manifest.parent, manifest.name)[:limit]
    kept = [u for u in items if u.text is not None and u.problem is None]
    return kept, len(items) - len(kept)


def pocketsphinx_decoder():
    """A PocketSphinx decoder with its defaults (the wheel's en-us model, language model and dictionary)."""
    try:
        import pocketsphinx
    except ImportError:
        raise PocketSphinxMissing(
            f"pocketsphinx is not installed; pip install pocketsphinx=={POCKETSPHINX_VERSION} (requirements.lock)"
        ) from None
    return pocketsphinx.Decoder()


def decode_pocketsphinx(decoder, samples: np.ndarray) -> str:
    """One utterance (float32 mono at SAMPLE_RATE) decoded whole; '' when PocketSphinx finds no words."""
    pcm = np.clip(np.round(samples * INT16_SCALE), -INT16_SCALE, INT16_SCALE - 1).astype("<i2")
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hypothesis = decoder.hyp()
    return "" if hypothesis is None else hypothesis.hypstr


def run_pocketsphinx(items: Sequence[Utterance]) -> dict:
    """PocketSphinx's transcript of each item (None where the audio could not be read), the seconds of audio read,
    and its times: loading, decoding (audio reading included), the whole."""
    from importlib import metadata

    from asr.data.audio import AudioError, load_audio

    started = time.perf_counter()
    decoder = pocketsphinx_decoder()
    loaded, cpu = time.perf_counter(), time.process_time()
    texts: list[str | None] = []
    audio_seconds = 0.0
    for item in items:
        try:
            samples = load_audio(item.audio, SAMPLE_RATE, item.start, item.end)
        except AudioError as e:
            log.warning("pocketsphinx: %s: %s", item.audio, e.reason)
            texts.append(None)
            continue
        audio_seconds += len(samples) / SAMPLE_RATE
        texts.append(decode_pocketsphinx(decoder, samples))
    ended, cpu = time.perf_counter(), time.process_time() - cpu
    return {
        "texts": texts,
        "audio_seconds": audio_seconds,
        "about": {"version": metadata.version("pocketsphinx"), "model": "en-us (the wheel's), default settings"},
        "load_seconds": loaded - started,
        "decode_seconds": ended - loaded,
        "decode_cpu_seconds": cpu,
    }


def run_model(items: Sequence[Utterance], model: str | Path) -> dict:
    """Our model's transcript of each item through the recognizer (its language model if it has one; None where
    the audio could not be read), and its times: loading (the language model read), decoding, the whole."""
    from asr.data.audio import AudioError
    from asr.inference.recognizer import load

    started = time.perf_counter()
    recognizer = load(model).ready()
    loaded, cpu = time.perf_counter(), time.process_time()
    texts = []
    for item, result in zip(items, recognizer.transcribe_many(items), strict=True):
        if isinstance(result, AudioError):
            log.warning("%s: %s: %s", recognizer.name, item.audio, result.reason)
        texts.append(None if isinstance(result, AudioError) else result.text)
    ended, cpu = time.perf_counter(), time.process_time() - cpu
    about = {"model": str(model), "language_model": recognizer.bundle.lm_source is not None}
    return {
        "texts": texts,
        "about": about,
        "load_seconds": loaded - started,
        "decode_seconds": ended - loaded,
        "decode_cpu_seconds": cpu,
    }


def score(refs: Sequence[str], texts: Sequence[str], run: dict, audio_seconds: float) -> dict:
    """A system's figures: CER, WER, exact transcripts, the number scored, wall-clock times (loading, decoding with
    the audio reading, both), the CPU seconds of decoding (this process's, all threads), the real-time factor."""
    rates = error_rates(refs, [normalize_text(t, fold=True) for t in texts])
    seconds = run["load_seconds"] + run["decode_seconds"]
    return {
        **run["about"],
        "cer": round(rates["ler"], 5),
        "wer": round(rates["wer"], 5),
        "utt_acc": round(rates["utt_acc"], 5),
        "n": rates["n"],
        "load_seconds": round(run["load_seconds"], 3),
        "decode_seconds": round(run["decode_seconds"], 3),
        "decode_cpu_seconds": round(run["decode_cpu_seconds"], 3),  # all threads (wall-clock suffers when busy)
        "wall_seconds": round(seconds, 3),
        "rtf": round(run["decode_seconds"] / audio_seconds, 5) if audio_seconds else None,
    }


def bench_pocketsphinx(manifest: Path, limit: int | None = None, model: str | Path | None = None) -> dict:
    """PocketSphinx (and `model`, when given) on the first `limit` files of `manifest`, scored alike on the files
    every system could read."""
    items, left_out = scored_items(manifest, limit)
    if not items:
        raise UserError(f"{manifest}: no entries with a transcript to score; pass a manifest with transcripts")
    runs = {"pocketsphinx": run_pocketsphinx(items)}
    if model is not None:
        runs["asr"] = run_model(items, model)
    read = [i for i in range(len(items)) if all(r["texts"][i] is not None for r in runs.values())]
    refs = [normalize_text(items[i].text, fold=True) for i in read]
    audio_seconds = runs["pocketsphinx"]["audio_seconds"]
    systems = {name: score(refs, [r["texts"][i] for i in read], r, audio_seconds) for name, r in runs.items()}
    samples = [  # the texts as scored: normalized like the references
        {
            "audio": str(items[i].audio),
            "ref": refs[k],
            **{name: normalize_text(r["texts"][i], fold=True) for name, r in runs.items()},
        }
        for k, i in enumerate(read[:SAMPLES])
    ]
    return {
        "manifest": str(manifest),
        "files": len(read),
        "unreadable": len(items) - len(read),
        "without_transcript": left_out,
        "audio_seconds": round(audio_seconds, 3),
        "normalization": NORMALIZATION,
        "systems": systems,
        "samples": samples,
    }


def pocketsphinx_table(result: dict) -> str:
    """The figures as a Markdown table."""
    lines = ["| system | CER | WER | files | wall s | RTF |", "|---|---|---|---|---|---|"]
    for name, s in result["systems"].items():
        lines.append(
            f"| {name} | {100 * s['cer']:.1f} % | {100 * s['wer']:.1f} % | {s['n']} | {s['wall_seconds']:.1f} | "
            f"{s['rtf']} |"
        )
    return "\n".join(lines)
