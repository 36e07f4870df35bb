"""provenance.json: what produced a run (command, code version, library versions, data, machine, times)."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from asr.files import atomic_write_text
from asr.system import usable_cpus

PROVENANCE_FILE = "provenance.json"
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "hydra-core", "omegaconf", "numpy", "scipy")


def now() -> str:
    """Local time, ISO 8601 with the UTC offset."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def git_state(folder: Path) -> dict:
    """{"commit", "dirty"} of the git checkout holding `folder`; nulls when it is not one (or git is missing)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def versions() -> dict:
    """Python and the versions of the libraries that decide the numbers (those installed)."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def collect(overrides: Sequence[str], source: Path, dataset_sha256: str | None) -> dict:
    """The provenance of a run starting now (`ended` is filled in by `finish`)."""
    return {
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "overrides": list(overrides),
        "git": git_state(source),
        "versions": versions(),
        "dataset_sha256": dataset_sha256,
        "host": {"name": socket.gethostname(), "platform": platform.platform(), "cpus": usable_cpus()},
        "started": now(),
        "ended": None,
    }


def start(run_dir: Path, record: dict) -> None:
    """Write provenance.json for a run starting now; the records of earlier invocations in the same run
    directory (a resumed run) are kept, oldest first, under `previous`."""
    path = run_dir / PROVENANCE_FILE
    record["previous"] = []
    if path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
            record["previous"] = [*earlier.pop("previous", []), earlier]
        except (OSError, ValueError, AttributeError):
            record["previous"] = []
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def finish(run_dir: Path, record: dict) -> None:
    """Stamp the end time into provenance.json."""
    record["ended"] = now()
    atomic_write_text(run_dir / PROVENANCE_FILE, json.dumps(record, indent=2) + "\n")
