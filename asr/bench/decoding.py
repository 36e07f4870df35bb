"""`asr-bench decoding RUN MANIFEST`: the language model's beam search against greedy decoding, on the same files in
one run: end to end (audio, features, the model and the decoding, wall-clock and CPU seconds; passes alternated, since
the machine's load varies; the first LM pass fills the language model's table) and on log probabilities computed once
(the search alone, for each variant of its settings asked for: its first run, then the timed one). Each with the CER
and WER of its transcripts against the manifest's."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from functools import partial
from pathlib import Path

import numpy as np

from asr.data.text import ctc_collapse, error_rates
from asr.errors import UserError

log = logging.getLogger(__name__)

# End-to-end passes of each decoding, alternated (greedy, LM, LM overlapped, greedy, ...): the fastest pass of each
# is compared (the one least disturbed by other work on the machine); every pass is listed.
END_TO_END_PASSES = 3
# LMDecoder's search settings a --variant may set, with their types.
VARIANT_KEYS = {
    "beam_width": int,
    "tokens_per_frame": int,
    "beam_threshold": float,
    "skip_blank": float,
    "search": str,
}


class DecodingBenchError(UserError):
    """The model or a variant cannot be benchmarked; the message says why and what to pass."""


@dataclass(frozen=True)
class Variant:
    """A named set of the LM search's settings, tried on the saved log probabilities."""

    name: str
    settings: dict

    @staticmethod
    def parse(text: str) -> Variant:
        """NAME:key=value,key=value (keys of VARIANT_KEYS); DecodingBenchError names what is wrong."""
        name, _, given = text.partition(":")
        settings = {}
        for pair in filter(None, given.split(",")):
            key, _, value = pair.partition("=")
            if key not in VARIANT_KEYS:
                raise DecodingBenchError(f"--variant {text}: unknown setting {key!r}; use {', '.join(VARIANT_KEYS)}")
            try:
                settings[key] = VARIANT_KEYS[key](value)
            except ValueError:
                raise DecodingBenchError(f"--variant {text}: {key}={value!r} is not a number") from None
        if not name or not settings:
            raise DecodingBenchError(f"--variant {text}: write NAME:key=value[,key=value], e.g. beam16:beam_width=16")
        return Variant(name, settings)


def check_end_to_end(names: Sequence[str], variants: Sequence[Variant]) -> None:
    """DecodingBenchError naming an --end-to-end name that no --variant has."""
    known = [v.name for v in variants]
    for name in names:
        if name not in known or name in ("greedy", "language_model", "overlapped"):
            raise DecodingBenchError(f"--end-to-end {name}: no --variant of that name; name one of {known}")


@dataclass
class _Item:
    """One manifest entry: its features (None where the audio is unusable) and its normalized reference."""

    features: np.ndarray | None
    ref: str


def bench_decoding(
    model_dir: Path,
    manifest: Path,
    batch_size: int,
    variants: Sequence[Variant] = (),
    passes: int = END_TO_END_PASSES,
    end_to_end_variants: Sequence[str] = (),
) -> dict:
    """Seconds, CER and WER of greedy decoding and of the bundle's language model search on the manifest's files:
    end to end (the search after each batch, and overlapped with the next batch's model; also the variants named
    in `end_to_end_variants`) and on log probabilities computed once (also each variant of the search's settings),
    with the ratio of the LM's time to greedy's."""
    import tensorflow as tf

    from asr.data.datasets import read_jsonl
    from asr.inference.bundle import load_bundle

    bundle = load_bundle(model_dir)
    if bundle.lm is None:
        raise DecodingBenchError(f"{model_dir}: the bundle has no language model; train with lm=char6 (the default)")
    lm, vocab = bundle.lm, bundle.vocab
    try:
        trial = [replace(lm, **v.settings) for v in variants]
    except ValueError as e:
        raise DecodingBenchError(f"--variant: {e}") from None
    utterances = read_jsonl(manifest)
    signature = [tf.TensorSpec([None, None, bundle.model.num_features], tf.float32), tf.TensorSpec([None], tf.int32)]
    traced = tf.function(
        lambda f, n: bundle.model({"features": f, "lengths": n}, training=False), input_signature=signature
    )

    def infer(padded: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return traced(padded, lengths).numpy(), bundle.model.output_lengths(lengths).numpy()

    refs = [vocab.normalize(u.text) for u in utterances]

    def read() -> list[_Item]:
        return [_Item(_features(bundle, u), ref) for u, ref in zip(utterances, refs, strict=True)]

    def greedy(logits, lengths, _pool) -> list[str]:
        from asr.decoding.ctc import decode_batch

        return [" ".join(text.split()) for text in decode_batch(logits, lengths, vocab)]  # as the search's

    def searched(logits, lengths, _pool, decoder=lm) -> list[str]:
        from asr.decoding.ctc import utterance_log_probs

        return decoder.decode_many(utterance_log_probs(logits, lengths), vocab.characters)

    def overlapped(logits, lengths, pool) -> Future:
        from asr.decoding.ctc import utterance_log_probs

        rows = utterance_log_probs(logits, lengths)
        return pool.submit(lm.decode_many, rows, vocab.characters)

    _end_to_end(read(), infer, batch_size, greedy)  # traces the graph
    decoders: dict[str, Callable] = {"greedy": greedy, "language_model": searched, "overlapped": overlapped}
    check_end_to_end(end_to_end_variants, variants)
    named = {v.name: decoder for v, decoder in zip(variants, trial, strict=True)}
    for name in end_to_end_variants:
        decoders[name] = partial(searched, decoder=named[name])
    runs: dict[str, list[float]] = {name: [] for name in decoders}
    cpu: dict[str, list[float]] = {name: [] for name in decoders}
    texts: dict[str, list[str]] = {}
    for number in range(passes):
        for name, decode in decoders.items():
            started, used = time.perf_counter(), time.process_time()
            texts[name] = _end_to_end(read(), infer, batch_size, decode)
            runs[name].append(round(time.perf_counter() - started, 3))
            cpu[name].append(round(time.process_time() - used, 3))
            log.info("end to end, pass %d, %s: %.2f s", number + 1, name, runs[name][-1])
    end_to_end = {
        name: _described(min(runs[name]), refs, texts[name]) | {"passes": runs[name], "cpu_passes": cpu[name]}
        for name in decoders
    }
    for name in decoders.keys() - {"greedy"}:
        end_to_end[name]["x_greedy"] = round(min(runs[name]) / min(runs["greedy"]), 3)
        end_to_end[name]["x_greedy_cpu"] = round(min(cpu[name]) / min(cpu["greedy"]), 3)

    started = time.perf_counter()
    items = read()
    rows = _log_probs(items, infer, batch_size)
    model_seconds = round(time.perf_counter() - started, 3)  # as reported: the ratios below use what the JSON says
    started = time.perf_counter()
    greedy_texts = [_greedy(row, vocab.characters) for row in rows]
    greedy_seconds = round(time.perf_counter() - started, 3)
    saved = {"model_seconds": model_seconds, "greedy": _described(greedy_seconds, refs, greedy_texts)}
    shipped = None
    for variant, decoder in [(Variant("shipped", {}), lm), *zip(variants, trial, strict=True)]:
        first = time.perf_counter()
        decoder.decode_many(rows, vocab.characters)  # loads KenLM, fills the transition table
        started, used = time.perf_counter(), time.process_time()
        found = decoder.decode_many(rows, vocab.characters)
        seconds, cpu_seconds = round(time.perf_counter() - started, 3), time.process_time() - used
        shipped = shipped or found
        log.info("saved log-probs, %s: %.2f s", variant.name, seconds)
        saved[variant.name] = _described(seconds, refs, found) | {
            "first_seconds": round(started - first, 3),
            "cpu_seconds": round(cpu_seconds, 3),
            "settings": {f.name: getattr(decoder, f.name) for f in fields(decoder) if f.name in VARIANT_KEYS},
            "x_greedy": round((model_seconds + seconds) / (model_seconds + greedy_seconds), 3),
            "transcripts_changed": sum(a != b for a, b in zip(found, shipped, strict=True)),
        }
    return {
        "benchmark": "decoding",
        "model": str(model_dir),
        "manifest": str(manifest),
        "files": len(utterances),
        "unusable": sum(item.features is None for item in items),
        "frames": sum(len(row) for row in rows),
        "batch_size": batch_size,
        "end_to_end": end_to_end,
        "saved_log_probs": saved,
    }


def _features(bundle, utterance) -> np.ndarray | None:
    """The utterance's model input [T, F], or None where its audio cannot be read or holds no frame."""
    from asr.data.audio import AudioError, load_audio

    try:
        signal = load_audio(utterance.audio, bundle.features.sample_rate, utterance.start, utterance.end)
    except AudioError as e:
        log.warning("%s", e)
        return None
    features = bundle.featurize(signal)
    return features if len(features) else None


def _batches(items: Sequence[_Item], batch_size: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """(item indices, padded features [B, T, F], frames [B]) of the usable items, batched by length."""
    usable = sorted(
        (i for i, item in enumerate(items) if item.features is not None), key=lambda i: len(items[i].features)
    )
    for begin in range(0, len(usable), batch_size):
        batch = usable[begin : begin + batch_size]
        lengths = np.array([len(items[i].features) for i in batch], np.int32)
        padded = np.zeros((len(batch), lengths.max(), items[batch[0]].features.shape[1]), np.float32)
        for row, i in enumerate(batch):
            padded[row, : lengths[row]] = items[i].features
        yield batch, padded, lengths


def _end_to_end(items: Sequence[_Item], infer: Callable, batch_size: int, decode: Callable) -> list[str]:
    """Each item's transcript ("" where unusable): decode(logits, logit frames, pool) after each batch's model
    (infer: padded features, frames -> logits, logit frames), a list of texts or a Future of one (then the next
    batch's model runs meanwhile)."""
    texts = [""] * len(items)
    with ThreadPoolExecutor(1, thread_name_prefix="decode") as pool:
        pending = []
        for batch, padded, lengths in _batches(items, batch_size):
            out = decode(*infer(padded, lengths), pool)
            pending.append((batch, out))
        for batch, out in pending:
            for i, text in zip(batch, out.result() if isinstance(out, Future) else out, strict=True):
                texts[i] = text
    return texts


def _log_probs(items: Sequence[_Item], infer: Callable, batch_size: int) -> list[np.ndarray]:
    """Each item's log probabilities [T', C] (no frame where unusable), in order."""
    from asr.decoding.ctc import utterance_log_probs

    rows = [np.zeros((0, 0), np.float32)] * len(items)
    for batch, padded, lengths in _batches(items, batch_size):
        for i, row in zip(batch, utterance_log_probs(*infer(padded, lengths)), strict=True):
            rows[i] = row
    return rows


def _greedy(log_probs: np.ndarray, characters: str) -> str:
    """The best path's transcript (what asr.decoding.ctc.decode_batch gives)."""
    if not len(log_probs):
        return ""
    text = "".join(characters[i] for i in ctc_collapse(log_probs.argmax(1), len(characters)))
    return " ".join(text.split())


def _described(seconds: float, refs: Sequence[str], texts: Sequence[str]) -> dict:
    """Seconds, CER and WER (percent) of transcripts against their references."""
    rates = error_rates(refs, texts)
    return {"seconds": round(seconds, 3), "cer": round(100 * rates["ler"], 2), "wer": round(100 * rates["wer"], 2)}


def decoding_table(result: dict) -> str:
    """The result as a Markdown table: each decoding's seconds, ratio to greedy, CPU seconds, CER and WER."""
    lines = ["| decoding | seconds | x greedy | CPU seconds | CER % | WER % |", "|---|---|---|---|---|---|"]
    for name, row in result["end_to_end"].items():
        spread = f"{row['seconds']:.2f} (median {statistics.median(row['passes']):.2f})"
        ratio, used = row.get("x_greedy", 1.0), min(row["cpu_passes"])
        lines.append(f"| end to end: {name} | {spread} | {ratio} | {used:.2f} | {row['cer']} | {row['wer']} |")
    for name, row in result["saved_log_probs"].items():
        if isinstance(row, dict):
            ratio, used, seconds = row.get("x_greedy", 1.0), row.get("cpu_seconds", ""), row["seconds"]
            lines.append(f"| log-probs: {name} | {seconds:.2f} | {ratio} | {used} | {row['cer']} | {row['wer']} |")
    return "\n".join(lines)
