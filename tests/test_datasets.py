import csv
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import write_wav
from hypothesis import example, given
from hypothesis import strategies as st

from asr.data.audio import AUDIO_SUFFIXES, load_audio
from asr.data.datasets import (
    MISSING_TRANSCRIPT,
    TRANSCRIPT_NOT_UTF8,
    DatasetError,
    Utterance,
    carve,
    detect_format,
    load_splits,
    parse_transcript,
    read_commonvoice,
    read_csv,
    read_directory,
    read_jsonl,
)


def test_timit_and_plain_transcripts():
    assert parse_transcript("0 46797 She had your dark suit in greasy wash water all year.\n") == (
        "She had your dark suit in greasy wash water all year."
    )
    assert parse_transcript("  seven   two\n") == "seven two"
    assert parse_transcript("2 cats") == "2 cats"


def test_directory_reader(tmp_path):
    for name, text in [("b/one", "0 100 one two"), ("a/two", "three")]:
        write_wav(tmp_path / f"{name}.wav", 8000, np.zeros(800, np.int16))
        (tmp_path / f"{name}.txt").write_text(text)
    write_wav(tmp_path / "orphan.wav", 8000, np.zeros(800, np.int16))  # no transcript: listed with the problem
    write_wav(tmp_path / "latin1.wav", 8000, np.zeros(800, np.int16))
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 au lait".encode("latin-1"))
    items = read_directory(tmp_path)
    assert [(u.audio.name, u.text) for u in items if not u.problem] == [("two.wav", "three"), ("one.wav", "one two")]
    problems = {u.audio.name: u.problem for u in items if u.problem}
    assert problems["orphan.wav"] == (
        "missing_transcript",
        "no transcript orphan.txt beside it; add one or remove the audio file",
    )
    kind, reason = problems["latin1.wav"]
    assert (
        kind == "transcript_not_utf8"
        and "latin1.txt: not UTF-8 text (byte 3, line 1: 0xe9); save it as UTF-8" in reason
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        read_directory(tmp_path / "empty")


def test_jsonl_relative_paths_and_cuts(tmp_path):
    (tmp_path / "sub").mkdir()
    manifest = tmp_path / "sub" / "m.jsonl"
    lines = [{"audio": "x.wav", "text": "a"}, {"audio": "x.wav", "text": "b", "start": 0.5, "end": 1.25}]
    manifest.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    items = read_jsonl(manifest)
    assert items[0] == Utterance(tmp_path / "sub" / "x.wav", "a")
    assert (items[1].start, items[1].end) == (0.5, 1.25)
    assert items[1].key.endswith("x.wav[0.5:1.25]")
    assert read_jsonl(manifest, audio_root=tmp_path / "audio")[0].audio == tmp_path / "audio" / "x.wav"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"m\.jsonl:1: not valid JSON"),
        ('{"audio": "x.wav"}', r'm\.jsonl:1: each line needs "audio" \(or "audio_filepath"\) and "text"'),
        ('{"audio": "x.wav", "text": "a", "start": -1}', r"`start` must be a non-negative number"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path, line, message):
    (tmp_path / "m.jsonl").write_text(line + "\n")
    with pytest.raises(DatasetError, match=message):
        read_jsonl(tmp_path / "m.jsonl")


def test_splits_and_deterministic_carving(tmp_path):
    manifest = tmp_path / "all.jsonl"
    manifest.write_text("".join(json.dumps({"audio": f"{i}.wav", "text": "a"}) + "\n" for i in range(200)))
    splits = load_splits(tmp_path, "all.jsonl", "", "", valid_fraction=0.2)
    again = load_splits(tmp_path, "all.jsonl", "", "", valid_fraction=0.2)
    assert splits == again
    assert 20 < len(splits["valid"]) < 60 and len(splits["train"]) + len(splits["valid"]) == 200
    assert not {u.key for u in splits["train"]} & {u.key for u in splits["valid"]}
    assert splits["test"] == []
    with pytest.raises(ValueError, match="valid_fraction"):
        carve(splits["train"], 1.5)


