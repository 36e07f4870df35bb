"""`asr-sweep-report MULTIRUN_DIR [--out DIR]`: one table of a multirun's jobs (Markdown + CSV) and a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.training.sweep import write_report


def main(argv: list[str] | None = None) -> int:
    """Console entry point `asr-sweep-report MULTIRUN_DIR [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="asr-sweep-report", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (holds one folder per job)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the CSV and PNG (default: sweep_dir)")
    args = parser.parse_args(argv)
    try:
        text, csv_path, png_path = write_report(args.sweep_dir, args.out)
    except FileNotFoundError as error:
        print(f"asr-sweep-report: {error}", file=sys.stderr)
        return 2
    print(text, end="")
    print(f"\nwritten: {csv_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
