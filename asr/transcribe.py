"""`asr-transcribe MODEL AUDIO...`: transcripts of WAV files, directories or manifests from a saved run."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from asr.audio import AudioError, load_audio
from asr.bundle import BundleError, load_bundle
from asr.datasets import DatasetError, read_csv, read_jsonl
from asr.decoding import decode_batch, log_softmax, nbest, word_timestamps
from asr.text import error_rates

log = logging.getLogger(__name__)

# Files decoded together; results stream out after each chunk, in input order.
CHUNK_FILES = 256
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Item:
    """One input: an audio file (optionally cut) and, from a manifest, its reference transcript."""

    audio: Path
    ref: str | None = None
    start: float | None = None
    end: float | None = None


def expand_inputs(paths: Sequence[str]) -> list[Item]:
    """Files as given, directories as their `.wav` files (recursive, sorted), `.jsonl` / `.csv` manifests as
    their entries (with the reference transcripts)."""
    items = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            items += [Item(p) for p in sorted(path.rglob("*")) if p.suffix.lower() == ".wav"]
        elif path.suffix == ".jsonl":
            items += [Item(u.audio, u.text, u.start, u.end) for u in read_jsonl(path)]
        elif path.suffix == ".csv":
            items += [Item(u.audio, u.text) for u in read_csv(path)]
        else:
            items.append(Item(path))
    return items


def inference_function(model) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    """model as one graph over any batch shape (traced once, not per shape): features, lengths -> logits."""
    signature = [
        tf.TensorSpec([None, None, model.num_features], tf.float32),
        tf.TensorSpec([None], tf.int32),
    ]
    return tf.function(lambda f, n: model({"features": f, "lengths": n}, training=False), input_signature=signature)


def ready_inference(bundle, options: DecodeOptions) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    """The inference graph, traced and run once on silence, so that loading pays for it, not the first file."""
    infer = inference_function(bundle.model)
    silence = np.zeros((2, 3 * bundle.model.stride, bundle.model.num_features), np.float32)
    decode_features(bundle.model, bundle.vocab, list(silence), 2, options.beam_width, options.n_best, 0.0, infer)
    return infer


def decode_features(
    model,
    vocab,
    features: Sequence[np.ndarray],
    batch_size: int = DEFAULT_BATCH_SIZE,
    beam_width: int = 0,
    n_best: int = 0,
    seconds_per_frame: float = 0.0,
    infer: Callable | None = None,
) -> list[dict]:
    """Decode feature matrices [T, F], batched by length, in input order: {"text"} per item, plus
    "nbest" [{text, score}] when n_best > 0 and "words" [{word, start, end}] when seconds_per_frame > 0."""
    infer = infer or inference_function(model)
    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    results: list[dict] = [{} for _ in features]
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        lengths = np.array([len(features[i]) for i in batch], dtype=np.int32)
        padded = np.zeros((len(batch), lengths.max(), model.num_features), np.float32)
        for row, i in enumerate(batch):
            padded[row, : lengths[row]] = features[i]
        logits = infer(padded, lengths)  # [B, T', C]
        out_lengths = model.output_lengths(lengths).numpy()
        lists = nbest(logits, out_lengths, vocab, max(beam_width, n_best), n_best) if n_best else None
        if lists is not None and beam_width > 1:  # the same beam search: its best path is the transcript
            texts = [candidates[0]["text"] for candidates in lists]
        else:
            texts = decode_batch(logits, out_lengths, vocab, beam_width)
        for row, i in enumerate(batch):
            results[i]["text"] = texts[row]
            if lists is not None:
                results[i]["nbest"] = lists[row]
            if seconds_per_frame > 0:
                log_probs = log_softmax(logits[row, : out_lengths[row]].numpy())
                results[i]["words"] = word_timestamps(texts[row], log_probs, vocab, seconds_per_frame)
    return results


def transcribe_features(
    model, vocab, features: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE, infer: Callable | None = None
) -> list[str]:
    """Greedy transcripts of feature matrices [T, F], in input order (`infer`: a traced inference_function
    to reuse across calls)."""
    return [r["text"] for r in decode_features(model, vocab, features, batch_size, infer=infer)]


@dataclass(frozen=True)
class DecodeOptions:
    """How asr-transcribe decodes."""

    batch_size: int = DEFAULT_BATCH_SIZE
    beam_width: int = 0  # 0 or 1: greedy
    n_best: int = 0  # > 0: also list the n best beam-search transcripts with their log probabilities
    timestamps: bool = False  # word start/end times from the CTC alignment

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.beam_width < 0 or self.n_best < 0:
            raise ValueError("--beam-width and --n-best must be >= 0")
        if self.n_best > max(self.beam_width, 1) and self.beam_width:
            raise ValueError(f"--n-best {self.n_best} needs --beam-width >= {self.n_best}")


def run(items: Sequence[Item], bundle, options: DecodeOptions, infer: Callable | None = None) -> Iterator[dict]:
    """One record per item, in input order: audio, text, duration_s, seconds (+ nbest, words, ref);
    or audio, error for a file that could not be read."""
    features = bundle.features
    seconds_per_frame = bundle.model.stride * features.frame_step / features.sample_rate if options.timestamps else 0
    infer = infer or inference_function(bundle.model)
    for begin in range(0, len(items), CHUNK_FILES):
        chunk = items[begin : begin + CHUNK_FILES]
        started = time.perf_counter()
        records: list[dict] = []
        feats, slots = [], []
        for item in chunk:
            try:
                signal = load_audio(item.audio, features.sample_rate, item.start, item.end)
            except AudioError as e:
                records.append({"audio": str(item.audio), "error": e.reason})
                continue
            records.append({"audio": str(item.audio), "duration_s": round(len(signal) / features.sample_rate, 3)})
            feats.append(bundle.featurize(signal))
            slots.append(len(records) - 1)
        decoded = decode_features(
            bundle.model,
            bundle.vocab,
            feats,
            options.batch_size,
            options.beam_width,
            options.n_best,
            seconds_per_frame,
            infer,
        )
        per_file = (time.perf_counter() - started) / max(len(chunk), 1)
        for slot, result in zip(slots, decoded, strict=True):
            records[slot].update(result)
            records[slot]["seconds"] = round(per_file, 4)
        for item, record in zip(chunk, records, strict=True):
            if item.ref is not None:
                record["ref"] = bundle.vocab.normalize(item.ref)
            yield record


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="asr-transcribe",
        description="Transcribe WAV files with a trained model (a training run dir or its model/ bundle).",
    )
    parser.add_argument("model", help="training run directory, or a bundle directory (model/)")
    parser.add_argument("audio", nargs="+", help="WAV files, directories (searched for .wav), .jsonl manifests")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--beam-width", type=int, default=0, help="beam search width; 0 or 1: greedy (default)")
    parser.add_argument("--n-best", type=int, default=0, help="JSON: also the K best beam transcripts with scores")
    parser.add_argument("--timestamps", action="store_true", help="JSON: words with start and end times (s)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--score",
        action="store_true",
        help="for manifest entries with a transcript: show the reference beside each result and LER/WER",
    )
    args = parser.parse_args(argv)
    try:
        args.decode = DecodeOptions(args.batch_size, args.beam_width, args.n_best, args.timestamps)
    except ValueError as e:
        parser.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 1 if any file failed, 2 on a bad model or arguments."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        bundle = load_bundle(Path(args.model))
        items = expand_inputs(args.audio)
        infer = ready_inference(bundle, args.decode)
    except (BundleError, DatasetError) as e:
        print(f"asr-transcribe: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    failed, audio_seconds, refs, hyps = 0, 0.0, [], []
    for record in run(items, bundle, args.decode, infer):
        if "error" in record:
            failed += 1
            if not args.json:
                print(f"asr-transcribe: {record['audio']}: {record['error']}", file=sys.stderr)
        else:
            audio_seconds += record["duration_s"]
            if "ref" in record:
                refs.append(record["ref"])
                hyps.append(record["text"])
        if args.json:
            print(json.dumps(record), flush=True)
        elif "error" not in record:
            line = f"{record['audio']}\t{record['text']}"
            if args.score and "ref" in record:
                line += f"\t{'==' if record['ref'] == record['text'] else '!='}\t{record['ref']}"
            print(line, flush=True)
    elapsed = time.perf_counter() - started
    if args.score and refs:
        rates = error_rates(refs, hyps)
        print(
            f"scored {rates['n']} files: LER {rates['ler']:.4f}  WER {rates['wer']:.4f}  "
            f"utterance accuracy {rates['utt_acc']:.4f}"
        )
    rtf = elapsed / audio_seconds if audio_seconds else float("nan")
    print(
        f"transcribed {len(items) - failed} files, {audio_seconds:.1f} s of audio in {elapsed:.2f} s "
        f"(RTF {rtf:.4f})" + (f"; {failed} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
