"""Former home of `asr-prepare`, kept so that `python -m asr.prepare` and `asr.prepare:main` work."""

from asr.cli.prepare import main

if __name__ == "__main__":
    main()
