"""Datasets as lists of utterances: folders of audio + transcript files (TIMIT too), JSONL and CSV manifests,
FSDD, LibriSpeech and Common Voice as they are distributed."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import os
import re
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.data.audio import AUDIO_SUFFIXES, audio_files
from asr.data.options import DataFormat, split_paths
from asr.errors import UserError

log = logging.getLogger(__name__)


class DatasetError(UserError):
    """A dataset description could not be read; the message names the file and the fix."""


# What a reader found wrong with one item (kind, reason); the item is then reported, never trained on.
MISSING_TRANSCRIPT = "missing_transcript"
TRANSCRIPT_NOT_UTF8 = "transcript_not_utf8"
MISSING_AUDIO = "missing_audio"


@dataclass(frozen=True)
class Utterance:
    """One item: audio (optionally a [start, end) cut in seconds) and its transcript (None: unknown, as for
    files given to asr-transcribe)."""

    audio: Path
    text: str | None = None
    start: float | None = None
    end: float | None = None
    speaker: str | None = None  # where the corpus says (FSDD, LibriSpeech, Common Voice's client_id, JSONL `speaker`)
    problem: tuple[str, str] | None = None  # (kind, reason) when the reader found the item unusable
    # the split path it was read from (data.train=[a,b]: a or b), for per-corpus figures
    source: str = field(default="", compare=False)

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


# Transcript files beside an audio file, by preference: plain text (TIMIT's .TXT holds `<first> <last> <text>`),
# then TIMIT's word alignment (.WRD: `<first> <last> <word>` per line).
TEXT_SUFFIXES = (".txt", ".TXT")
WORD_SUFFIXES = (".wrd", ".WRD")


def decode_utf8(data: bytes, where: str | Path) -> str:
    """UTF-8 bytes as text (a leading byte-order mark dropped); DatasetError naming `where`, the byte offset
    and the fix when they are not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(
            f"{where}: not UTF-8 text (byte {e.start}, line {line}: 0x{data[e.start]:02x}); "
            f"save it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def read_text(path: Path) -> str:
    """A text file's content, strictly UTF-8 (DatasetError naming the byte offset otherwise)."""
    return decode_utf8(path.read_bytes(), path)


def transcript_beside(audio: Path) -> str | None:
    """The transcript in a same-stem file beside `audio` (.txt, or TIMIT's .TXT / .WRD), or None."""
    for suffix in TEXT_SUFFIXES:
        if (path := audio.with_suffix(suffix)).is_file():
            return parse_transcript(read_text(path))
    for suffix in WORD_SUFFIXES:
        if (path := audio.with_suffix(suffix)).is_file():
            return " ".join(line.split()[2] for line in read_text(path).splitlines() if len(line.split()) >= 3)
    return None


def read_directory(root: Path) -> list[Utterance]:
    """Every audio file below `root` (sorted) with its transcript in a same-stem `.txt` beside it (TIMIT: its
    SPHERE `.WAV` files with `.TXT`, or `.WRD` word alignments)."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (set data.root / the split path to a dataset folder)")
    items = []
    for audio in audio_files(root):
        try:
            text = transcript_beside(audio)
        except DatasetError as e:
            items.append(Utterance(audio, problem=(TRANSCRIPT_NOT_UTF8, str(e))))
            continue
        if text is None:
            reason = f"no transcript {audio.with_suffix('.txt').name} beside it; add one or remove the audio file"
            items.append(Utterance(audio, problem=(MISSING_TRANSCRIPT, reason)))
            continue
        items.append(Utterance(audio, text))
    if all(item.problem and item.problem[0] == MISSING_TRANSCRIPT for item in items):
        raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_SUFFIXES)}) with a same-stem .txt transcript")
    return items


def _optional_seconds(record: dict, key: str, where: str) -> float | None:
    """record[key] as float seconds, or None when absent."""
    value = record.get(key)
    if value is None:
        return None
    # Not true/false, NaN, Infinity, or an integer too large for a float (json.loads reads all of them).
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= sys.float_info.max:
        raise DatasetError(f"{where}: `{key}` must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _path_text(value: object, where: str, key: str) -> str:
    """A manifest's audio path as given; DatasetError naming `where` for anything else (a number, null, a list, a
    missing CSV field, a NUL character, a lone surrogate such as JSON's "\\ud800", which no file name holds)."""
    if isinstance(value, str) and "\x00" not in value:
        try:
            os.fsencode(value)
            return value
        except UnicodeEncodeError:
            pass
    raise DatasetError(f"{where}: `{key}` must be the path of an audio file, got {value!r}")


def read_jsonl(manifest: Path, audio_root: Path | None = None) -> list[Utterance]:
    """A JSONL manifest: one object per line with `audio` and `text`; optional `start` / `end` in seconds
    cut the audio; an optional `speaker` names who speaks (per-speaker test figures). Relative audio paths
    resolve against `audio_root`, by default the manifest's folder."""
    base = audio_root or manifest.parent
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found (check data.root and the split paths)")
    items = []
    # Lines end at \n only: splitlines() would also split at U+2028 or NEL, which JSON strings may hold.
    for number, line in enumerate(read_text(manifest).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{manifest}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where}: not valid JSON ({e.msg}); each line must be one JSON object") from e
        except RecursionError:  # nested deeper than the interpreter's recursion limit
            raise DatasetError(
                f"{where}: not valid JSON (nested too deeply); each line must be one JSON object"
            ) from None
        if isinstance(record, dict) and "audio" not in record and "audio_filepath" in record:  # NeMo
            record["audio"] = record["audio_filepath"]
        if not isinstance(record, dict) or "audio" not in record or "text" not in record:
            raise DatasetError(f'{where}: each line needs "audio" (or "audio_filepath") and "text", got {line[:80]!r}')
        items.append(
            Utterance(
                audio=(base / _path_text(record["audio"], where, "audio")).resolve(),
                text=None if record["text"] is None else str(record["text"]),  # null: reported as missing
                start=_optional_seconds(record, "start", where),
                end=_optional_seconds(record, "end", where),
                speaker=None if record.get("speaker") is None else str(record["speaker"]),
            )
        )
    return items


def read_csv(manifest: Path, audio_root: Path | None = None) -> list[Utterance]:
    """A DeepSpeech-style CSV with columns wav_filename, wav_filesize, transcript; paths relative to it."""
    if not manifest.is_file():
        raise DatasetError(f"{manifest}: manifest not found (check data.root and the split paths)")
    base = audio_root or manifest.parent
    with io.StringIO(read_text(manifest), newline="") as f:
        reader = csv.DictReader(f)
        try:
            missing = {"wav_filename", "transcript"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(
                    f"{manifest}: CSV needs the columns wav_filename,wav_filesize,transcript; missing {sorted(missing)}"
                )
            return [
                Utterance(
                    (base / _path_text(row["wav_filename"], f"{manifest}:{reader.line_num}", "wav_filename")).resolve(),
                    row["transcript"] or "",
                )
                for row in reader
            ]
        except csv.Error as e:  # e.g. a field beyond the csv module's size limit
            raise DatasetError(f"{manifest}:{reader.line_num}: not a readable CSV file ({e})") from None


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
            reason = "not named <digit>_<speaker>_<take>.wav, so its digit is unknown; rename or remove it"
            train.append(Utterance(wav, problem=(MISSING_TRANSCRIPT, reason)))
            continue
        digit, speaker, take = int(match[1]), match[2], int(match[3])
        item = Utterance(wav, DIGIT_WORDS[digit], speaker=speaker)
        (test if take < FSDD_TEST_TAKES or speaker in holdout_speakers else train).append(item)
    if not any(u.problem is None for u in train + test):
        raise DatasetError(f"{root}: no FSDD recordings (<digit>_<speaker>_<take>.wav) found")
    return train, test


# LibriSpeech: <speaker>/<chapter>/<speaker>-<chapter>.trans.txt, one "<utterance id> <TEXT>" per line, the
# audio beside it as <utterance id>.flac.
LIBRISPEECH_TRANSCRIPTS = "*/*/*.trans.txt"


def read_librispeech(root: Path) -> list[Utterance]:
    """Every utterance of a LibriSpeech subset folder (e.g. train-clean-100), speakers from the folder names."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (set data.root / the split path to a LibriSpeech subset)")
    items = []
    for listing in sorted(root.glob(LIBRISPEECH_TRANSCRIPTS)):
        speaker = listing.parent.parent.name
        for number, line in enumerate(read_text(listing).splitlines(), 1):
            if not line.strip():
                continue
            key, _, text = line.partition(" ")
            audio = _sibling_audio(listing.parent / key)
            if audio is None:
                reason = f"{listing}:{number}: no audio file {key}.flac beside it; add it or remove the line"
                flac = listing.parent / f"{key}.flac"
                items.append(Utterance(flac, text.strip(), speaker=speaker, problem=(MISSING_AUDIO, reason)))
                continue
            items.append(Utterance(audio, text.strip(), speaker=speaker))
    if not any(u.problem is None for u in items):
        raise DatasetError(f"{root}: no LibriSpeech transcripts ({LIBRISPEECH_TRANSCRIPTS}) with audio found")
    return items


def _sibling_audio(stem: Path) -> Path | None:
    """The audio file `stem`.<audio suffix> (FLAC first, any case), if there is one."""
    for suffix in (".flac", *AUDIO_SUFFIXES):
        for candidate in (stem.with_name(stem.name + suffix), stem.with_name(stem.name + suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


# Common Voice: <language>/{train,dev,test,validated}.tsv with client_id, path and sentence columns; the
# clips in <language>/clips/.
COMMONVOICE_SPLIT_FILES = ("train.tsv", "validated.tsv")
COMMONVOICE_COLUMNS = ("client_id", "path", "sentence")


def read_commonvoice(path: Path) -> list[Utterance]:
    """A Common Voice TSV (or a language folder: its train.tsv, else validated.tsv); client_id is the speaker."""
    if path.is_dir():
        listing = next((path / name for name in COMMONVOICE_SPLIT_FILES if (path / name).is_file()), None)
        if listing is None:
            raise DatasetError(f"{path}: no {' or '.join(COMMONVOICE_SPLIT_FILES)} (a Common Voice language folder)")
        path = listing
    if not path.is_file():
        raise DatasetError(f"{path}: Common Voice TSV not found (check data.root and the split paths)")
    clips = path.parent / "clips"
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            missing = set(COMMONVOICE_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(
                    f"{path}: a Common Voice TSV needs the columns {', '.join(COMMONVOICE_COLUMNS)}; "
                    f"missing {sorted(missing)}"
                )
            return [
                Utterance(
                    clips / _path_text(row["path"], f"{path}:{reader.line_num}", "path"),
                    row["sentence"] or "",
                    speaker=row["client_id"],
                )
                for row in reader
            ]
        except csv.Error as e:  # e.g. a field beyond the csv module's size limit
            raise DatasetError(f"{path}:{reader.line_num}: not a readable TSV file ({e})") from None


def detect_format(path: Path) -> DataFormat:
    """jsonl / csv / commonvoice (.tsv) by suffix; a folder with LibriSpeech transcripts is librispeech, one with
    a Common Voice TSV and clips/ is commonvoice, one of FSDD-named .wav files without transcripts is fsdd;
    other folders are dir."""
    if path.suffix in (".jsonl", ".csv"):
        return DataFormat(path.suffix[1:])
    if path.suffix == ".tsv":
        return DataFormat.commonvoice
    if path.is_dir():
        if next(path.glob(LIBRISPEECH_TRANSCRIPTS), None) is not None:
            return DataFormat.librispeech
        if (path / "clips").is_dir() and any((path / name).is_file() for name in COMMONVOICE_SPLIT_FILES):
            return DataFormat.commonvoice
        wavs = list(itertools.islice(path.glob("*.wav"), 50))
        if wavs and all(FSDD_NAME.fullmatch(w.name) for w in wavs) and not any(path.glob("*.txt")):
            return DataFormat.fsdd
        return DataFormat.dir
    raise DatasetError(f"{path}: neither a .jsonl / .csv / .tsv manifest nor a directory")


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
    if fmt == "librispeech":
        return read_librispeech(path)
    if fmt == "commonvoice":
        return read_commonvoice(path)
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
    train: str | Sequence[str],
    valid: str | Sequence[str],
    test: str | Sequence[str],
    valid_fraction: float = 0.0,
    audio_root: Path | None = None,
    fmt: DataFormat | str = DataFormat.auto,
    holdout_speakers: Sequence[str] = (),
) -> dict[str, list[Utterance]]:
    """Train / valid / test utterance lists from config; an empty `valid` is carved out of train. A split given
    as several paths is their utterances joined, each read with its own format detection and marked with its
    path (Utterance.source).

    A `fmt` other than auto applies to every split; for FSDD (`fmt` fsdd, or detected, on a single training
    path) train and test come from the dataset's own split of `root / train`, and a valid path is detected.
    """
    fmt = data_format(fmt)
    others = DataFormat.auto if fmt in (DataFormat.auto, DataFormat.fsdd) else fmt  # how valid and test are read

    def split(name: str, spec: str | Sequence[str], how: DataFormat) -> list[Utterance]:
        items = []
        for path in split_paths(spec):
            try:
                part = read_split(root, path, audio_root, how)
            except DatasetError as e:  # name the key the user sets
                raise DatasetError(f"data.{name}={path} (data.format={how.value}): {e}") from None
            items += [dataclasses.replace(u, source=path) for u in part]
        return items

    several = len(split_paths(train)) > 1
    if fmt == DataFormat.auto and not several:
        try:
            fmt = detect_format(root / train)
        except DatasetError as e:
            raise DatasetError(f"data.train={train}: {e}") from None
    if fmt == "fsdd" and not several:
        splits = {
            name: [dataclasses.replace(u, source=train) for u in items]
            for name, items in zip(("train", "test"), read_fsdd(root / train, holdout_speakers), strict=True)
        }
    else:
        splits = {"train": split("train", train, fmt)}
        splits["test"] = split("test", test, others) if test else []
    if valid:
        splits["valid"] = split("valid", valid, others)
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