def test_csv_and_nemo_manifests(tmp_path):
    (tmp_path / "m.csv").write_text("wav_filename,wav_filesize,transcript\nclips/a.wav,100,hello there\n")
    (tmp_path / "n.jsonl").write_text('{"audio_filepath": "b.wav", "text": "hi", "duration": 1.0}\n')
    splits = load_splits(tmp_path, "m.csv", "", "n.jsonl")
    assert splits["train"] == [Utterance(tmp_path / "clips" / "a.wav", "hello there")]
    assert splits["test"] == [Utterance(tmp_path / "b.wav", "hi")]
    (tmp_path / "bad.csv").write_text("path,text\nx.wav,y\n")
    with pytest.raises(DatasetError, match="CSV needs the columns wav_filename,wav_filesize,transcript"):
        load_splits(tmp_path, "bad.csv", "", "")


def test_fsdd_official_split_and_speaker_holdout(tmp_path):
    for digit, speaker, take in [(0, "ann", 0), (1, "ann", 4), (2, "ann", 5), (3, "bob", 49), (9, "bob", 2)]:
        write_wav(tmp_path / f"{digit}_{speaker}_{take}.wav", 8000, np.zeros(800, np.int16))
    assert detect_format(tmp_path) == "fsdd"
    splits = load_splits(tmp_path, ".", "", "")
    assert sorted(u.audio.name for u in splits["test"]) == ["0_ann_0.wav", "1_ann_4.wav", "9_bob_2.wav"]
    assert sorted((u.audio.name, u.text) for u in splits["train"]) == [
        ("2_ann_5.wav", "two"),
        ("3_bob_49.wav", "three"),
    ]
    held = load_splits(tmp_path, ".", "", "", holdout_speakers=["bob"])
    assert [u.audio.name for u in held["train"]] == ["2_ann_5.wav"]
    (tmp_path / "2_ann_5.txt").write_text("two")
    assert detect_format(tmp_path) == "dir"  # transcripts beside the audio: a plain directory dataset


