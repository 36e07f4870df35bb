"""Per-speaker test figures: the CER of each speaker (corpus level within the speaker), its quartiles over the
speakers, the worst five; JSONL manifests' `speaker` field; result.json's `speakers` from a real (tiny) run."""

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_records, write_manifest

from asr.data.datasets import read_jsonl
from asr.data.text import error_rates
from asr.data.validation import Example
from asr.training.speakers import describe, speaker_spread, split_speakers


def test_each_speaker_is_scored_over_their_characters_and_the_quartiles_interpolate():
    refs = ["abcd", "ef", "abc", "hello", "ab"]
    hyps = ["abcd", "eg", "xyz", "hello", "a"]
    speakers = ["a", "a", "b", "c", "d"]
    figures = speaker_spread(refs, hyps, speakers)
    # a: 1 error over 6 characters (the mean of its utterances' rates would be 0.25); b 1.0; c 0.0; d 0.5
    # sorted 0, 1/6, 1/2, 1: q1 at rank 0.75 -> 0.125, median (1/6 + 1/2) / 2, q3 at rank 2.25 -> 0.625
    assert figures["n_speakers"] == 4
    assert figures["cer"] == {"min": 0.0, "q1": 0.125, "median": 0.3333, "q3": 0.625, "max": 1.0}
    assert figures["worst"] == [
        {"speaker": "b", "cer": 1.0, "n": 1},
        {"speaker": "d", "cer": 0.5, "n": 1},
        {"speaker": "a", "cer": 0.1667, "n": 2},
        {"speaker": "c", "cer": 0.0, "n": 1},
    ]
    assert "n_without_speaker" not in figures
    assert describe(figures) == (
        "per speaker (4): CER median 0.3333 (q1 0.1250, q3 0.6250, min 0.0000, max 1.0000); worst b 1.0000 over 1 "
        "utterances"
    )


def test_the_worst_five_only_ties_by_name_and_utterances_without_a_speaker_are_counted_apart():
    speakers = ["s7", "s6", "s5", "s4", "s3", "s2", "s1", None, None]
    refs = ["abcd"] * len(speakers)
    # s7..s1 get 0..3 wrong characters in turn: s4 (3) the worst, then s1 (3) ... by name among equal rates
    hyps = ["abcd", "abcx", "abxx", "axxx", "abcd", "abcx", "axxx", "xxxx", "xxxx"]
    figures = speaker_spread(refs, hyps, speakers)
    assert figures["n_speakers"] == 7
    assert figures["n_without_speaker"] == 2
    assert [(w["speaker"], w["cer"]) for w in figures["worst"]] == [
        ("s1", 0.75),
        ("s4", 0.75),
        ("s5", 0.5),
        ("s2", 0.25),
        ("s6", 0.25),
    ]
    assert figures["cer"]["median"] == 0.25 and figures["cer"]["max"] == 0.75  # the unnamed 1.0s left out


def test_no_speaker_named_gives_no_figures_and_mismatched_lengths_are_refused():
    assert speaker_spread(["ab"], ["ab"], [None]) is None
    with pytest.raises(ValueError, match="2 references, 1 hypotheses, 2 speakers"):
        speaker_spread(["a", "b"], ["a"], ["x", "y"])


def _example(text: str, speaker: str | None, source: str) -> Example:
    return Example(text, text, np.zeros((4, 2), np.float32), np.zeros(1, np.int32), source=source, speaker=speaker)


def test_one_name_in_two_split_paths_is_two_speakers():
    examples = [_example("ab", "joe", "a.jsonl"), _example("ab", "joe", "b.jsonl"), _example("ab", "ann", "a.jsonl")]
    figures = split_speakers(examples, ["ab", "xx", "ab"])
    assert figures["n_speakers"] == 3
    assert figures["worst"][0] == {"speaker": "b.jsonl: joe", "cer": 1.0, "n": 1}
    one_path = split_speakers(examples[:1] + examples[2:], ["xb", "ab"])
    assert one_path["worst"][0] == {"speaker": "joe", "cer": 0.5, "n": 1}


def test_jsonl_manifests_name_their_speakers(tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"audio": "a.wav", "text": "x", "speaker": "0003"},
        {"audio": "b.wav", "text": "y", "speaker": 17},
        {"audio": "c.wav", "text": "z"},
        {"audio": "d.wav", "text": "w", "speaker": None},
    ]
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [u.speaker for u in read_jsonl(manifest)] == ["0003", "17", None, None]


@pytest.mark.slow
def test_result_json_gives_the_test_cer_per_speaker_of_a_run(tmp_path):
    import asr

    test = [{**r, "speaker": r["voice"]} for r in demo_records("test", 24)]  # the demo corpus's espeak-ng voice
    for split, items in (("train", demo_records("train", 40)), ("test", test)):
        write_manifest(tmp_path / f"{split}.jsonl", items)
    options = asr.compose(
        [
            f"data.root={tmp_path}",
            "data.train=train.jsonl",
            "data.valid=",
            "data.valid_fraction=0.1",
            "data.test=test.jsonl",
            "trainer.epochs=1",
            "model.num_layers=1",
            "model.units=16",
            "augment=none",
            "trainer.verbose=0",
            f"trainer.samples={len(test)}",
            "data.cache=false",
        ]
    )
    asr.train(options, tmp_path / "run")
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    by_speaker = defaultdict(lambda: ([], []))
    voice = {str(Path(r["audio"]).resolve()): r["speaker"] for r in test}
    for sample in result["samples"]:
        refs, hyps = by_speaker[voice[sample["audio"]]]
        refs.append(sample["ref"])
        hyps.append(sample["hyp"])
    rates = {s: error_rates(r, h)["ler"] for s, (r, h) in by_speaker.items()}
    figures = result["speakers"]
    assert figures["n_speakers"] == len({r["speaker"] for r in test}) == len(rates)
    assert figures["cer"]["median"] == round(float(np.median(list(rates.values()))), 4)
    worst = sorted(rates, key=lambda s: (-rates[s], s))[0]
    assert figures["worst"][0]["speaker"] == worst
    assert figures["worst"][0]["n"] == len(by_speaker[worst][0])
