"""Datasets as lists of utterances: directories of WAV + transcript files, and JSONL manifests."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from asr.data.audio import audio_files
from asr.data.options import DataFormat

log = logging.getLogger(__name__)


class DatasetError(Exception):
    """A dataset description could not be read; the message names the file and the fix."""


@dataclass(frozen=True)
class Utterance:
    """One item: audio (optionally a [start, end) cut in seconds) and its transcript (None: unknown, as for
    files given to asr-transcribe)."""

    audio: Path
    text: str | None = None
    start: float | None = None
    end: float | None = None

    @property
    def key(self) -> str:
        """Stable name for reports and sample listings."""
        if self.start is None and self.end is None:
            return str(self.audio)
        return f"{self.audio}[{self.start or 0:g}:{'' if self.end is None else f'{self.end:g}'}]"


def parse_transcript(text: str) -> str:
    """Transcript file content -> text; TIMIT style `<first sample> <last sample> <text>` loses the numbers.

    The TIMIT sample range spans the utterance within its own file, so the audio is used whole.
    """
    parts = text.strip().split(maxsplit=2)
    if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
        return parts[2]
    return " ".join(text.split())


def read_directory(root: Path) -> list[Utterance]:
    """Every `*.wav` below `root` (sorted) with the transcript in the same-stem `.txt` beside it."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (set data.root / the split path to a dataset folder)")
    items = []
    for wav in audio_files(root):
        txt = wav.with_suffix(".txt")
        if not txt.is_file():
            log.warning("%s: no transcript %s beside it; skipped", wav, txt.name)
            continue
        items.append(Utterance(wav, parse_transcript(txt.read_text(encoding="utf-8", errors="replace"))))
    if not items:
        raise DatasetError(f"{root}: no .wav files with a same-stem .txt transcript found")
    return items


def _optional_seconds(record: dict, key: str, where: str) -> float | None:
    """record[key] as float seconds, or None when absent."""
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or value < 0:
        raise DatasetError(f"{where}: `{key}` must be a non-negative number of seconds, got {value!r}")
    return float(value)


def read_jsonl(manifest: Path, audio_root: Path | None = None) -> list[Utterance]:
    """A JSONL manifest: one object per line with `audio` and `text`; optional `start` / `end` in seconds
    cut the audio. Relative audio paths resolve against `audio_root`, by default the manifest's folder."""
    base = audio_root or manifest.parent
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found (check data.root and the split paths)")
    items = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from e
        if isinstance(record, dict) and "audio" not in record and "audio_filepath" in record:  # NeMo
            record["audio"] = record["audio_filepath"]
        if not isinstance(record, dict) or "audio" not in record or "text" not in record:
            raise DatasetError(f'{where}: each line needs "audio" (or "audio_filepath") and "text", got {line[:80]!r}')
        items.append(
            Utterance(
                audio=(base / record["audio"]).resolve(),
                text=str(record["text"]),
                start=_optional_seconds(record, "start", where),
                end=_optional_seconds(record, "end", where),
            )
        )
    return items


def read_csv(manifest: Path, audio_root: Path | None = None) -> list[Utterance]:
    """A DeepSpeech-style CSV with columns wav_filename, wav_filesize, transcript; paths relative to it."""
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found (check data.root and the split paths)")
    base = audio_root or manifest.parent
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"wav_filename", "transcript"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(
                f"{manifest}: CSV needs the columns wav_filename,wav_filesize,transcript; missing {sorted(missing)}"
            )
        return [Utterance((base / row["wav_filename"]).resolve(), row["transcript"] or "") for row in reader]


# Free Spoken Digit Dataset file names: <digit>_<speaker>_<take>.wav; the transcript is the digit's word.
FSDD_NAME = re.compile(r"(\d)_([A-Za-z]+)_(\d+)\.wav")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# The dataset's own split: takes 0-4 of every speaker and digit are the test set, 5-49 the training set.
FSDD_TEST_TAKES = 5


def read_fsdd(root: Path, holdout_speakers: Sequence[str] = ()) -> tuple[list[Utterance], list[Utterance]]:
    """FSDD recordings -> (train, test): takes 0-4 test, the rest train; held-out speakers go wholly to test."""
    train, test = [], []
    for wav in sorted(root.glob("*.wav")):
        match = FSDD_NAME.fullmatch(wav.name)
        if not match:
            log.warning("%s: not named <digit>_<speaker>_<take>.wav; skipped", wav)
            continue
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        item = Utterance(wav, DIGIT_WORDS[digit])
        (test if take < FSDD_TEST_TAKES or speaker in holdout_speakers else train).append(item)
    if not train and not test:
        raise DatasetError(f"{root}: no FSDD recordings (<digit>_<speaker>_<take>.wav) found")
    return train, test


