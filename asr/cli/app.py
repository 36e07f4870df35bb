"""What the Hydra commands (asr-train, asr-prepare) share: registering the schema, a quiet TensorFlow, their
help page, and running the Hydra app on an explicit argument list (for tests) as on the real command line."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import string
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from asr.config import register
from asr.errors import user_message
from asr.system import quiet_tensorflow
from asr.training.state import STATUS_FILE

HELP_FLAGS = ("--help", "-h")
# conf/hydra/launcher/submitit_{local,slurm}.yaml share their names with the submitit plugin's structured
# configs, so Hydra checks each against the plugin's schema (a mistyped launcher key fails) and warns that
# this matching is deprecated; the check is wanted, the warning is noise.
SCHEMA_MATCHING_WARNING = r"(?s).*validated against ConfigStore schema with the same name"


def config_groups() -> str:
    """`group: option, option` per config group of the shipped configs (Hydra's own groups left out)."""
    root = resources.files("asr.conf")
    groups = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("hydra", "__pycache__"))
    lines = []
    for group in groups:
        options = sorted(p.name.removesuffix(".yaml") for p in group.iterdir() if p.name.endswith(".yaml"))
        lines.append(f"{group.name}: {', '.join(options)}")
    return "\n".join(lines)


def help_page(name: str) -> str:
    """The help page of a command from conf/hydra/help/<name>.yaml, rendered as Hydra renders it, without
    composing the whole config first (Hydra's --help takes a second for that)."""
    import yaml

    page = yaml.safe_load(resources.files("asr.conf").joinpath("hydra", "help", f"{name}.yaml").read_text())
    text = page["template"].replace("${hydra.help.header}", page["header"])
    text = text.replace("${hydra.help.footer}", page["footer"])
    return string.Template(text).safe_substitute(APP_CONFIG_GROUPS=config_groups())


def run_hydra_app(
    app: Callable[[], Any], prog: str, argv: Sequence[str] | None, help_name: str, extra: Sequence[str] = ()
) -> None:
    """Run a @hydra.main app as `prog *extra *argv` (argv None: the process's own arguments); --help prints
    the command's help page."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(a in HELP_FLAGS for a in arguments):
        print(help_page(help_name))
        return
    register()
    quiet_tensorflow()
    warnings.filterwarnings("ignore", message=SCHEMA_MATCHING_WARNING)
    saved = sys.argv
    sys.argv = [prog, *arguments, *extra]  # Hydra reads its arguments from sys.argv (overrides after -m)
    try:
        app()
    except BaseException as error:  # Hydra ends a failed run with SystemExit; HYDRA_FULL_ERROR=1 with the error
        if not isinstance(error, SystemExit) or error.code not in (None, 0):
            remove_failed_runs()
        raise
    finally:
        sys.argv = saved
        NEW_RUN_DIRS.clear()


@dataclass(frozen=True)
class NewRunDir:
    """The directory of a single run that did not exist before the run, and the topmost folder the run created."""

    path: Path
    top: Path
    log: str  # the name of the job's log file (Hydra's `<job name>.log`)

    def holds_nothing_of_value(self) -> bool:
        """Whether the directory holds only what Hydra writes before the task starts (its config and the log)
        and the status of a failed job."""
        return {p.name for p in self.path.iterdir()} <= {".hydra", self.log, STATUS_FILE}


# The new run directories of this process's single run (noted by asr.cli.callbacks.NoteNewRunDir before Hydra
# creates them; remove_failed_runs reads them).
NEW_RUN_DIRS: list[NewRunDir] = []


def remove_failed_runs() -> None:
    """Remove the directory of a single run that failed before writing anything of value, if the run created it
    (asr.cli.callbacks.NoteNewRunDir), and the empty folders it created above it: a failed configuration leaves
    no folder for `ls -d runs/<name>/*/ | tail -1` to pick."""
    for run in NEW_RUN_DIRS:
        if not run.path.is_dir() or not run.holds_nothing_of_value():
            continue
        shutil.rmtree(run.path, ignore_errors=True)
        folder = run.path.parent
        while folder != run.top.parent and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


@contextlib.contextmanager
def one_line_errors(prog: str) -> Iterator[None]:
    """Inside a Hydra task: a user's mistake (asr.errors.UserError, an unwritable disk) ends the command with
    one line on stderr and exit status 2, an interruption with its message and 128 + the signal number. In a
    multirun, or with HYDRA_FULL_ERROR=1, the error goes on to Hydra (recorded per job, or with its
    traceback)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        yield
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or asr.training.callbacks.Interrupted
        print(f"{prog}: {interrupt or 'interrupted'}", file=sys.stderr)
        sys.exit(128 + getattr(interrupt, "signum", signal.SIGINT))
    except Exception as error:
        message = user_message(error)
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if message is None or multirun or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
