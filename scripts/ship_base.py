"""Ship a finished training run as a model of the project: `python scripts/ship_base.py RUN models/base [--force]`.

Writes RUN's bundle into the target folder with float16 weights (loading restores float32), with RUN's result.json
and provenance.json; refuses an existing target without --force (its MODEL_CARD.md is then kept), a run that has
not finished, and a model above --max-mb. `make base` trains experiment=base and runs this. Prints the `shipped`
record (also in the target's provenance.json) as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from asr.cli._errors import add_debug, run_command
from asr.models import MAX_SHIPPED_MB, ship_model
from asr.system import quiet_tensorflow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (a bad one exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(prog="ship_base.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished training run directory (e.g. runs/base)")
    parser.add_argument("target", type=Path, help="the shipped model's folder (e.g. models/base)")
    parser.add_argument("--force", action="store_true", help="replace an existing target (its MODEL_CARD.md is kept)")
    parser.add_argument(
        "--max-mb", type=float, default=MAX_SHIPPED_MB, help=f"refuse a larger model (default {MAX_SHIPPED_MB:g})"
    )
    add_debug(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Ship the run; exit status 2 and one line on stderr for a user's mistake."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_tensorflow()

    def ship() -> int:
        print(json.dumps(ship_model(args.run, args.target, args.force, args.max_mb), indent=2))
        return 0

    return run_command("ship_base.py", ship, args.debug)


if __name__ == "__main__":
    sys.exit(main())
