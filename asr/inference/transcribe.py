"""Transcripts from a bundle: audio files, folders and manifests in, one record per file out, batched by length."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from asr.data.audio import AudioError, audio_files, audio_info, load_audio
from asr.data.datasets import Utterance, read_csv, read_jsonl
from asr.decoding.ctc import decode_batch, nbest, transcript_confidence, utterance_log_probs, word_timestamps
from asr.decoding.hotwords import hotwords_in, read_hotwords
from asr.decoding.lm import NgramLM
from asr.decoding.lm_search import LMDecoder, LMWeights
from asr.inference.bundle import Bundle
from asr.inference.chunking import DEFAULT_MARGIN_SECONDS, pieces
from asr.inference.options import DEFAULT_BATCH_SIZE, DecodeOptions
from asr.model.ctc import CTCModel

log = logging.getLogger(__name__)

GREEDY = DecodeOptions()  # greedy transcripts alone, batches of DEFAULT_BATCH_SIZE
# Files decoded together; results stream out after each chunk, in input order.
CHUNK_FILES = 256


def expand_inputs(paths: Sequence[str]) -> list[Utterance]:
    """Files as given, folders as their audio files (recursive, sorted), `.jsonl` / `.csv` manifests as their
    entries (with the reference transcripts)."""
    items = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            items += [Utterance(p) for p in audio_files(path)]
        elif path.suffix == ".jsonl":
            items += read_jsonl(path)
        elif path.suffix == ".csv":
            items += read_csv(path)
        else:
            items.append(Utterance(path))
    return items


def inference_function(model: CTCModel) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    """model as one graph over any batch shape (traced once, not per shape): features, lengths -> logits."""
    signature = [
        tf.TensorSpec([None, None, model.num_features], tf.float32),
        tf.TensorSpec([None], tf.int32),
    ]
    return tf.function(lambda f, n: model({"features": f, "lengths": n}, training=False), input_signature=signature)


def choose_lm(bundle: Bundle, options: DecodeOptions) -> Bundle:
    """The bundle with the language model the options ask for (its own, none, or an ARPA file) and their
    hotwords; an explicit beam width is the language model's beam too."""
    decoder = None if options.lm == "none" else bundle.lm
    if options.lm not in ("bundle", "none"):
        weights = bundle.lm.weights if bundle.lm is not None else LMWeights()
        decoder = LMDecoder(NgramLM.read_arpa(Path(options.lm)), weights)
    if options.hotwords is not None:  # a beam search even without a language model: the acoustic model's alone
        hotwords = read_hotwords(Path(options.hotwords), bundle.vocab)
        decoder = replace(decoder or LMDecoder(None, LMWeights(0.0, 0.0)), hotwords=hotwords)
    if decoder is not None and options.beam_width > 1:
        decoder = replace(decoder, beam_width=options.beam_width)
    return replace(bundle, lm=decoder)


def ready_inference(bundle: Bundle, options: DecodeOptions) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    """The inference graph, traced and run once on silence, so that loading pays for it, not the first file."""
    infer = inference_function(bundle.model)
    silence = np.zeros((2, 3 * bundle.model.stride, bundle.model.num_features), np.float32)
    decode_features(bundle, list(silence), replace(options, batch_size=2, timestamps=False, confidence=False), infer)
    return infer


def decode_features(
    bundle: Bundle,
    features: Sequence[np.ndarray],
    options: DecodeOptions = GREEDY,
    infer: Callable | None = None,
) -> list[dict]:
    """Decode feature matrices [T, F] with the bundle's model (and its language model, if any), batched by length,
    in input order: {"text"} per item, plus "nbest" [{text, score}] with options.n_best, "words" [{word, start, end,
    confidence}] with options.timestamps and "confidence" with options.confidence (asr.decoding.ctc.aligned_words).
    With a language model the transcript is its beam search's (n_best then lists the acoustic model's own beam).
    `infer`: a traced inference_function to reuse across calls."""
    model, vocab, lm = bundle.model, bundle.vocab, bundle.lm
    n_best = options.n_best
    results: list[dict] = [{} for _ in features]
    for batch, logits, out_lengths in _logit_batches(model, features, options.batch_size, infer):
        lists = nbest(logits, out_lengths, vocab, max(options.beam_width, n_best), n_best) if n_best else None
        aligned = options.timestamps or options.confidence
        rows = utterance_log_probs(logits, out_lengths) if lm is not None or aligned else None
        if lm is not None:
            texts = [lm.decode(log_probs, vocab.characters) for log_probs in rows]
        elif lists is not None:  # the transcript is the best of the listed paths, from the same beam search
            texts = [candidates[0]["text"] for candidates in lists]
        else:
            texts = decode_batch(logits, out_lengths, vocab, options.beam_width)
        for row, i in enumerate(batch):
            results[i]["text"] = texts[row]
            if lists is not None:
                results[i]["nbest"] = lists[row]
            if options.timestamps:
                results[i]["words"] = word_timestamps(texts[row], rows[row], vocab, bundle.seconds_per_step)
            if options.confidence:
                results[i]["confidence"] = transcript_confidence(texts[row], rows[row], vocab)
    return results


def features_log_probs(
    model: CTCModel, features: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE, infer: Callable | None = None
) -> list[np.ndarray]:
    """Per-frame log probabilities [T', C] of feature matrices [T, F], batched by length, in input order."""
    results: list[np.ndarray] = [np.zeros((0, 0))] * len(features)
    for batch, logits, out_lengths in _logit_batches(model, features, batch_size, infer):
        for i, log_probs in zip(batch, utterance_log_probs(logits, out_lengths), strict=True):
            results[i] = log_probs
    return results


