"""Former home of `asr-train`, kept so that `python -m asr.train` and the old entry point `asr.train:main` work."""

from asr.cli.train import main

if __name__ == "__main__":
    main()
