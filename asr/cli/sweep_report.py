"""`asr-sweep-report MULTIRUN_DIR [--out DIR]`: one table of a multirun's jobs (Markdown + CSV) and a plot."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.cli._errors import add_debug, existing, run_command
from asr.errors import UserError
from asr.training.sweep import write_sweep_report

SWEEP_FIX = "pass a multirun directory (hydra.sweep.dir, e.g. multirun/<name>/<date>_<time>)"


def main(argv: list[str] | None = None) -> int:
    """Console entry point `asr-sweep-report MULTIRUN_DIR [--out DIR]`; exit status 2 (one line on stderr) for a
    missing or empty multirun directory or an unwritable --out."""
    parser = argparse.ArgumentParser(prog="asr-sweep-report", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (holds one folder per job)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the CSV and PNG (default: sweep_dir)")
    add_debug(parser)
    args = parser.parse_args(argv)
    return run_command("asr-sweep-report", lambda: report(args.sweep_dir, args.out), args.debug)


def report(sweep_dir: Path, out: Path | None) -> int:
    """Print the table and write the CSV and the plot; a UserError for a sweep_dir that is not a multirun."""
    if not existing(sweep_dir, SWEEP_FIX).is_dir():
        raise UserError(f"{sweep_dir}: not a directory; {SWEEP_FIX}")
    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"{out}: not a directory; pass a directory (new or existing) as --out")
    try:
        text, csv_path, png_path = write_sweep_report(sweep_dir, out)
    except FileNotFoundError as error:  # no job directories in it
        raise UserError(str(error)) from error
    print(text, end="")
    print(f"\nwritten: {csv_path}, {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