def _tone(path, rate: int = 16000, seconds: float = 0.4, **kwargs) -> None:
    """A short tone written by soundfile in the format its suffix (or kwargs) says."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), rate, **kwargs)


def _read_end_to_end(items: list[Utterance]) -> list[tuple[str, str | None, int]]:
    """(file name, transcript, samples at 16 kHz) of each utterance, audio read as training reads it."""
    return [(u.audio.name, u.text, len(load_audio(u.audio, 16000))) for u in items]


def test_librispeech_subset_is_read_with_speakers(tmp_path):
    chapter = tmp_path / "train-clean-5" / "19" / "198"
    _tone(chapter / "19-198-0000.flac")
    _tone(chapter / "19-198-0001.flac", seconds=0.2)
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 NORTHANGER ABBEY\n19-198-0001 CHAPTER ONE\n19-198-0002 GONE\n"
    )
    assert detect_format(tmp_path / "train-clean-5") == "librispeech"
    splits = load_splits(tmp_path, "train-clean-5", "", "")
    assert _read_end_to_end([u for u in splits["train"] if not u.problem]) == [
        ("19-198-0000.flac", "NORTHANGER ABBEY", 6400),
        ("19-198-0001.flac", "CHAPTER ONE", 3200),
    ]
    (gone,) = [u for u in splits["train"] if u.problem]  # 0002 has no audio: listed with the problem
    assert (
        gone.problem[0] == "missing_audio" and "19-198.trans.txt:3: no audio file 19-198-0002.flac" in gone.problem[1]
    )
    assert {u.speaker for u in splits["train"]} == {"19"}


def test_common_voice_tsv_splits_with_client_ids_as_speakers(tmp_path):
    language = tmp_path / "cv-corpus" / "pl"
    header = "client_id\tpath\tsentence_id\tsentence\tup_votes\tdown_votes\n"
    for split, rows in {
        "train": [("a1", "c1.mp3", "Zażółć gęślą jaźń."), ("b2", "c2.mp3", '"Tak", powiedział.')],
        "dev": [("c3", "c3.mp3", "Dobry wieczór")],
        "test": [],
    }.items():
        lines = [f"{client}\t{clip}\t{i}\t{text}\t2\t0\n" for i, (client, clip, text) in enumerate(rows)]
        (language / f"{split}.tsv").parent.mkdir(parents=True, exist_ok=True)
        (language / f"{split}.tsv").write_text(header + "".join(lines), encoding="utf-8")
        for _, clip, _ in rows:
            _tone(language / "clips" / clip, rate=48000, format="MP3")
    assert detect_format(language / "train.tsv") == "commonvoice" and detect_format(language) == "commonvoice"
    splits = load_splits(language, "train.tsv", "dev.tsv", "test.tsv")
    assert [(u.text, u.speaker) for u in splits["train"]] == [
        ("Zażółć gęślą jaźń.", "a1"),
        ('"Tak", powiedział.', "b2"),
    ]
    assert [u.text for u in splits["valid"]] == ["Dobry wieczór"] and splits["test"] == []
    for name, _, samples in _read_end_to_end(splits["train"] + splits["valid"]):
        assert name.endswith(".mp3") and abs(samples - 6400) < 1600  # MP3 frames pad the ends
    folder = load_splits(tmp_path, "cv-corpus/pl", "", "", fmt="commonvoice")["train"]  # a language folder: train.tsv
    assert [u.audio for u in folder] == [u.audio for u in splits["train"]]


def test_timit_layout_sphere_wav_files_with_txt_or_wrd_transcripts(tmp_path):
    speaker = tmp_path / "TIMIT" / "TRAIN" / "DR1" / "FCJF0"
    _tone(speaker / "SA1.WAV", format="NIST", subtype="PCM_16")  # TIMIT's SPHERE files are named .WAV
    (speaker / "SA1.TXT").write_text("0 6400 She had your dark suit in greasy wash water all year.\n")
    _tone(speaker / "SX9.WAV", format="NIST", subtype="PCM_16", seconds=0.2)
    (speaker / "SX9.WRD").write_text("0 1600 dark\n1600 3200 suit\n")
    (speaker / "SX9.PHN").write_text("0 3200 h#\n")
    assert detect_format(tmp_path / "TIMIT" / "TRAIN") == "dir"
    items = load_splits(tmp_path / "TIMIT", "TRAIN", "", "")["train"]
    assert _read_end_to_end(items) == [
        ("SA1.WAV", "She had your dark suit in greasy wash water all year.", 6400),
        ("SX9.WAV", "dark suit", 3200),
    ]


# Property-based tests (hypothesis; profile in conftest.py): whatever a manifest or dataset folder holds, the
# readers return a list of well-formed utterances or raise DatasetError; never another exception.


def read_or_dataset_error(read, path: Path) -> list[Utterance] | None:
    """read(path) as a list of well-formed utterances, or None where it raised DatasetError (the test fails on any
    other exception)."""
    try:
        items = read(path)
    except DatasetError:
        return None
    assert isinstance(items, list)
    for u in items:
        assert isinstance(u, Utterance) and isinstance(u.audio, Path)
        assert u.text is None or isinstance(u.text, str)
        assert u.speaker is None or isinstance(u.speaker, str)
        for seconds in (u.start, u.end):
            assert seconds is None or (isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0)
        assert u.problem is None or (u.problem[0] in (MISSING_TRANSCRIPT, TRANSCRIPT_NOT_UTF8) and u.problem[1])
        assert isinstance(u.key, str)
    return items


def _scratch_manifest(name: str, content: bytes):
    """A fresh folder holding the file `name` with `content`, for one example: (folder context, path)."""
    folder = tempfile.TemporaryDirectory(prefix="asr-fuzz-")
    path = Path(folder.name) / name
    path.write_bytes(content)
    return folder, path


# Text that breaks paths, lines and CSV fields: NUL, separators, quotes, Unicode line breaks (U+2028, NEL), a lone
# surrogate (JSON escapes it as \ud800; written unescaped it makes the file invalid UTF-8).
_awkward = st.text(st.characters() | st.sampled_from(list('\x00\t\n\r\u2028\x85\x1c",/\\.\ud800')), max_size=12)
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -1, 2**63])  # beyond float
    | st.floats()  # NaN and infinities are written as NaN / Infinity, which json.loads reads
    | _awkward
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["audio", "audio_filepath", "text", "start", "end"]) | _awkward, children)
    ),
    max_leaves=8,
)
_json_seconds = st.sampled_from([math.nan, math.inf, -1.0, True, 10**400, 1.5]) | _json_values
# Mostly records with the keys a manifest has, holding any JSON value.
_json_records = st.fixed_dictionaries(
    {"audio": _json_values, "text": _json_values},
    optional={"start": _json_seconds, "end": _json_seconds, "audio_filepath": _json_values},
)
_jsonl_lines = (
    st.lists(_json_records | _json_values, max_size=4)
    .flatmap(lambda values: st.tuples(st.just(values), st.booleans(), st.sampled_from(["\n", "\r\n"])))
    .map(lambda v: v[2].join(json.dumps(x, ensure_ascii=v[1]) for x in v[0]).encode("utf-8", "surrogatepass"))
)


@given(content=st.binary(max_size=512) | _jsonl_lines)
@example(content=b"[" * 100_000)  # nesting beyond the recursion limit
@example(content=b'{"audio": "a\\u0000.wav", "text": "x"}')  # NUL in a path
@example(content=b'{"audio": "\\ud800.wav", "text": "x"}')  # a lone surrogate in a path
def test_random_jsonl_gives_utterances_or_dataset_error(content):
    folder, path = _scratch_manifest("m.jsonl", content)
    with folder:
        read_or_dataset_error(read_jsonl, path)


# File names that make valid paths (no NUL or "/", not "." or "..").
_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=10).filter(
    lambda s: s not in (".", "..")
)
_seconds = st.floats(0, 1e6)


@given(
    records=st.lists(
        st.fixed_dictionaries({"audio": _names, "text": st.text()}, optional={"start": _seconds, "end": _seconds}),
        max_size=4,
    ),
    ascii_only=st.booleans(),
)
@example(records=[{"audio": "a.wav", "text": "one\u2028two\x85three"}], ascii_only=False)  # line breaks in a string
def test_every_jsonl_record_is_read_back(records, ascii_only):
    content = "\n".join(json.dumps(r, ensure_ascii=ascii_only) for r in records).encode()
    folder, path = _scratch_manifest("m.jsonl", content)
    with folder:
        expected = [
            Utterance((path.parent / r["audio"]).resolve(), r["text"], r.get("start"), r.get("end")) for r in records
        ]
        assert read_jsonl(path) == expected


@st.composite
def table_files(draw, delimiter: str, columns: tuple[str, ...]) -> bytes:
    """Random bytes, or a header (some of `columns` and random names, in any order) and rows of any length with
    awkward fields, written by csv.writer (quoted as it sees fit) or joined raw."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=512))
    header = draw(st.permutations([*columns, *draw(st.lists(_awkward, max_size=2))]))
    header = header[draw(st.integers(0, 1)) :]  # mostly every column, sometimes one missing
    rows = [header, *draw(st.lists(st.lists(_awkward, max_size=len(header) + 1), max_size=4))]
    if draw(st.booleans()):
        out = io.StringIO(newline="")
        csv.writer(out, delimiter=delimiter).writerows(rows)
        text = out.getvalue()
    else:
        text = "".join(delimiter.join(row) + "\n" for row in rows)
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig"])), "surrogatepass")