def detect_format(path: Path) -> DataFormat:
    """jsonl / csv by suffix; a directory of FSDD-named .wav files without transcripts is fsdd; else dir."""
    if path.suffix in (".jsonl", ".csv"):
        return DataFormat(path.suffix[1:])
    if path.is_dir():
        wavs = list(itertools.islice(path.glob("*.wav"), 50))
        if wavs and all(FSDD_NAME.fullmatch(w.name) for w in wavs) and not any(path.glob("*.txt")):
            return DataFormat.fsdd
        return DataFormat.dir
    raise DatasetError(f"{path}: neither a .jsonl / .csv manifest nor a directory")


FORMATS = tuple(f.value for f in DataFormat)


def data_format(fmt: DataFormat | str) -> DataFormat:
    """`fmt` as a DataFormat; DatasetError naming the choices for anything else."""
    try:
        return DataFormat(fmt)
    except ValueError:
        raise DatasetError(f"data.format must be one of {FORMATS}, got {fmt!r}") from None


def read_split(
    root: Path, spec: str, audio_root: Path | None = None, fmt: DataFormat | str = DataFormat.auto
) -> list[Utterance]:
    """A split given as a path relative to `root` (or absolute), read as `fmt` (auto: detected)."""
    path = root / spec
    fmt = data_format(fmt)
    fmt = detect_format(path) if fmt == DataFormat.auto else fmt
    if fmt == "jsonl":
        return read_jsonl(path, audio_root)
    if fmt == "csv":
        return read_csv(path, audio_root)
    if fmt == "dir":
        return read_directory(path)
    if fmt == "fsdd":
        train, test = read_fsdd(path)
        return train + test
    raise AssertionError(f"unhandled data format {fmt}")


def carve(items: list[Utterance], fraction: float) -> tuple[list[Utterance], list[Utterance]]:
    """Split items deterministically (by a hash of folder/file name and cut) into (rest, carved ~fraction).

    The hash ignores where the dataset lives, so a copy elsewhere splits the same way.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"data.valid_fraction must be in (0, 1), got {fraction}")
    threshold = int(fraction * 2**32)

    def carved(u: Utterance) -> bool:
        name = f"{u.audio.parent.name}/{u.audio.name}[{u.start}:{u.end}]"
        return zlib.crc32(name.encode()) < threshold

    return [u for u in items if not carved(u)], [u for u in items if carved(u)]


def load_splits(
    root: Path,
    train: str,
    valid: str,
    test: str,
    valid_fraction: float = 0.0,
    audio_root: Path | None = None,
    fmt: DataFormat | str = DataFormat.auto,
    holdout_speakers: Sequence[str] = (),
) -> dict[str, list[Utterance]]:
    """Train / valid / test utterance lists from config; an empty `valid` is carved out of train.

    A `fmt` other than auto applies to every split; for FSDD (`fmt` fsdd, or detected) train and test come
    from the dataset's own split of `root / train`, and a valid path is detected.
    """
    fmt = data_format(fmt)
    others = DataFormat.auto if fmt in (DataFormat.auto, DataFormat.fsdd) else fmt  # how valid and test are read
    fmt = detect_format(root / train) if fmt == DataFormat.auto else fmt
    if fmt == "fsdd":
        splits = dict(zip(("train", "test"), read_fsdd(root / train, holdout_speakers), strict=True))
    else:
        splits = {"train": read_split(root, train, audio_root, fmt)}
        splits["test"] = read_split(root, test, audio_root, others) if test else []
    if valid:
        splits["valid"] = read_split(root, valid, audio_root, others)
    elif valid_fraction > 0:
        splits["train"], splits["valid"] = carve(splits["train"], valid_fraction)
    else:
        splits["valid"] = []
    return {name: splits[name] for name in ("train", "valid", "test")}


def manifest_sha256(splits: Mapping[str, Sequence[Utterance]]) -> str:
    """SHA-256 over every utterance of every split: split, audio path, file size, segment, transcript."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        for u in splits[name]:
            size = u.audio.stat().st_size if u.audio.is_file() else -1
            digest.update(json.dumps([name, str(u.audio), size, u.start, u.end, u.text]).encode("utf-8"))
    return digest.hexdigest()