def _logit_batches(
    model: CTCModel, features: Sequence[np.ndarray], batch_size: int, infer: Callable | None
) -> Iterator[tuple[list[int], tf.Tensor, np.ndarray]]:
    """(item indices, logits [B, T', C], logit frames [B]) for batches of items of similar length."""
    infer = infer or inference_function(model)
    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        lengths = np.array([len(features[i]) for i in batch], dtype=np.int32)
        padded = np.zeros((len(batch), lengths.max(), model.num_features), np.float32)
        for row, i in enumerate(batch):
            padded[row, : lengths[row]] = features[i]
        yield batch, infer(padded, lengths), model.output_lengths(lengths).numpy()


def run(
    items: Sequence[Utterance], bundle: Bundle, options: DecodeOptions, infer: Callable | None = None
) -> Iterator[dict]:
    """One record per item, in input order: audio, text, duration_s, seconds (+ nbest, words, ref; chunks for a
    recording longer than the bundle's longest training utterance, which is transcribed piece by piece); or
    audio, error for a file that could not be read."""
    features = bundle.features
    infer = infer or inference_function(bundle.model)
    for begin in range(0, len(items), CHUNK_FILES):
        chunk = items[begin : begin + CHUNK_FILES]
        started = time.perf_counter()
        records: list[dict] = []
        feats, slots = [], []
        for item in chunk:
            try:
                if item.start is None and item.end is None and audio_info(item.audio).seconds > bundle.max_seconds:
                    records.append(transcribe_long(item.audio, bundle, options, infer))
                    started += records[-1]["seconds"]  # the short files' time per file leaves it out
                    continue
                signal = load_audio(item.audio, features.sample_rate, item.start, item.end)
            except AudioError as e:
                records.append({"audio": str(item.audio), "error": e.reason})
                continue
            records.append({"audio": str(item.audio), "duration_s": round(len(signal) / features.sample_rate, 3)})
            feats.append(bundle.featurize(signal))
            slots.append(len(records) - 1)
        decoded = decode_features(bundle, feats, options, infer)
        per_file = (time.perf_counter() - started) / max(len(slots), 1)
        for slot, result in zip(slots, decoded, strict=True):
            records[slot].update(result)
            records[slot]["seconds"] = round(per_file, 4)
        for item, record in zip(chunk, records, strict=True):
            if bundle.lm is not None and bundle.lm.hotwords and "text" in record:
                record["hotwords"] = hotwords_in(record["text"], bundle.lm.hotwords)
            if item.text is not None:
                record["ref"] = bundle.vocab.normalize(item.text)
            yield record


def transcribe_long(path: Path, bundle: Bundle, options: DecodeOptions, infer: Callable) -> dict:
    """The record of a long recording: cut at pauses into pieces no longer than the bundle's longest training
    utterance, transcribed a batch of pieces at a time (memory stays bounded): text, and with timestamps
    words and chunks in seconds of the file. The transcript is greedy, a beam's best, or the language model's."""
    started = time.perf_counter()
    features = bundle.features
    margins = bundle.margins or (DEFAULT_MARGIN_SECONDS, DEFAULT_MARGIN_SECONDS)
    spans = pieces(path, bundle.max_seconds, margins, options.min_pause)
    chunks: list[dict] = []
    words: list[dict] = []
    progress = tqdm(total=len(spans), desc=path.name, unit="piece", disable=not sys.stderr.isatty(), leave=False)
    for begin in range(0, len(spans), options.batch_size):
        group = spans[begin : begin + options.batch_size]
        feats = [bundle.featurize(load_audio(path, features.sample_rate, p.start, p.end)) for p in group]
        decoded = decode_features(bundle, feats, replace(options, n_best=0), infer)
        for piece, result in zip(group, decoded, strict=True):
            chunks.append({"start": piece.start, "end": piece.end, "text": " ".join(result["text"].split())})
            if options.confidence:
                chunks[-1]["confidence"] = result["confidence"]
            offset = piece.start
            words += [
                {**w, "start": round(offset + w["start"], 3), "end": round(offset + w["end"], 3)}
                for w in result.get("words", ())
            ]
        progress.update(len(group))
    progress.close()
    record = {
        "audio": str(path),
        "duration_s": round(audio_info(path).seconds, 3),
        "text": " ".join(c["text"] for c in chunks if c["text"]),
    }
    if options.confidence:
        record["confidence"] = pieces_confidence(chunks)
    if options.timestamps:
        record |= {"words": words, "chunks": chunks}
    record["seconds"] = round(time.perf_counter() - started, 4)
    return record


def pieces_confidence(chunks: Sequence[dict]) -> float:
    """A long recording's confidence: its pieces', weighted by the lengths of their transcripts (alike when all
    are empty)."""
    if not chunks:
        return 1.0
    sizes = [len(c["text"]) for c in chunks]
    return round(float(np.average([c["confidence"] for c in chunks], weights=sizes if sum(sizes) else None)), 4)


def transcribe(
    bundle: Bundle, waveforms: Sequence[np.ndarray], sample_rate: int | None = None, beam_width: int = 0
) -> list[str]:
    """Transcripts of float waveforms in [-1, 1] (mono, at `sample_rate`, default the bundle's), in order."""
    from asr.data.audio import resample

    rate = sample_rate or bundle.features.sample_rate
    target = bundle.features.sample_rate
    feats = [bundle.featurize(resample(np.asarray(w, np.float32), rate, target)) for w in waveforms]
    return [r["text"] for r in decode_features(bundle, feats, DecodeOptions(beam_width=beam_width))]