# A last line with a field beyond the csv module's size limit (131072 characters), added in the test body: hypothesis
# would print it whole in a failing example.
OVERSIZED_FIELD = b"x" * 140_000 + b"\n"


@given(content=table_files(",", ("wav_filename", "wav_filesize", "transcript")), oversized=st.booleans())
@example(content=b"transcript,wav_filename\nonly one field\n", oversized=False)  # a short row: no wav_filename
@example(content=b"wav_filename,transcript\na\x00.wav,x\n", oversized=False)  # NUL in a path
@example(content=b"wav_filename,transcript\n", oversized=True)
def test_random_csv_gives_utterances_or_dataset_error(content, oversized):
    folder, path = _scratch_manifest("m.csv", content + OVERSIZED_FIELD * oversized)
    with folder:
        read_or_dataset_error(read_csv, path)


@given(content=table_files("\t", ("client_id", "path", "sentence")), oversized=st.booleans())
@example(content=b"sentence\tclient_id\tpath\nonly one field\n", oversized=False)  # a short row: no path
@example(content=b"client_id\tpath\tsentence\n", oversized=True)
def test_random_common_voice_tsv_gives_utterances_or_dataset_error(content, oversized):
    folder, path = _scratch_manifest("train.tsv", content + OVERSIZED_FIELD * oversized)
    with folder:
        read_or_dataset_error(read_commonvoice, path)
        read_or_dataset_error(read_commonvoice, path.parent)  # the language folder


