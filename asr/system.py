"""The machine as the pipeline sees it: usable CPUs, and TensorFlow's start-up noise kept off the console."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

# The repository root when running from a source checkout (conf/ and data/ beside the package).
SOURCE_ROOT = Path(__file__).resolve().parent.parent

# TensorFlow's C++ log threshold: 3 hides its start-up and kernel-choice lines (oneDNN, cpu_feature_guard),
# which are not errors of the run (those reach Python as exceptions). A value the user set is kept.
TF_CPP_LOG_LEVEL = "3"
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends (linux/prctl.h)


def usable_cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def die_with_parent(parent: int) -> None:
    """Ask the OS to end this process when its parent (process id `parent`) ends (Linux; elsewhere nothing): the
    initializer of worker processes, so that a command killed while its workers run leaves none behind."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # no prctl to call: the worker ends as the pool's pipes close instead
        return
    if os.getppid() != parent:  # the parent ended before the request was made
        os._exit(1)


def quiet_tensorflow() -> None:
    """Keep TensorFlow's C++ start-up lines off the console: its log level, and its import (whenever it comes)
    with the standard error stream held aside, since TensorFlow 2.21 logs "oneDNN custom operations are on"
    and absl's "All log messages before absl::InitializeLog()" before any level applies. What the import wrote
    there is written back if it fails. Call before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_LOG_LEVEL)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` once, as the other finders do, and loads it with file descriptor 2 held aside."""

    def find_spec(self, name: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    """A module loader whose exec_module runs with the process's stderr (fd 2) going to a temporary file."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                self.inner.exec_module(module)
            except BaseException:
                os.dup2(saved, 2)
                held.seek(0)
                sys.stderr.write(held.read().decode("utf-8", "replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)


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
