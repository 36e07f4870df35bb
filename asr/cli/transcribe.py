"""`asr-transcribe MODEL AUDIO...`: print transcripts of audio files, folders or manifests from a trained model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from asr.cli._errors import MODEL_FIX, add_debug, existing, run_command
from asr.data.audio import AUDIO_SUFFIXES
from asr.decoding.hotwords import DEFAULT_WEIGHT as DEFAULT_HOTWORD_WEIGHT
from asr.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_MS, MIN_PAUSE_SECONDS, DecodeOptions
from asr.system import quiet_tensorflow

DESCRIPTION = f"""\
Transcribe audio with a trained model. MODEL is a training run directory or its model/ bundle. AUDIO is any
mix of audio files ({", ".join(AUDIO_SUFFIXES)}), folders (searched recursively for those) and .jsonl / .csv
manifests (as for training; their transcripts are the references of --score). Any channel count and rate
is read (channels averaged, resampled to the model's rate). Prints `<audio path>\\t<transcript>` per file, or one JSON
object per file with --json; a closing line on stderr gives the real-time factor. Exit status: 0, 1 if a
file could not be read (the others are still transcribed), 2 for a bad model or arguments (one line on stderr; a
MODEL or AUDIO path that does not exist is one)."""


# The fix named by the one-line error for an AUDIO path that does not exist (also asr-bench transcribe).
AUDIO_FIX = "pass existing audio files, folders or .jsonl / .csv manifests as AUDIO"


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    """The --batch-size option of the commands that decode (asr-transcribe, asr-bench transcribe)."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"files decoded together, grouped by length (default {DEFAULT_BATCH_SIZE}); lower it if memory is short",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, checked (a bad value exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(prog="asr-transcribe", description=DESCRIPTION)
    parser.add_argument("model", help="training run directory, or a bundle directory (model/)")
    parser.add_argument("audio", nargs="+", help="audio files, folders (searched recursively), .jsonl / .csv manifests")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: audio, text, duration_s, confidence (0-1), ...",
    )
    parser.add_argument("--beam-width", type=int, default=0, help="beam search width; 0 or 1: greedy (default)")
    parser.add_argument(
        "--n-best", type=int, default=0, help="JSON: also the K best beam transcripts with their log probabilities"
    )
    parser.add_argument(
        "--timestamps", action="store_true", help="JSON: words with start and end times (s) and confidence"
    )
    parser.add_argument(
        "--lm",
        default="bundle",
        metavar="bundle|none|FILE.arpa",
        help="language model of the beam search: the bundle's if it has one (default), none (the acoustic model "
        "alone), or an ARPA character model (characters as tokens, <sp> for a space) with the bundle's weights; "
        "--beam-width sets its beam, --n-best lists the acoustic model's own beam",
    )
    parser.add_argument(
        "--hotwords",
        metavar="FILE",
        help="words and phrases to favour in a beam search (one per line, optionally word:weight, the bonus per "
        f"letter, default {DEFAULT_HOTWORD_WEIGHT:g}); JSON lists those found as hotwords",
    )
    parser.add_argument(
        "--min-pause",
        type=float,
        default=MIN_PAUSE_SECONDS,
        metavar="SECONDS",
        help="a recording longer than the longest training utterance is cut at every pause at least this long "
        f"(default {MIN_PAUSE_SECONDS:g}); raise it if words of one sentence come out split apart",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="recognize as a stream (a unidirectional model): each file, or raw 16-bit mono PCM at the model's rate "
        "from stdin as AUDIO '-', in chunks of --chunk-ms; a partial transcript as it grows (a line rewritten on a "
        'terminal, else JSON lines {"partial": ...}), and {"final": ...} at each pause of 0.6 s and at the end',
    )
    parser.add_argument(
        "--chunk-ms",
        type=int,
        default=DEFAULT_CHUNK_MS,
        help=f"--stream: milliseconds per chunk (default {DEFAULT_CHUNK_MS})",
    )
    add_batch_size(parser)
    parser.add_argument(
        "--score",
        action="store_true",
        help="for manifest entries with a transcript: show the reference beside each result and LER/WER",
    )
    add_debug(parser)
    args = parser.parse_args(argv)
    if args.chunk_ms < 10:
        parser.error(f"--chunk-ms must be >= 10, got {args.chunk_ms}")
    if "-" in args.audio and not args.stream:
        parser.error("AUDIO '-' (raw PCM on stdin) needs --stream")
    try:
        args.decode = DecodeOptions(
            batch_size=args.batch_size,
            beam_width=args.beam_width,
            n_best=args.n_best,
            timestamps=args.timestamps,
            lm=args.lm,
            min_pause=args.min_pause,
            confidence=args.json,
            hotwords=args.hotwords,
        )
    except ValueError as e:
        parser.error(str(e))
    return args