@given(rows=st.lists(st.tuples(_names, st.integers(0, 10**9), st.text()), max_size=4))
def test_every_csv_row_is_read_back(rows):
    out = io.StringIO(newline="")
    csv.writer(out).writerows([("wav_filename", "wav_filesize", "transcript"), *rows])
    folder, path = _scratch_manifest("m.csv", out.getvalue().encode())
    with folder:
        expected = [Utterance((path.parent / name).resolve(), text) for name, _, text in rows]
        assert read_csv(path) == expected


# A Common Voice TSV field holds no tab or line break (the file is read unquoted).
_tsv_fields = st.text(st.characters(codec="utf-8", exclude_characters="\t\r\n"), max_size=12)
_tsv_names = _names.filter(lambda s: not set(s) & set("\t\r\n"))


@given(rows=st.lists(st.tuples(_tsv_fields, _tsv_names, _tsv_fields), max_size=4))
def test_every_common_voice_row_is_read_back(rows):
    content = "".join(f"{a}\t{b}\t{c}\n" for a, b, c in [("client_id", "path", "sentence"), *rows])
    folder, path = _scratch_manifest("train.tsv", content.encode())
    with folder:
        expected = [Utterance(path.parent / "clips" / clip, text, speaker=client) for client, clip, text in rows]
        assert read_commonvoice(path) == expected


# A dataset folder: audio files and transcripts (plain, TIMIT .TXT, .WRD) in any combination, holding random bytes,
# text or word alignments; None makes a folder of that name.
_stems = st.sampled_from(["a", "b", "sub/a", "SA1"])
_suffixes = st.sampled_from([".wav", ".WAV", ".flac", ".mp3", ".txt", ".TXT", ".wrd", ".WRD", ".phn"])
_contents = (
    st.binary(max_size=64)
    | _awkward.map(lambda s: s.encode("utf-8", "surrogatepass"))
    | st.lists(st.tuples(st.integers(0, 99), st.integers(0, 99), _awkward), max_size=3).map(
        lambda lines: "".join(f"{a} {b} {w}\n" for a, b, w in lines).encode("utf-8", "surrogatepass")
    )
    | st.none()
)


@given(files=st.dictionaries(st.tuples(_stems, _suffixes).map("".join), _contents, max_size=6))
def test_random_dataset_folders_give_every_audio_file_or_dataset_error(files):
    with tempfile.TemporaryDirectory(prefix="asr-fuzz-") as folder:
        root = Path(folder)
        for name, content in sorted(files.items(), key=lambda item: item[1] is None):  # folders last
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                path.mkdir(exist_ok=True)
            elif not path.is_dir():
                path.write_bytes(content)
        items = read_or_dataset_error(read_directory, root)
        audio = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if items is None:
            assert not audio or all(
                not p.with_suffix(s).is_file() for p in audio for s in (".txt", ".TXT", ".wrd", ".WRD")
            )
        else:
            assert [u.audio for u in items] == audio
