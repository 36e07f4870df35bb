"""`asr-export MODEL OUT_DIR`: write a SavedModel that turns waveforms into transcripts; with `--tflite`, a
.tflite file of the acoustic model for devices (float32, or quantized with `--dynamic-range` / `--int8`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from asr.cli._errors import MODEL_FIX, add_debug, existing, run_command
from asr.errors import UserError
from asr.system import quiet_tensorflow

# Utterances of the training split that calibrate full int8 quantization: TFLite's guidance is 100-500.
CALIBRATION_UTTERANCES = 100
# What each kind of .tflite file holds, as the closing line says it.
KINDS = {
    "none": "float32",
    "dynamic": "int8 weights, float32 activations",
    "int8": "int8 weights and activations",
    "step": "streaming step function, float32",
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (a bad or missing argument exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(
        prog="asr-export",
        description="Export a trained model as a SavedModel (waveforms in, transcripts out), or with --tflite as a "
        "TFLite file (features in, logits out; asr.inference.lite runs it with LiteRT and NumPy only). Exit status "
        "2 for a bad model, an output that exists or bad arguments (one line on stderr).",
    )
    parser.add_argument("model", help="training run directory, or its model/ bundle")
    parser.add_argument("out_dir", help="new directory for the SavedModel; with --tflite, a new .tflite file")
    parser.add_argument("--tflite", action="store_true", help="write a .tflite file and its .json beside it")
    quantize = parser.add_mutually_exclusive_group()
    quantize.add_argument("--dynamic-range", action="store_true", help="with --tflite: int8 weights, float activations")
    quantize.add_argument(
        "--int8",
        action="store_true",
        help=f"with --tflite: int8 weights and activations, calibrated on {CALIBRATION_UTTERANCES} utterances of "
        "the run's training split (MODEL must be the run directory)",
    )
    parser.add_argument(
        "--stream",
        action="store_true",
        help="with --tflite: the step function of a unidirectional model (stacked steps and LSTM states in, logits "
        "and states out) for streaming on a device",
    )
    add_debug(parser)
    args = parser.parse_args(argv)
    if args.stream and (not args.tflite or args.int8 or args.dynamic_range):
        parser.error("--stream exports a float32 TFLite step function: use it with --tflite alone")
    if (args.int8 or args.dynamic_range) and not args.tflite:
        parser.error("--int8 and --dynamic-range quantize a TFLite file: add --tflite")
    if args.tflite and Path(args.out_dir).suffix != ".tflite":
        parser.error(f"--tflite writes a file: name it <name>.tflite, not {args.out_dir}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-export`."""
    args = parse_args(argv)
    if args.tflite and args.stream:
        work = lambda: export_lite(Path(args.model), Path(args.out_dir), "step")  # noqa: E731
    elif args.tflite:
        quantization = "int8" if args.int8 else "dynamic" if args.dynamic_range else "none"
        work = lambda: export_lite(Path(args.model), Path(args.out_dir), quantization)  # noqa: E731
    else:
        work = lambda: export_model(Path(args.model), Path(args.out_dir))  # noqa: E731
    return run_command("asr-export", work, args.debug)


def already_exists(out_dir: Path) -> UserError:
    """The error for an OUT_DIR with something there already (nothing is overwritten)."""
    return UserError(f"{out_dir}: already exists; choose a new OUT_DIR (nothing is overwritten)")


def export_model(model: Path, out_dir: Path) -> int:
    """Load the bundle and write the SavedModel (the paths are checked before TensorFlow loads)."""
    existing(model, MODEL_FIX)
    if out_dir.exists():
        raise already_exists(out_dir)
    quiet_tensorflow()
    from asr.inference.bundle import load_bundle
    from asr.inference.export import export

    bundle = load_bundle(model)
    try:
        out = export(bundle, out_dir)
    except FileExistsError as error:  # OUT_DIR appeared while the model loaded
        raise already_exists(out_dir) from error
    print(
        f"SavedModel written to {out} (sample rate {bundle.features.sample_rate} Hz); signature `serve` decodes "
        f"waveforms of up to {bundle.max_seconds:g} s whole (model.json)"
    )
    return 0


def export_lite(model: Path, out: Path, quantization: str) -> int:
    """Load the bundle and write the .tflite file and its JSON (int8: calibrated on the run's training split;
    "step": the streaming step function)."""
    existing(model, MODEL_FIX)
    if out.exists() or out.with_suffix(".json").exists():
        raise UserError(f"{out}: it or its .json already exists; choose a new name (nothing is overwritten)")
    quiet_tensorflow()
    from asr.inference.bundle import load_bundle
    from asr.inference.tflite import Quantization, export_tflite, export_tflite_step

    bundle = load_bundle(model)
    if quantization == "step":
        export_tflite_step(bundle, out)
    else:
        calibration = calibration_features(model, bundle) if quantization == "int8" else []
        export_tflite(bundle, out, Quantization(quantization), calibration)
    size = out.stat().st_size / 1e6
    print(f"TFLite ({KINDS[quantization]}) written to {out} ({size:.2f} MB) with {out.with_suffix('.json').name}")
    return 0


def calibration_features(model: Path, bundle) -> list:
    """Normalized features of up to CALIBRATION_UTTERANCES training utterances, spread over the split."""
    from asr.config import run_options
    from asr.data.activity import sample_evenly
    from asr.data.audio import AudioError, load_audio
    from asr.data.preparation import load_data

    train = load_data(run_options(model).data)["train"]
    features = []
    for i in sample_evenly(len(train), CALIBRATION_UTTERANCES):
        try:
            samples = load_audio(train[i].audio, bundle.features.sample_rate, train[i].start, train[i].end)
        except AudioError:
            continue
        features.append(bundle.featurize(samples))
    if not features:
        raise UserError(f"{model}: no readable training utterance to calibrate int8 with; use --dynamic-range")
    return features


if __name__ == "__main__":
    sys.exit(main())
