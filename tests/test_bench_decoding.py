"""`asr-bench decoding`: greedy against the language model's search, end to end and on saved log-probs. No test
asserts a time: the transcripts behind each figure agree where they must, and the ratios are the seconds'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asr.bench.decoding import DecodingBenchError, Variant
from asr.cli.bench import main

DATA = Path(__file__).parents[1] / "data"  # the embedded corpus


def test_a_variant_names_its_settings():
    assert Variant.parse("b16:beam_width=16,beam_threshold=12.5") == Variant(
        "b16", {"beam_width": 16, "beam_threshold": 12.5}
    )
    assert Variant.parse("fl:search=flashlight") == Variant("fl", {"search": "flashlight"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("b16:width=16", "--variant b16:width=16: unknown setting 'width'; use beam_width, tokens_per_frame"),
        ("b16:beam_width=x", "--variant b16:beam_width=x: beam_width='x' is not a number"),
        ("b16:beam_width=1.5", "beam_width='1.5' is not a number"),
        ("b16", "--variant b16: write NAME:key=value[,key=value], e.g. beam16:beam_width=16"),
        (":beam_width=4", "write NAME:key=value"),
    ],
)
def test_a_bad_variant_is_named(text, message):
    with pytest.raises(DecodingBenchError) as caught:
        Variant.parse(text)
    assert message in str(caught.value)


def test_a_missing_manifest_or_a_bad_variant_on_the_command_line_is_one_line(tmp_path, capsys):
    (tmp_path / "bundle.json").write_text("{}")
    out = ["--out", str(tmp_path / "b.json")]
    assert main([*out, "decoding", str(tmp_path), str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "missing.jsonl" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "test.jsonl").write_text("")
    assert main([*out, "decoding", str(tmp_path), str(tmp_path / "test.jsonl"), "--variant", "b:width=2"]) == 2
    err = capsys.readouterr().err
    assert "--variant b:width=2: unknown setting 'width'" in err and len(err.strip().splitlines()) == 1
    bad = ["--variant", "b:beam_width=2", "--end-to-end", "c"]
    assert main([*out, "decoding", str(tmp_path), str(tmp_path / "test.jsonl"), *bad]) == 2
    err = capsys.readouterr().err
    assert "--end-to-end c: no --variant of that name; name one of ['b']" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.json").exists()


@pytest.fixture(scope="module")
def demo_with_lm(demo_run, tmp_path_factory):
    """The demo run's bundle with a character language model of the embedded corpus's training transcripts."""
    from asr.data.datasets import read_jsonl
    from asr.decoding.lm_search import LMDecoder, LMWeights, estimate_character_lm
    from asr.inference.bundle import load_bundle, save_bundle

    bundle = load_bundle(demo_run)
    texts = [bundle.vocab.normalize(u.text) for u in read_jsonl(DATA / "train.jsonl")]
    lm = LMDecoder(estimate_character_lm(texts, 4), LMWeights(0.5, 1.0), beam_width=8)
    return save_bundle(
        tmp_path_factory.mktemp("bundle"), bundle.model, bundle.features, bundle.vocab, bundle.cmvn, lm=lm
    )


@pytest.mark.slow
def test_bench_decoding_reports_greedy_and_the_search_on_the_same_transcripts(demo_with_lm, tmp_path, capsys):
    manifest = DATA / "test.jsonl"
    out = tmp_path / "bench.json"
    argv = ["--out", str(out), "decoding", str(demo_with_lm), str(manifest), "--passes", "2"]
    narrow = "narrow:beam_width=1,tokens_per_frame=1,search=flashlight"
    assert main([*argv, "--variant", narrow, "--variant", "fl:search=flashlight", "--end-to-end", "fl"]) == 0
    result = json.loads(out.read_text())
    assert "| end to end: greedy |" in capsys.readouterr().out
    ends, saved = result["end_to_end"], result["saved_log_probs"]
    assert set(ends) == {"greedy", "language_model", "overlapped", "fl"}
    assert all(len(row["passes"]) == 2 and row["seconds"] == min(row["passes"]) for row in ends.values())
    # the same transcripts whichever way: TensorFlow's greedy decoder and the best path of the saved log-probs, the
    # search after each batch, overlapped with the next batch's model, and on the saved log-probs
    assert (ends["greedy"]["cer"], ends["greedy"]["wer"]) == (saved["greedy"]["cer"], saved["greedy"]["wer"])
    for name in ("language_model", "overlapped", "fl"):
        searched = saved["fl" if name == "fl" else "shipped"]
        assert (ends[name]["cer"], ends[name]["wer"]) == (searched["cer"], searched["wer"])
        assert ends[name]["x_greedy"] == round(ends[name]["seconds"] / ends["greedy"]["seconds"], 3)
    assert saved["shipped"]["transcripts_changed"] == 0
    assert saved["fl"]["settings"]["search"] == "flashlight" and saved["shipped"]["settings"]["search"] == "prefix"
    assert saved["shipped"]["settings"]["beam_width"] == 8
    # flashlight's beam of one path with one class per frame is the best path: greedy's transcripts
    assert (saved["narrow"]["cer"], saved["narrow"]["wer"]) == (saved["greedy"]["cer"], saved["greedy"]["wer"])
    model, greedy = saved["model_seconds"], saved["greedy"]["seconds"]
    assert saved["shipped"]["x_greedy"] == round((model + saved["shipped"]["seconds"]) / (model + greedy), 3)
    assert result["files"] == 150 and result["unusable"] == 0
