"""The project's error for a user's mistake, and the one-line message a command prints for it."""

from __future__ import annotations

import errno

# OS errors that mean "this place cannot be written": a full disk or quota, a read-only or forbidden folder.
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EDQUOT: "disk quota exceeded",
}


class UserError(Exception):
    """A mistake in what the user gave (a config value, a data description, a file): the message names the key
    or path, the problem and the fix. Commands print it as one line, without a traceback."""


def user_message(error: BaseException) -> str | None:
    """The one-line message for a user's mistake or an unwritable disk, or None for a bug (show the traceback)."""
    if isinstance(error, UserError):
        return str(error)
    if isinstance(error, OSError) and error.errno in _WRITE_ERRORS:
        where = error.filename or "a file"
        return (
            f"cannot write {where}: {_WRITE_ERRORS[error.errno]}; free space or choose a writable place "
            f"(hydra.run.dir=... for asr-train); files written before are intact"
        )
    return None
