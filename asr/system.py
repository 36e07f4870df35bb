"""The machine as the pipeline sees it: usable CPUs, and TensorFlow's start-up noise kept off the console."""

from __future__ import annotations

import os
import time
from pathlib import Path

# The repository root when running from a source checkout (conf/ and data/ beside the package).
SOURCE_ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ log threshold: 3 hides its start-up and kernel-choice lines (oneDNN, cpu_feature_guard),
# which are not errors of the run (those reach Python as exceptions). A value the user set is kept.
TF_CPP_LOG_LEVEL = "3"


def usable_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up lines off the console (call before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_LOG_LEVEL)


_IMPORTED = time.time()


def process_started() -> float:
    """Wall-clock time (time.time()) this process started: from /proc on Linux, else when this module was
    imported (which is early in every command)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time in clock ticks after boot
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED
