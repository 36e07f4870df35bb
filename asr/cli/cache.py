"""`asr-cache {info,prune}`: what the feature cache holds, and removing its least recently used entries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from asr.cli._errors import add_debug, existing, run_command

BYTES_PER_GB = 1e9


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (a bad or missing argument exits with status 2 and the reason)."""
    parser = argparse.ArgumentParser(
        prog="asr-cache",
        description="The feature cache that asr-train and asr-prepare fill (entries keyed by audio content and "
        "feature settings; a removed entry is only computed again when next needed).",
    )
    parser.add_argument("--dir", help="cache folder (default: data.cache_dir's default, $XDG_CACHE_HOME/asr)")
    add_debug(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="entries and size")
    prune = commands.add_parser("prune", help="remove entries, least recently used first")
    prune.add_argument("--max-gb", type=float, help="keep at most this many GB (10^9 bytes)")
    prune.add_argument("--older-than-days", type=float, help="remove entries unused for this many days")
    args = parser.parse_args(argv)
    if args.command == "prune" and args.max_gb is None and args.older_than_days is None:
        parser.error("prune needs --max-gb and/or --older-than-days")
    if args.command == "prune" and min(x for x in (args.max_gb, args.older_than_days) if x is not None) < 0:
        parser.error("--max-gb and --older-than-days must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point `asr-cache`."""
    args = parse_args(argv)
    return run_command("asr-cache", lambda: cache_command(args), args.debug)


def cache_command(args: argparse.Namespace) -> int:
    """Print the cache's usage, pruning it first for `prune`."""
    from asr.data.extraction import cache_usage, default_cache_dir, prune_cache

    directory = existing(Path(args.dir), "pass the folder given as data.cache_dir") if args.dir else default_cache_dir()
    if args.command == "prune":
        max_bytes = None if args.max_gb is None else int(args.max_gb * BYTES_PER_GB)
        removed = prune_cache(directory, max_bytes, args.older_than_days)
        print(f"removed {removed.entries} entries ({removed.bytes / BYTES_PER_GB:.3f} GB)")
    usage = cache_usage(directory)
    print(f"{directory}: {usage.entries} entries, {usage.bytes / BYTES_PER_GB:.3f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
