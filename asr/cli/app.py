"""What the Hydra commands (asr-train, asr-prepare) share: registering the schema, a quiet TensorFlow, and
running the Hydra app on an explicit argument list (for tests) as on the real command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from asr.config import register
from asr.system import quiet_tensorflow


def run_hydra_app(app: Callable[[], Any], prog: str, argv: Sequence[str] | None, extra: Sequence[str] = ()) -> None:
    """Run a @hydra.main app as `prog *extra *argv` (argv None: the process's own arguments)."""
    register()
    quiet_tensorflow()
    arguments = list(sys.argv[1:] if argv is None else argv)
    saved = sys.argv
    sys.argv = [prog, *extra, *arguments]  # Hydra reads its arguments from sys.argv
    try:
        app()
    finally:
        sys.argv = saved
