"""`asr-bench WHAT ...` (`asr-bench WHAT --help` gives its arguments): speed, memory or error rates against a
baseline measured in the same run, printed and written as JSON (see the asr.bench package, one module per
benchmark)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from asr.cli._errors import MODEL_FIX, add_debug, existing, run_command
from asr.cli.transcribe import add_batch_size, check_inputs
from asr.models import resolve_model
from asr.system import quiet_tensorflow

# The short training job of `asr-bench jobs` (kept here so that --help needs nothing heavy).
SHORT_JOB = ["trainer.epochs=2", "model.num_layers=1", "model.units=64", "augment.speeds=[1.0]", "trainer.verbose=0"]
# `asr-bench train`: one warm-up epoch (graph tracing) and three measured, for a median of three.
TRAIN_EPOCHS = 4
MIN_TRAIN_EPOCHS = 2  # the warm-up and at least one measured epoch


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line: one of the subcommands with its arguments (a bad one exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(prog="asr-bench", description=__doc__.replace("\n", " "))
    sub = parser.add_subparsers(dest="what", required=True)
    transcribe = sub.add_parser("transcribe", help="RTF of asr-transcribe vs one-file-at-a-time eager decoding")
    transcribe.add_argument("model", help="training run directory or bundle")
    transcribe.add_argument("audio", nargs="+", help="audio files, directories or manifests (as asr-transcribe)")
    add_batch_size(transcribe)
    transcribe.add_argument("--baseline-files", type=int, default=0, help="baseline on the first N files (0: all)")
    transcribe.add_argument(
        "--hotwords", metavar="FILE", help="also time decoding with these hotwords (as asr-transcribe --hotwords)"
    )
    decoding = sub.add_parser("decoding", help="the LM's beam search against greedy decoding: seconds, CER, WER")
    decoding.add_argument("model", help="training run directory or bundle (with a language model)")
    decoding.add_argument("manifest", help="a .jsonl manifest with the reference transcripts")
    add_batch_size(decoding)
    decoding.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE[,KEY=VALUE]",
        help="also time the search with these settings on the saved log-probs (beam_width, tokens_per_frame, "
        "beam_threshold, skip_blank, search); repeat for more",
    )
    decoding.add_argument("--passes", type=int, default=3, help="end-to-end passes of each decoding (default 3)")
    decoding.add_argument(
        "--end-to-end", action="append", default=[], metavar="NAME", help="also time this --variant end to end"
    )
    recognizer = sub.add_parser(
        "recognizer", help="one transcript through every door: a long recording's CER, streams, silence"
    )
    recognizer.add_argument("model", help="training run directory or bundle (e.g. of experiment=demo)")
    recognizer.add_argument("--stream-model", help="a streaming model's run (experiment=demo_streaming): stream WER")
    jobs = sub.add_parser("jobs", help="memory after each of N training jobs run in one process")
    jobs.add_argument("count", type=int, nargs="?", default=5, help="how many jobs (default 5)")
    jobs.add_argument("overrides", nargs="*", default=SHORT_JOB, help=f"Hydra overrides (default: {SHORT_JOB})")
    resample = sub.add_parser("resample", help="soxr (used) vs scipy resample_poly: speed and quality")
    resample.add_argument("--seconds", type=float, default=60.0, help="length of the test signal (default 60 s)")
    train = sub.add_parser("train", help="seconds per epoch: the naive padded Keras way vs asr-train's pipeline")
    train.add_argument("overrides", nargs="*", default=[], help="Hydra overrides of asr-train (e.g. experiment=fsdd)")
    train.add_argument(
        "--epochs",
        type=int,
        default=TRAIN_EPOCHS,
        help=f"epochs of each pipeline, the first a warm-up (default {TRAIN_EPOCHS})",
    )
    train.add_argument("--naive-epochs", type=int, help="epochs of the naive pipeline (default: --epochs)")
    train.add_argument(
        "--limit", type=int, help="only the first K utterances of the training and validation splits (quick checks)"
    )
    scale = sub.add_parser("scale", help="seconds per epoch and peak memory on 25-200 %% of a corpus, per storage")
    scale.add_argument("overrides", nargs="*", default=[], help="Hydra overrides of asr-train (e.g. experiment=fsdd)")
    scale.add_argument(
        "--epochs", type=int, default=MIN_TRAIN_EPOCHS + 1, help="epochs per point, the first a warm-up (default 3)"
    )
    scale.add_argument("--fractions", type=float, nargs="+", help="shares of the training split (default 0.25 0.5 1 2)")
    scale.add_argument(
        "--storage", nargs="+", choices=["memory", "disk"], default=["memory", "disk"], help="data.storage values"
    )
    scale.add_argument("--limit", type=int, help="only the first K training utterances (quick checks)")
    lstm = sub.add_parser("lstm", help="GFLOP/s of one LSTM training step per batch size and implementation")
    lstm.add_argument("overrides", nargs="*", default=[], help="Hydra overrides of asr-train (e.g. experiment=fsdd)")
    lstm.add_argument("--batch-sizes", type=int, nargs="+", help="batch sizes of the default variant (8 16 32 64 128)")
    lstm.add_argument("--frames", type=int, default=150, help="LSTM steps per batch (default 150)")
    sphinx = sub.add_parser(
        "pocketsphinx", help="CMU PocketSphinx out of the box (and --model) on a manifest's files: CER, WER, time"
    )
    sphinx.add_argument("manifest", help="a .jsonl / .csv manifest (or a corpus folder) with transcripts")
    sphinx.add_argument("--limit", type=int, help="only its first N entries")
    sphinx.add_argument("--model", help="also this model of ours: a run, a bundle or a shipped model's name (base)")
    serve = sub.add_parser("serve", help="asr-serve from outside: uploads at 1/4/16 clients, memory, real-time streams")
    serve.add_argument("model", help="training run directory, bundle or shipped model's name (served by asr-serve)")
    serve.add_argument("audio", nargs="+", help="recordings to upload and stream (files, folders or manifests)")
    serve.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1, 2],
        help="asr-serve --workers values to compare, in turn (default 1 2; repeat them to see the noise)",
    )
    serve.add_argument("--requests-per-client", type=int, default=8, help="uploads per client at each concurrency")
    parser.add_argument("--out", default="bench.json", help="JSON file to write (default: bench.json)")
    add_debug(parser)
    args = parser.parse_args(argv)
    if args.what == "scale" and (args.epochs < MIN_TRAIN_EPOCHS or min(args.fractions or [1]) <= 0):
        parser.error(f"--epochs must be >= {MIN_TRAIN_EPOCHS} and --fractions positive")
    if args.what == "train":
        if args.naive_epochs is None:
            args.naive_epochs = args.epochs
        if min(args.epochs, args.naive_epochs) < MIN_TRAIN_EPOCHS:
            parser.error(f"--epochs and --naive-epochs must be >= {MIN_TRAIN_EPOCHS} (a warm-up and a measured epoch)")
        if args.limit is not None and args.limit < 1:
            parser.error(f"--limit must be >= 1, got {args.limit}")
    if args.what == "pocketsphinx" and args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be >= 1, got {args.limit}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-bench`; exit status 2 (one line on stderr) for a user's mistake, such as a MODEL or
    AUDIO path that does not exist."""
    args = parse_args(argv)
    return run_command("asr-bench", lambda: bench(args), args.debug)