def check_inputs(model: str, audio: Sequence[str], lm: str = "bundle", hotwords: str | None = None) -> None:
    """A UserError naming the first MODEL, --lm, --hotwords or AUDIO path that does not exist (checked before
    TensorFlow loads; an audio file missing from a manifest is a per-file failure instead)."""
    existing(Path(model), MODEL_FIX)
    if lm not in ("bundle", "none"):
        existing(Path(lm), "pass --lm bundle, --lm none or the path of an ARPA character language model")
    if hotwords is not None:
        existing(Path(hotwords), "pass --hotwords a text file with one word or phrase per line")
    for name in audio:
        if name != "-":  # stdin (asr-transcribe --stream)
            existing(Path(name), AUDIO_FIX)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-transcribe`; exit status 1 if any file failed, 2 on a bad model or arguments."""
    args = parse_args(argv)
    return run_command("asr-transcribe", lambda: transcribe(args), args.debug)


def transcribe(args: argparse.Namespace) -> int:
    """Load the model, print every file's result and the closing line; 1 if any file failed."""
    check_inputs(args.model, args.audio, args.lm, args.hotwords)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_tensorflow()
    from asr.inference.bundle import load_bundle
    from asr.inference.transcribe import choose_lm, expand_inputs, ready_inference, run

    if args.stream:
        return stream(load_bundle(Path(args.model)), args)
    bundle = choose_lm(load_bundle(Path(args.model)), args.decode)
    items = expand_inputs(args.audio)
    infer = ready_inference(bundle, args.decode)
    started = time.perf_counter()
    failed, audio_seconds, refs, hyps = print_records(run(items, bundle, args.decode, infer), args)
    elapsed = time.perf_counter() - started
    if args.score and refs:
        print_scores(refs, hyps)
    rtf = elapsed / audio_seconds if audio_seconds else float("nan")
    print(
        f"transcribed {len(items) - failed} files, {audio_seconds:.1f} s of audio in {elapsed:.2f} s "
        f"(RTF {rtf:.4f})" + (f"; {failed} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def stream(bundle, args: argparse.Namespace) -> int:
    """--stream: each input recognized chunk by chunk, partial transcripts as they grow, then the final one."""
    from asr.data.audio import load_audio
    from asr.inference.stream import Stream, check_streamable

    check_streamable(bundle)
    rate = bundle.features.sample_rate
    chunk = max(rate * args.chunk_ms // 1000, 1)
    terminal = sys.stdout.isatty()
    for name in args.audio:
        recognizer, shown = Stream(bundle), None
        if name == "-":
            pieces = iter(lambda: sys.stdin.buffer.read(2 * chunk), b"")
            chunks = (np.frombuffer(p[: len(p) - len(p) % 2], "<i2").astype(np.float32) / 32768.0 for p in pieces)
        else:
            samples = load_audio(name, rate)
            chunks = (samples[i : i + chunk] for i in range(0, len(samples), chunk))
        for piece in chunks:
            recognizer.feed(piece)
            closed = recognizer.close_segment()
            if closed is not None:  # a pause after some words: that segment is final
                show(terminal, {"audio": name, "final": closed}, final=True)
                shown = ""
            text = recognizer.segment()
            if text != shown:
                shown = text
                show(terminal, {"partial": text}, final=False)
        recognizer.finish()
        if recognizer.segment() or shown is None:  # the last segment (an input without speech: one empty final)
            show(terminal, {"audio": name, "final": recognizer.segment()}, final=True)
    return 0


def show(terminal: bool, record: dict, final: bool) -> None:
    """One stream result: on a terminal the line rewritten (a final one ends it), else a JSON line."""
    if not terminal:
        print(json.dumps(record), flush=True)
    else:
        text = record.get("final", record.get("partial", ""))
        print(f"\r\033[K{text}", end="\n" if final else "", flush=True)


def print_records(records: Iterable[dict], args: argparse.Namespace) -> tuple[int, float, list[str], list[str]]:
    """Print each record as it comes (a failed file on stderr, unless --json); the count of failed files, the
    seconds of audio transcribed, and the references with their transcripts (for --score)."""
    failed, audio_seconds, refs, hyps = 0, 0.0, [], []
    for record in records:
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
    return failed, audio_seconds, refs, hyps


def print_scores(refs: list[str], hyps: list[str]) -> None:
    """The --score line: letter and word error rates, utterance accuracy."""
    from asr.data.text import error_rates

    rates = error_rates(refs, hyps)
    print(
        f"scored {rates['n']} files: LER {rates['ler']:.4f}  WER {rates['wer']:.4f}  "
        f"utterance accuracy {rates['utt_acc']:.4f}"
    )


if __name__ == "__main__":
    sys.exit(main())
