"""`asr-export MODEL OUT_DIR`: write a SavedModel that turns waveforms into transcripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from asr.cli._errors import MODEL_FIX, add_debug, existing, run_command
from asr.errors import UserError
from asr.system import quiet_tensorflow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (a bad or missing argument exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(
        prog="asr-export",
        description="Export a trained model as a SavedModel: waveforms in, transcripts out. Exit status 2 for a bad "
        "model, an OUT_DIR that exists or bad arguments (one line on stderr).",
    )
    parser.add_argument("model", help="training run directory, or its model/ bundle")
    parser.add_argument("out_dir", help="new directory for the SavedModel")
    add_debug(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-export`."""
    args = parse_args(argv)
    return run_command("asr-export", lambda: export_model(Path(args.model), Path(args.out_dir)), args.debug)


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
    print(f"SavedModel written to {out} (sample rate {bundle.features.sample_rate} Hz); signature `serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