def bench(args: argparse.Namespace) -> int:
    """Run the chosen benchmark, print its result and write it to --out."""
    if args.what == "transcribe":
        check_inputs(args.model, args.audio)
    if args.what == "pocketsphinx":
        existing(Path(args.manifest), "pass a manifest (.jsonl / .csv) of audio files with their transcripts")
        if args.model is not None:
            resolve_model(args.model, MODEL_FIX)
    if args.what == "decoding":
        check_inputs(args.model, [args.manifest])
    if args.what == "serve":
        args.model = resolve_model(args.model, MODEL_FIX)
        check_inputs(args.model, args.audio)
    quiet_tensorflow()
    from asr.bench.common import machine
    from asr.bench.decoding import Variant, bench_decoding, check_end_to_end, decoding_table
    from asr.bench.jobs import bench_jobs
    from asr.bench.lstm import LSTM_BATCH_SIZES, bench_lstm, lstm_table
    from asr.bench.pocketsphinx import bench_pocketsphinx, pocketsphinx_table
    from asr.bench.recognizer import bench_recognizer
    from asr.bench.resample import bench_resample
    from asr.bench.scale import SCALE_FRACTIONS, bench_scale, scale_plot, scale_table
    from asr.bench.train import bench_train, train_table
    from asr.bench.transcribe import bench_transcribe

    if args.what == "transcribe":
        measured = bench_transcribe(Path(args.model), args.audio, args.batch_size, args.baseline_files, args.hotwords)
    elif args.what == "decoding":
        variants = [Variant.parse(v) for v in args.variant]
        check_end_to_end(args.end_to_end, variants)
        measured = bench_decoding(
            Path(args.model), Path(args.manifest), args.batch_size, variants, args.passes, args.end_to_end
        )
    elif args.what == "recognizer":
        measured = bench_recognizer(Path(args.model), args.stream_model and Path(args.stream_model))
    elif args.what == "resample":
        measured = bench_resample(args.seconds)
    elif args.what == "train":
        measured = bench_train(args.overrides, args.epochs, args.naive_epochs, args.limit)
    elif args.what == "lstm":
        measured = bench_lstm(args.overrides, args.batch_sizes or LSTM_BATCH_SIZES, args.frames)
    elif args.what == "pocketsphinx":
        measured = bench_pocketsphinx(Path(args.manifest), args.limit, args.model)
    elif args.what == "serve":
        from asr.bench.serve import bench_serve

        measured = bench_serve(args.model, args.audio, args.workers, args.requests_per_client)
    elif args.what == "scale":
        measured = bench_scale(args.overrides, args.epochs, args.fractions or SCALE_FRACTIONS, args.storage, args.limit)
    else:
        with tempfile.TemporaryDirectory(prefix="asr-bench-") as work_dir:
            measured = bench_jobs(args.count, args.overrides, Path(work_dir))
    result = {"machine": machine(), **measured}  # `train` measures the machine further: its own "machine"
    print(json.dumps(result, indent=2))  # first: an unwritable --out loses no measurement
    if args.what == "train":
        print(train_table(result))
    if args.what == "lstm":
        print(lstm_table(result))
    if args.what == "pocketsphinx":
        print(pocketsphinx_table(result))
    if args.what == "decoding":
        print(decoding_table(result))
    if args.what == "scale":
        print(scale_table(result))
        scale_plot(result, Path(args.out).with_suffix(".png"))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
