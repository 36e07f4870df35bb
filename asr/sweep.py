"""Former home of `asr-sweep-report` and of the status callback, kept so that `asr.sweep:main` and configs
naming `asr.sweep.RecordStatus` (earlier multirun directories) work."""

import sys

from asr.cli.callbacks import RecordStatus
from asr.cli.sweep_report import main

__all__ = ["RecordStatus", "main"]

if __name__ == "__main__":
    sys.exit(main())
