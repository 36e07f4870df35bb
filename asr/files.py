"""Atomic file writes: a reader (or a resumed run) sees the old file or the whole new one, never a part; folders
are staged beside their place and renamed into it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path, write: Callable[[BinaryIO], None], sync: bool = True) -> None:
    """Call write(file) on a temporary file beside `path`, sync it to disk (unless sync=False: a cache entry),
    then rename it to `path`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as f:
            write(f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(temporary, path)
    except OSError as error:
        if error.filename is None:  # a failed write names no file: name the one being written
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str, sync: bool = True) -> None:
    """atomic_write of a UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")), sync)


def staging_folder(target: Path) -> Path:
    """The path of a folder beside `target` (hidden, named for this process) to write a new `target` into before
    replace_folder puts it in place; what a killed earlier process of the same id left there is removed. The
    folder itself is not made."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def replace_folder(staging: Path, target: Path) -> None:
    """Put the folder `staging` in place of `target`: an existing `target` is renamed aside first and removed once
    the new one is in place, so that `target` is never a half-written folder."""
    if target.exists():
        retired = target.with_name(f".{target.name}.{os.getpid()}.old")
        target.rename(retired)
        staging.rename(target)
        shutil.rmtree(retired)
    else:
        staging.rename(target)
