"""`asr-export MODEL OUT_DIR`: write a SavedModel that turns waveforms into transcripts."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from asr.system import quiet_tensorflow


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-export`."""
    parser = argparse.ArgumentParser(
        prog="asr-export", description="Export a trained model as a SavedModel: waveforms in, transcripts out."
    )
    parser.add_argument("model", help="training run directory, or its model/ bundle")
    parser.add_argument("out_dir", help="new directory for the SavedModel")
    args = parser.parse_args(argv)
    quiet_tensorflow()
    from asr.inference.bundle import BundleError, load_bundle
    from asr.inference.export import export

    try:
        bundle = load_bundle(Path(args.model))
        out = export(bundle, Path(args.out_dir))
    except (BundleError, FileExistsError) as e:
        print(f"asr-export: {e}", file=sys.stderr)
        return 2
    print(f"SavedModel written to {out} (sample rate {bundle.features.sample_rate} Hz); signature `serve`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
