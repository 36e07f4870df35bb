"""`asr-transcribe MODEL AUDIO...`: transcripts of WAV files, directories or manifests from a saved run."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    """Files as given, directories as their `.wav` files (recursive, sorted), `.jsonl` manifests as entries."""
    from asr.datasets import read_jsonl

    items = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            items += [Item(p) for p in sorted(path.rglob("*")) if p.suffix.lower() == ".wav"]
        elif path.suffix == ".jsonl":
            items += [Item(u.audio, u.text, u.start, u.end) for u in read_jsonl(path)]
        else:
            items.append(Item(path))
    return items


def transcribe_features(
    model, vocab, features: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE, beam_width: int = 0
) -> list[str]:
    """Transcripts of feature matrices [T, F], batched by length, returned in input order."""
    from asr.decoding import decode_batch

    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    texts: list[str] = [""] * len(features)
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        lengths = np.array([len(features[i]) for i in batch], dtype=np.int32)
        padded = np.zeros((len(batch), lengths.max(), features[batch[0]].shape[1]), np.float32)
        for row, i in enumerate(batch):
            padded[row, : lengths[row]] = features[i]
        logits = model({"features": padded, "lengths": lengths}, training=False)
        out_lengths = model.output_lengths(lengths)
        for i, text in zip(batch, decode_batch(logits, out_lengths, vocab, beam_width), strict=True):
            texts[i] = text
    return texts


def run(items: Sequence[Item], bundle, batch_size: int, beam_width: int) -> Iterator[dict]:
    """One record per item, in input order: audio, text, duration_s, seconds; or audio, error."""
    from asr.audio import AudioError, load_audio
    from asr.features import extract

    options = bundle.features
    for begin in range(0, len(items), CHUNK_FILES):
        chunk = items[begin : begin + CHUNK_FILES]
        started = time.perf_counter()
        records: list[dict] = []
        feats, slots = [], []
        for item in chunk:
            try:
                signal = load_audio(item.audio, options.sample_rate, item.start, item.end)
            except AudioError as e:
                records.append({"audio": str(item.audio), "error": e.reason})
                continue
            records.append({"audio": str(item.audio), "duration_s": round(len(signal) / options.sample_rate, 3)})
            feats.append(extract(signal, options))
            slots.append(len(records) - 1)
        texts = transcribe_features(bundle.model, bundle.vocab, feats, batch_size, beam_width)
        per_file = (time.perf_counter() - started) / max(len(chunk), 1)
        for slot, text in zip(slots, texts, strict=True):
            records[slot]["text"] = text
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
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--score",
        action="store_true",
        help="for manifest entries with a transcript: show the reference beside each result and LER/WER",
    )
    args = parser.parse_args(argv)
    if args.beam_width < 0 or args.batch_size < 1:
        parser.error("--beam-width must be >= 0 and --batch-size >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 1 if any file failed, 2 on a bad model or arguments."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from asr.bundle import BundleError, load_bundle
    from asr.datasets import DatasetError
    from asr.text import error_rates

    try:
        bundle = load_bundle(Path(args.model))
        items = expand_inputs(args.audio)
    except (BundleError, DatasetError) as e:
        print(f"asr-transcribe: {e}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    failed, audio_seconds, refs, hyps = 0, 0.0, [], []
    for record in run(items, bundle, args.batch_size, args.beam_width):
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
