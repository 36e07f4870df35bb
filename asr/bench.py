"""Former home of `asr-bench`, kept so that `python -m asr.bench` and `asr.bench:main` work."""

import sys

from asr.cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
