"""One-line errors for the argparse commands (asr-transcribe, asr-export, asr-sweep-report, asr-bench): a user's
mistake ends the command with `<prog>: error: <message>` on stderr and exit status 2, a bug with its traceback;
`--debug` shows the traceback of a mistake too. Nothing heavy is imported here (`--help` stays fast)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from asr.errors import UserError, user_message

USAGE_ERROR = 2  # the exit status of a user's mistake, as argparse's for a bad argument
MODEL_FIX = "pass a training run directory or its model/ folder as MODEL"  # for a MODEL path that does not exist


def add_debug(parser: argparse.ArgumentParser) -> None:
    """The --debug option: the full traceback of a user's mistake instead of its one line."""
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the full traceback instead of a one-line message"
    )


def one_line(message: str) -> str:
    """message on one line (a wrapped library message keeps its words, its line breaks become spaces)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def run_command(prog: str, work: Callable[[], int], debug: bool = False) -> int:
    """work()'s exit status; for a user's mistake or an unwritable disk (asr.errors.user_message), one line on
    stderr and 2, or the exception itself with debug. Any other exception (a bug) propagates unchanged."""
    try:
        return work()
    except Exception as error:
        message = user_message(error)
        if message is None or debug:
            raise
        print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
        return USAGE_ERROR


def existing(path: Path, fix: str) -> Path:
    """path, or a UserError naming it when nothing is there; fix says what to pass instead."""
    if not path.exists():
        raise UserError(f"{path}: no such file or directory; {fix}")
    return path
