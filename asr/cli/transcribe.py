"""`asr-transcribe MODEL AUDIO...`: print transcripts of audio files, folders or manifests from a trained model."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from asr.cli._errors import MODEL_FIX, add_debug, existing, run_command
from asr.data.audio import AUDIO_SUFFIXES
from asr.decoding.hotwords import DEFAULT_WEIGHT as DEFAULT_HOTWORD_WEIGHT
from asr.errors import UserError
from asr.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_MS, MIN_PAUSE_SECONDS, DecodeOptions
from asr.models import resolve_model
from asr.system import quiet_tensorflow

DESCRIPTION = f"""\
Transcribe audio with a trained model. MODEL is a training run directory or its model/ bundle. AUDIO is any
mix of audio files ({", ".join(AUDIO_SUFFIXES)}), folders (searched recursively for those) and .jsonl / .csv
manifests (as for training; their transcripts are the references of --score). Any channel count and rate
is read (channels averaged, resampled to the model's rate). Prints `<audio path>\\t<transcript>` per file (and its
words with their times with --timestamps), or one JSON object per file with --json; a closing line on stderr gives
the real-time factor. Exit status: 0, 1 if a file could not be read (the others are still transcribed), 2 for a
bad model or arguments (one line on stderr; a MODEL or AUDIO path that does not exist, or AUDIO that holds no
audio file, is one)."""


# The fix named by the one-line error for an AUDIO path that does not exist (also asr-bench transcribe).
AUDIO_FIX = "pass existing audio files, folders or .jsonl / .csv manifests as AUDIO"


def add_batch_size(parser: argparse.ArgumentParser, default: int | None = DEFAULT_BATCH_SIZE) -> None:
    """The --batch-size option of the commands that decode (asr-transcribe, asr-bench transcribe)."""
    parser.add_argument(
        "--batch-size",
        type=int,
        default=default,
        help=f"files decoded together, grouped by length (default {DEFAULT_BATCH_SIZE}); lower it if memory is short",
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, checked (a bad value or a combination that cannot work exits with status 2 and the
    reason)."""
    parser = argparse.ArgumentParser(prog="asr-transcribe", description=DESCRIPTION)
    parser.add_argument("model", help="training run directory, a bundle directory (model/), or a shipped model's name")
    parser.add_argument("audio", nargs="+", help="audio files, folders (searched recursively), .jsonl / .csv manifests")
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per line: audio, text, duration_s, confidence (0-1), seconds, ...",
    )
    parser.add_argument(
        "--beam-width",
        type=int,
        default=0,
        help="0 (default): the bundle's language model search if it has one, else greedy; 1: greedy, without the "
        "language model; N > 1: a beam of N (the language model's, if any)",
    )
    parser.add_argument(
        "--n-best", type=int, default=0, help="JSON: also the K best beam transcripts with their log probabilities"
    )
    parser.add_argument(
        "--timestamps",
        action="store_true",
        help="words with start and end times (s) and confidence: in JSON, or as word@start-end after the text",
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
        help="a recording longer than the longest training utterance (and a stream) is cut at every pause at least "
        f"this long (default {MIN_PAUSE_SECONDS:g}); raise it if words of one sentence come out split apart",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="recognize as a stream: each file, or raw 16-bit mono PCM at the model's rate from stdin as AUDIO '-', "
        "fed in chunks of --chunk-ms; a segment closes at each pause of --min-pause and is decoded as a piece of a "
        'file is. JSON: {"partial"} as the open segment grows, {"final", start, end, ...} per segment, then the '
        "file's record; plain: the file's line at its end (the partial text live on a terminal's stderr)",
    )
    parser.add_argument(
        "--chunk-ms",
        type=int,
        help=f"--stream: milliseconds of audio per chunk (default {DEFAULT_CHUNK_MS})",
    )
    add_batch_size(parser, default=None)
    parser.add_argument(
        "--score",
        action="store_true",
        help="for manifest entries with a transcript: the reference beside each result, then LER/WER (with --json as "
        'a last record {"score": ...}); files that failed are left out, and counted on stderr',
    )
    add_debug(parser)
    args = parser.parse_args(argv)
    refusal = refused(args)
    if refusal:
        parser.error(refusal)
    if args.chunk_ms is None:
        args.chunk_ms = DEFAULT_CHUNK_MS
    try:
        args.decode = DecodeOptions(
            batch_size=args.batch_size or DEFAULT_BATCH_SIZE,
            beam_width=args.beam_width,
            n_best=args.n_best,
            timestamps=args.timestamps,
            lm=args.lm,
            min_pause=args.min_pause,
            confidence=True,
            hotwords=args.hotwords,
        )
    except ValueError as e:
        parser.error(str(e))
    return args


