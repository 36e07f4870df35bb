"""Former home of `asr-export`, kept so that `python -m asr.export` and `asr.export:main` work."""

import sys

from asr.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
