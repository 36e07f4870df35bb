"""Atomic file writes: a reader (or a resumed run) sees the old file or the whole new one, never a part."""

from __future__ import annotations

import os
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