def refused(args: argparse.Namespace) -> str | None:
    """Why these options cannot work together (one line naming the option), or None."""
    if "-" in args.audio and not args.stream:
        return "AUDIO '-' (raw PCM on stdin) needs --stream"
    if args.chunk_ms is not None and not args.stream:
        return "--chunk-ms sets the chunks of --stream: add --stream, or leave it out"
    if args.chunk_ms is not None and args.chunk_ms < 10:
        return f"--chunk-ms must be >= 10, got {args.chunk_ms}"
    if args.n_best and not args.json:
        return "--n-best lists the alternatives in the JSON records only: add --json"
    if args.stream and args.n_best:
        return "--n-best does not work with --stream: each segment of a stream is decoded once, into one transcript"
    if args.stream and args.batch_size is not None:
        return "--batch-size does not work with --stream: a stream decodes each segment as it closes, alone"
    if args.beam_width == 1 and args.hotwords:
        return "--beam-width 1 decodes greedily, which cannot favour --hotwords: use 0 (default) or a wider beam"
    if args.beam_width == 1 and args.lm not in ("bundle", "none"):
        return "--beam-width 1 decodes greedily, without --lm: use 0 (default) or a wider beam"
    return None


def check_inputs(model: str, audio: Sequence[str], lm: str = "bundle", hotwords: str | None = None) -> None:
    """A UserError naming the first MODEL, --lm, --hotwords or AUDIO path that does not exist (checked before
    TensorFlow loads; an audio file missing from a manifest is a per-file failure instead). MODEL may also
    be a shipped model's name (asr.models)."""
    resolve_model(model, MODEL_FIX)
    if lm not in ("bundle", "none"):
        existing(Path(lm), "pass --lm bundle, --lm none or the path of an ARPA character language model")
    if hotwords is not None:
        existing(Path(hotwords), "pass --hotwords a text file with one word or phrase per line")
    for name in audio:
        if name != "-":  # stdin (asr-transcribe --stream)
            existing(Path(name), AUDIO_FIX)


