"""Former home of `asr-transcribe`, kept so that `python -m asr.transcribe` and `asr.transcribe:main` work."""

import sys

from asr.cli.transcribe import main

if __name__ == "__main__":
    sys.exit(main())
