import json
from dataclasses import replace

import numpy as np
import pytest
from conftest import sine, write_wav

from asr.data.features import FeatureOptions
from asr.data.options import AugmentOptions, DataOptions
from asr.data.preparation import prepare_data


def test_auto_characters_come_from_training_and_unseen_ones_are_reported_per_split(tmp_path):
    write_wav(tmp_path / "a.wav", 8000, sine(8000, seconds=1.5))
    splits = {
        # h, t (only in the second) and z, o (only in the last) occur in one training utterance each: rare
        "train": ["Één wrak.", "Het wrak, één keer!", "Geëerd wrak", "geëerde rekken", "zoë"],
        "valid": ["één wrakü"],
        "test": ["wrak ω"],
    }
    for name, texts in splits.items():
        lines = [json.dumps({"audio": "a.wav", "text": t}, ensure_ascii=False) + "\n" for t in texts]
        (tmp_path / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
    cfg = DataOptions(root=str(tmp_path), characters="auto", cache=False)
    prepared = prepare_data(cfg, FeatureOptions(sample_rate=8000), 1, AugmentOptions())
    assert prepared.vocab.characters == " adegknrwéë"  # space first, then by code point; accents kept (NFC)
    assert prepared.report.vocabulary == prepared.vocab.characters
    assert [e.text for e in prepared.examples["train"]] == ["één wrak", "geëerd wrak", "geëerde rekken"]
    assert [(r["split"], r["kind"]) for r in prepared.report.rejected] == [
        ("train", "unknown_characters"),
        ("train", "unknown_characters"),
        ("valid", "unknown_characters"),
        ("test", "unknown_characters"),
    ]
    assert prepared.report.unseen_characters == {
        "train": {"h": 1, "o": 1, "t": 1, "z": 1},
        "valid": {"ü": 1},
        "test": {"ω": 1},
    }


def _tree(root):
    """Every file below root, with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_manifest_paths_are_only_read_and_a_run_writes_only_into_its_own_and_the_cache_folder(tmp_path):
    from asr.data.preparation import write_prepare_report

    outside = write_wav(tmp_path / "elsewhere" / "x.wav", 8000, sine(8000, seconds=1.0))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [
        {"audio": "../elsewhere/x.wav", "text": "one"},  # relative, leaving the corpus
        {"audio": str(outside), "text": "two"},  # absolute
        {"audio": "../../../../../../../../tmp/../etc/passwd", "text": "three"},  # not audio: rejected, untouched
    ]
    (corpus / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    before = _tree(tmp_path)
    cache = tmp_path / "cache"
    cfg = DataOptions(root=str(corpus), valid="", test="", cache_dir=str(cache))
    prepared = prepare_data(cfg, FeatureOptions(sample_rate=8000), 1, AugmentOptions())
    write_prepare_report(prepared.report, tmp_path / "run")
    assert [e.text for e in prepared.examples["train"]] == ["one", "two"]
    assert [r["kind"] for r in prepared.report.rejected] == ["unreadable_audio"]
    after = _tree(tmp_path)
    assert {p: v for p, v in after.items() if p in before} == before  # nothing that was there changed
    new = [p for p in after if p not in before]
    assert new and all(p.is_relative_to(tmp_path / "run") or p.is_relative_to(cache) for p in new)


def test_the_report_names_every_rejected_or_doubtful_file_and_counts_conversions(tmp_path):
    import numpy as np
    import soundfile

    folder = tmp_path / "train"
    write_wav(folder / "good.wav", 8000, sine(8000, seconds=1.0))
    (folder / "good.txt").write_text("one")
    write_wav(folder / "orphan.wav", 8000, sine(8000, seconds=1.0))  # no transcript
    write_wav(folder / "quiet.wav", 8000, np.zeros(8000, np.int16))
    (folder / "quiet.txt").write_text("two")
    soundfile.write(folder / "wide.wav", sine(16000, seconds=1.0), 16000, subtype="PCM_24")
    (folder / "wide.txt").write_bytes("thr\xe9e".encode("latin-1"))
    soundfile.write(folder / "loud.flac", np.clip(4 * sine(8000, seconds=1.0), -1, 1), 8000)
    (folder / "loud.txt").write_text("four")
    cfg = DataOptions(root=str(tmp_path), format="dir", train="train", valid="", test="", cache=False)
    report = prepare_data(cfg, FeatureOptions(sample_rate=8000), 1, AugmentOptions()).report
    rejected = {r["item"].rsplit("/", 1)[1]: r["kind"] for r in report.rejected}
    assert rejected == {
        "orphan.wav": "missing_transcript",
        "wide.wav": "transcript_not_utf8",
        "quiet.wav": "silent_audio",
    }
    assert [(w["item"].rsplit("/", 1)[1], w["kind"]) for w in report.warnings] == [("loud.flac", "clipping")]
    assert report.splits["train"]["converted"] == {"channels": 0, "sample_rate": 0, "sample_format": 1}
    assert report.splits["train"]["usable"] == 2 and report.checks["speaking_rate_chars_per_second"] == [
        1.0,
        30.0,
    ]


def test_storage_leaves_features_on_disk_with_the_same_values_and_max_seconds_skips_long_training_items(tmp_path):
    import numpy as np

    from asr.data.extraction import StoredFeatures

    for i, seconds in enumerate((0.5, 0.7, 0.9, 2.5)):
        write_wav(tmp_path / f"{i}.wav", 8000, sine(8000, seconds=seconds, hz=300 + 50 * i))
    lines = [json.dumps({"audio": f"{i}.wav", "text": "abcd"}) + "\n" for i in range(4)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(lines))
    options = FeatureOptions(sample_rate=8000, normalize="both")
    prepared = {}
    for storage in ("memory", "disk", "auto"):
        cfg = DataOptions(root=str(tmp_path), valid="", cache_dir=str(tmp_path / "cache"), storage=storage)
        prepared[storage] = prepare_data(cfg, options, 1, AugmentOptions(speeds=(1.0, 0.9)))
    assert {s: p.report.storage for s, p in prepared.items()} == {
        "memory": "memory",
        "disk": "disk",
        "auto": "memory",
    }
    disk, memory = prepared["disk"], prepared["memory"]
    assert all(isinstance(e.features, StoredFeatures) for split in disk.examples.values() for e in split)
    assert disk.report.feature_bytes == memory.report.feature_bytes > 0
    assert disk.report.cache["entries"] == 8  # 4 files at 2 speeds (test shares the speed-1 entries)
    for a, b in zip(memory.cmvn, disk.cmvn, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    for e, d in zip(memory.examples["train"], disk.examples["train"], strict=True):
        np.testing.assert_allclose(np.asarray(d.features), e.features, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(d.variants[0]), e.variants[0], rtol=1e-5, atol=1e-6)

    # a base model's statistics (trainer.init_cmvn=source) are used as given
    given = (memory.cmvn[0] + 1.0, memory.cmvn[1] * 2.0)
    based = prepare_data(cfg, options, 1, AugmentOptions(), cmvn=given)
    assert based.cmvn is given
    np.testing.assert_allclose(
        np.asarray(based.examples["test"][0].features),
        (memory.examples["test"][0].features * memory.cmvn[1] + memory.cmvn[0] - given[0]) / given[1],
        rtol=1e-4,
        atol=1e-4,
    )

    cfg = DataOptions(root=str(tmp_path), valid="", cache_dir=str(tmp_path / "cache"), max_seconds=2.0)
    limited = prepare_data(cfg, options, 1, AugmentOptions())
    assert [e.key for e in limited.examples["train"]] == [e.key for e in memory.examples["train"]][:3]
    assert len(limited.examples["test"]) == 4  # test keeps its long utterance
    (rejected,) = limited.report.rejected
    assert rejected["split"] == "train" and rejected["kind"] == "too_long" and rejected["item"].endswith("3.wav")
    assert "2.5 s of audio, longer than data.max_seconds=2" in rejected["reason"]


def _corpus(root, count: int = 12) -> None:
    """train/valid/test manifests over `count` short WAVs (train all, valid and test every third)."""
    for i in range(count):
        write_wav(root / f"{i}.wav", 8000, sine(8000, seconds=0.3 + 0.02 * i, hz=200 + 30 * i))
    line = lambda i: json.dumps({"audio": f"{i}.wav", "text": "ab ba"}) + "\n"  # noqa: E731
    (root / "train.jsonl").write_text("".join(line(i) for i in range(count)))
    (root / "valid.jsonl").write_text("".join(line(i) for i in range(0, count, 3)))
    (root / "test.jsonl").write_text("".join(line(i) for i in range(1, count, 3)))


def test_shards_split_every_split_stably_and_together_fill_the_cache_for_training(tmp_path):
    from asr.data.preparation import shard_of

    _corpus(tmp_path)
    options, augment = FeatureOptions(sample_rate=8000), AugmentOptions(speeds=(1.0, 0.9))
    seen = {"train": [], "valid": [], "test": []}
    for shard in range(3):
        cfg = DataOptions(root=str(tmp_path), cache_dir=str(tmp_path / "cache"), shard=shard, num_shards=3)
        prepared = prepare_data(cfg, options, 1, augment)
        assert prepared.report.shard == {"shard": shard, "num_shards": 3}
        for name, examples in prepared.examples.items():
            assert all(shard_of(e.key, 3) == shard for e in examples)
            seen[name] += [e.key for e in examples]
    assert [len(seen[n]) for n in ("train", "valid", "test")] == [12, 4, 4]  # each utterance in exactly one shard
    assert all(len(set(keys)) == len(keys) for keys in seen.values())
    assert shard_of("a.wav", 3) == shard_of("a.wav", 3) and {shard_of(f"{i}.wav", 3) for i in range(30)} == {0, 1, 2}
    # training later finds every feature, at every speed, in the cache
    whole = prepare_data(DataOptions(root=str(tmp_path), cache_dir=str(tmp_path / "cache")), options, 1, augment)
    assert (whole.report.cache_misses, whole.report.cache_hits) == (0, 12 * 2 + 4 + 4)


_EXTRACT = """
import sys
from asr.data.features import FeatureOptions
from asr.data.options import AugmentOptions, DataOptions
from asr.data.preparation import prepare_data
root, cache, shard, shards = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = DataOptions(root=root, cache_dir=cache, shard=shard, num_shards=shards, workers=1)
prepare_data(cfg, FeatureOptions(sample_rate=8000), 1, AugmentOptions(speeds=(1.0, 0.9, 1.1)))
"""


def test_two_processes_extracting_overlapping_shards_at_once_leave_identical_whole_entries(tmp_path):
    import hashlib
    import subprocess
    import sys

    _corpus(tmp_path, 16)
    cache = tmp_path / "cache"
    runs = [("0", "2"), ("0", "1")]  # shard 0 of 2, and everything: half the entries written by both at once
    processes = [
        subprocess.Popen([sys.executable, "-c", _EXTRACT, str(tmp_path), str(cache), s, n], stderr=subprocess.PIPE)
        for s, n in runs
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors
    done = subprocess.run(
        [sys.executable, "-c", _EXTRACT, str(tmp_path), str(tmp_path / "alone"), "0", "1"], timeout=120
    )
    assert done.returncode == 0
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 16 * 3 + 0  # valid/test files are training files here: their speed-1 entries are shared
    assert not list(cache.rglob("*.tmp"))
    for entry in entries:
        side = json.loads(entry.with_suffix(".json").read_text())
        assert hashlib.sha256(entry.read_bytes()).hexdigest() == side["sha256"]  # whole, not torn
        alone = tmp_path / "alone" / entry.relative_to(cache)
        assert entry.read_bytes() == alone.read_bytes()  # the same bytes as one process alone


def test_trim_silence_cuts_training_utterances_only_and_keeps_its_own_cache_entries(tmp_path):
    import numpy as np
    import soundfile
    from conftest import require_shared_data

    samples, rate = soundfile.read(require_shared_data() / "ldc93s1" / "LDC93S1.wav", dtype="float32")
    quiet = np.zeros(rate, np.float32)
    soundfile.write(tmp_path / "a.wav", np.concatenate([quiet, samples, quiet]), rate)  # 1 s of silence each side
    line = json.dumps({"audio": "a.wav", "text": "she had your dark suit"}) + "\n"
    for name in ("train", "valid", "test"):
        (tmp_path / f"{name}.jsonl").write_text(line)
    options = FeatureOptions(sample_rate=16000)
    frames = {}
    for trim in (False, True, False):  # the untrimmed features again: the cache does not mix them up
        cfg = DataOptions(root=str(tmp_path), cache_dir=str(tmp_path / "cache"), trim_silence=trim)
        examples = prepare_data(cfg, options, 1, AugmentOptions(speeds=(1.0, 0.9))).examples
        found = {name: [len(e.features), *map(len, e.variants)] for name, items in examples.items() for e in items}
        assert frames.setdefault(trim, found) == found
    assert frames[False]["valid"] == frames[True]["valid"] == frames[True]["test"] == [len(samples) // 160 + 199]
    untrimmed, trimmed = frames[False]["train"], frames[True]["train"]
    assert untrimmed[0] - 200 < trimmed[0] < untrimmed[0] - 150  # the 2 s of silence, less the 0.4 s kept and any
    # silence of the recording itself
    assert trimmed[1] > trimmed[0]  # the slower copy of the trimmed audio


def test_the_silence_around_the_training_speech_is_measured_for_long_recordings(tmp_path):
    rate = 8000
    signal = np.concatenate([np.zeros(int(0.3 * rate)), sine(rate, seconds=1.0), np.zeros(int(0.15 * rate))])
    write_wav(tmp_path / "a.wav", rate, signal.astype(np.float32))
    (tmp_path / "train.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "a"}) + "\n")
    cfg = DataOptions(root=str(tmp_path), valid="", test="", cache=False)
    prepared = prepare_data(cfg, FeatureOptions(sample_rate=rate), 1, AugmentOptions())
    lead, trail = prepared.margins
    assert lead == pytest.approx(0.3, abs=0.04) and trail == pytest.approx(0.15, abs=0.04)
    assert prepared.report.silence_margins_s == [lead, trail]


def test_on_error_raise_stops_at_the_first_bad_file_naming_it_and_skip_trains_on_the_rest(tmp_path):
    from asr.data.datasets import DatasetError

    folder = tmp_path / "train"
    for name, text in (("a_good", "one"), ("b_silent", "two"), ("c_good", "three")):
        samples = np.zeros(8000, np.int16) if name == "b_silent" else sine(8000, seconds=1.0)
        write_wav(folder / f"{name}.wav", 8000, samples)
        (folder / f"{name}.txt").write_text(text)
    cfg = DataOptions(root=str(tmp_path), format="dir", train="train", valid="", test="", cache=False, on_error="raise")
    with pytest.raises(DatasetError) as stopped:
        prepare_data(cfg, FeatureOptions(sample_rate=8000), 1, AugmentOptions())
    message = str(stopped.value)
    assert message.startswith(f"{folder / 'b_silent.wav'}: digital silence") and "\n" not in message
    assert message.endswith("(data.on_error=raise; use skip to leave it out)")
    kept = prepare_data(replace(cfg, on_error="skip"), FeatureOptions(sample_rate=8000), 1, AugmentOptions())
    assert [e.text for e in kept.examples["train"]] == ["one", "three"]