def audio_items(audio: Sequence[str]) -> list:
    """The inputs (asr.inference.sources.expand_inputs; "-" stays stdin); a UserError when they hold no audio."""
    from asr.data.datasets import Utterance
    from asr.inference.sources import expand_inputs

    items = []
    for name in audio:
        items += [Utterance(Path("-"))] if name == "-" else expand_inputs([name])
    if not items:
        raise UserError(f"no audio files in {' '.join(audio)}; {AUDIO_FIX}")
    return items


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-transcribe`; exit status 1 if any file failed, 2 on a bad model or arguments."""
    args = parse_args(argv)
    return run_command("asr-transcribe", lambda: transcribe(args), args.debug)


def transcribe(args: argparse.Namespace) -> int:
    """Load the model, print every file's result and the closing line; 1 if any file failed."""
    check_inputs(args.model, args.audio, args.lm, args.hotwords)
    items = audio_items(args.audio)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    quiet_tensorflow()
    from asr.inference.recognizer import load

    recognizer = load(args.model, lm=args.lm, hotwords=args.hotwords).ready()
    started = time.perf_counter()
    if args.stream:
        results = stream_results(recognizer, items, args)
    else:
        results = zip(items, recognizer.timed_many(items, args.decode.transcribe_options()), strict=True)
    tally, vocab = Tally(), recognizer.bundle.vocab
    for item, (result, seconds) in results:
        tally.add(item, print_result(record_of(item, result, seconds, args.timestamps, vocab), args))
    elapsed = time.perf_counter() - started
    tally.report(args, elapsed, "streamed" if args.stream else "transcribed")
    return 1 if tally.failed else 0


def record_of(item, result, seconds: float, timestamps: bool, vocab) -> dict:
    """The JSON record of one input: audio, the transcript's record (words and chunks with timestamps), seconds,
    ref (normalized as the transcripts are by `vocab`); or audio, error."""
    from asr.data.audio import AudioError

    if isinstance(result, AudioError):
        return {"audio": str(item.audio), "error": result.reason}
    record = {"audio": str(item.audio), **result.to_dict(), "seconds": round(seconds, 4)}
    if not timestamps:
        record.pop("words", None)
        record.pop("chunks", None)
    if item.text is not None:
        record["ref"] = vocab.normalize(item.text)
    return record


def print_result(record: dict, args: argparse.Namespace) -> dict:
    """Print one input's record (a failed file on stderr, unless --json); the record."""
    if args.json:
        print(json.dumps(record, ensure_ascii=False), flush=True)
    elif "error" in record:
        print(f"asr-transcribe: {record['audio']}: {record['error']}", file=sys.stderr)
    else:
        line = f"{record['audio']}\t{record['text']}"
        if args.score and "ref" in record:
            line += f"\t{'==' if record['ref'] == record['text'] else '!='}\t{record['ref']}"
        if args.timestamps:
            line += "\t" + " ".join(f"{w['word']}@{w['start']:.2f}-{w['end']:.2f}" for w in record["words"])
        print(line, flush=True)
    return record


class Tally:
    """What the closing lines count: files done and failed, seconds of audio, references and transcripts."""

    def __init__(self) -> None:
        self.done, self.failed, self.left_out, self.audio_seconds = 0, 0, 0, 0.0
        self.refs: list[str] = []
        self.hyps: list[str] = []

    def add(self, item, record: dict) -> None:
        """Count one input's record."""
        if "error" in record:
            self.failed += 1
            self.left_out += item.text is not None
            return
        self.done += 1
        self.audio_seconds += record["duration_s"]
        if "ref" in record:
            self.refs.append(record["ref"])
            self.hyps.append(record["text"])

    def report(self, args: argparse.Namespace, elapsed: float, verb: str) -> None:
        """The score (with --score) and the closing line on stderr."""
        if args.score:
            print_scores(self, args.json)
        rtf = f"RTF {elapsed / self.audio_seconds:.4f}" if self.audio_seconds else "RTF n/a: no audio"
        print(
            f"{verb} {plural(self.done, 'file')}, {self.audio_seconds:.1f} s of audio in {elapsed:.2f} s ({rtf})"
            + (f"; {self.failed} failed" if self.failed else ""),
            file=sys.stderr,
        )


def plural(count: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def print_scores(tally: Tally, as_json: bool) -> None:
    """The --score result: letter and word error rates, utterance accuracy (a line, or with --json a last JSON
    record); how many files with a reference were left out because they failed, on stderr."""
    from asr.data.text import error_rates

    if tally.left_out:
        print(
            f"--score: {plural(tally.left_out, 'file')} with a reference left out of the score: "
            "they could not be read (see above)",
            file=sys.stderr,
        )
    if not tally.refs:
        print("--score: no reference transcripts to score against (give a .jsonl or .csv manifest)", file=sys.stderr)
        return
    rates = error_rates(tally.refs, tally.hyps)
    if as_json:
        score = {"files": rates["n"], "ler": rates["ler"], "wer": rates["wer"], "utt_acc": rates["utt_acc"]}
        print(json.dumps({"score": score | {"left_out": tally.left_out}}), flush=True)
        return
    print(
        f"scored {plural(rates['n'], 'file')}: LER {rates['ler']:.4f}  WER {rates['wer']:.4f}  "
        f"utterance accuracy {rates['utt_acc']:.4f}"
    )


def stream_results(recognizer, items: Sequence, args: argparse.Namespace) -> Iterable[tuple]:
    """--stream: each input fed in chunks of --chunk-ms through a StreamSession, its updates shown as they come;
    (item, (transcript or AudioError, seconds)) per input."""
    from asr.data.audio import AudioError, load_audio

    rate = recognizer.sample_rate
    chunk = max(rate * args.chunk_ms // 1000, 1)
    live = not args.json and sys.stderr.isatty()
    for item in items:
        started = time.perf_counter()
        if str(item.audio) == "-":
            data = iter(lambda: sys.stdin.buffer.read(2 * chunk), b"")
        else:
            try:
                samples = load_audio(item.audio, rate, item.start, item.end)
            except AudioError as e:
                yield item, (e, time.perf_counter() - started)
                continue
            data = (samples[i : i + chunk] for i in range(0, len(samples), chunk))
        session = recognizer.stream(min_pause=args.min_pause, beam_width=args.beam_width)
        shown = ""
        for piece in data:
            update = session.accept(piece)
            for segment in update.closed:
                show_segment(item, segment, args, live)
                shown = None
            if update.partial != shown:
                shown = update.partial
                show_partial(shown, args, live)
        closed = len(session.segments)
        transcript = session.finish()
        for segment in transcript.segments[closed:]:
            show_segment(item, segment, args, live)
        if live:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        yield item, (transcript, time.perf_counter() - started)


def show_partial(text: str, args: argparse.Namespace, live: bool) -> None:
    """The open segment's text: a JSON line, or the terminal's line rewritten."""
    if args.json:
        print(json.dumps({"partial": text}, ensure_ascii=False), flush=True)
    elif live:
        print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


def show_segment(item, segment, args: argparse.Namespace, live: bool) -> None:
    """A closed segment: a JSON line {audio, final, start, end, confidence (, words)}, or a terminal's line."""
    if args.json:
        record = {"audio": str(item.audio), "final": segment.text, **segment.to_dict(words=args.timestamps)}
        del record["text"]
        print(json.dumps(record, ensure_ascii=False), flush=True)
    elif live and segment.text:
        print(f"\r\033[K{segment.text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
