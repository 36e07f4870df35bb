"""asr-transcribe options: beam, n-best, timestamps, manifests with references, directories (in-process,
through main(argv), on the model of the demo_run fixture)."""

import csv
import json
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
from conftest import ROOT
from scipy.io import wavfile

from asr.cli.transcribe import main
from asr.data.text import error_rates

pytestmark = pytest.mark.slow  # the demo_run fixture trains a model


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def transcribe(capsys):
    """Run `asr-transcribe *args` in this process: exit status, stdout, stderr."""

    def run(*args: str) -> Done:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse errors
            code = e.code
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return run


def test_beam_nbest_and_timestamps(demo_run, transcribe):
    wav = str(ROOT / "data" / "wav" / "test" / "test_00003.wav")
    done = transcribe(str(demo_run / "model"), wav, "--json", "--beam-width", "8", "--n-best", "3", "--timestamps")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout)
    assert record["text"] == record["nbest"][0]["text"]
    assert len(record["nbest"]) == 3
    assert record["nbest"][0]["score"] >= record["nbest"][1]["score"] >= record["nbest"][2]["score"]
    words = record["words"]
    assert [w["word"] for w in words] == record["text"].split()
    assert all(0 <= w["start"] < w["end"] <= record["duration_s"] + 0.05 for w in words)
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:], strict=False))
    # in seconds of the file: the words span its speech (0.1 s of silence each side), stride frames a step
    assert words[0]["start"] <= 0.3 and words[-1]["end"] >= record["duration_s"] - 0.35
    assert "(RTF " in done.stderr
    # confidence: per word, and per record the words' weighted by their letters
    assert all(0.0 <= w["confidence"] <= 1.0 for w in words) and 0.0 <= record["confidence"] <= 1.0
    letters = sum(len(w["word"]) for w in words)
    weighted = sum(len(w["word"]) * w["confidence"] for w in words) / letters
    assert record["confidence"] == pytest.approx(weighted, abs=2e-4)
    assert "confidence" not in transcribe(str(demo_run / "model"), wav).stdout  # plain output: text only


def test_csv_manifest_scores_against_references(demo_run, tmp_path, transcribe):
    rows = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:5]]
    manifest = tmp_path / "m.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["wav_filename", "wav_filesize", "transcript"])
        for r in rows:
            writer.writerow([str(ROOT / "data" / r["audio"]), 0, r["text"]])
    done = transcribe(str(demo_run), str(manifest), "--score")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 6 and lines[-1].startswith("scored 5 files: LER ")
    assert [line.split("\t")[3] for line in lines[:5]] == [r["text"] for r in rows]
    # the printed figures are the corpus error rates of the printed transcripts against the references
    printed = lines[-1].split()
    rates = error_rates([line.split("\t")[3] for line in lines[:5]], [line.split("\t")[1] for line in lines[:5]])
    assert (float(printed[4]), float(printed[6])) == (round(rates["ler"], 4), round(rates["wer"], 4))
    assert float(printed[9]) == round(rates["utt_acc"], 4) and rates["ler"] > 0  # a figure that can be wrong


def test_directory_input_and_bad_arguments(demo_run, tmp_path, transcribe):
    done = transcribe(str(demo_run), str(ROOT / "data" / "wav" / "valid"))
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 100
    assert "transcribed 100 files" in done.stderr
    assert transcribe(str(tmp_path), "x.wav").returncode == 2
    assert transcribe(str(demo_run), "x.wav", "--beam-width", "2", "--n-best", "3").returncode == 2


def test_n_best_without_a_beam_width_transcribes_with_the_same_beam(demo_run, transcribe):
    files = [str(ROOT / "data" / "wav" / "test" / f"test_{i:05d}.wav") for i in range(8)]
    done = transcribe(str(demo_run), *files, "--json", "--n-best", "3")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(r["text"] == r["nbest"][0]["text"] and len(r["nbest"]) == 3 for r in records)


def test_the_python_api_transcribes_waveforms_like_the_command(demo_run, transcribe, tmp_path):
    from scipy.signal import resample_poly  # imported here: scipy.signal costs a second at collection

    import asr
    from asr.data.audio import load_audio

    path = ROOT / "data" / "wav" / "test" / "test_00003.wav"
    bundle = asr.load_bundle(demo_run)
    waveform = load_audio(path, 8000)
    expected = json.loads(transcribe(str(demo_run), str(path), "--json").stdout)["text"]
    assert asr.transcribe(bundle, [waveform]) == [expected]
    # audio at 16 kHz is resampled to the model's 8 kHz first, as the command resamples a 16 kHz file
    upsampled = resample_poly(waveform, 2, 1).astype(np.float32)
    wavfile.write(tmp_path / "16k.wav", 16000, upsampled)
    expected = json.loads(transcribe(str(demo_run), str(tmp_path / "16k.wav"), "--json").stdout)["text"]
    assert asr.transcribe(bundle, [load_audio(tmp_path / "16k.wav", 16000)], sample_rate=16000) == [expected]


def test_a_recording_of_twenty_utterances_is_read_as_its_utterances_are_one_by_one(demo_run, tmp_path, transcribe):
    rows = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:20]]
    rate, pause = 8000, np.zeros(int(0.6 * 8000), np.float32)
    parts, spans, t = [], [], 0.0
    for row in rows:
        wave = soundfile.read(ROOT / "data" / row["audio"], dtype="float32")[0]
        parts += [wave, pause]
        spans.append((t, t + len(wave) / rate))
        t += (len(wave) + len(pause)) / rate
    soundfile.write(tmp_path / "long.flac", np.concatenate(parts), rate)
    bundle = json.loads((demo_run / "model" / "bundle.json").read_text())
    assert 2.0 < bundle["max_seconds"] < t  # the longest training utterance: the recording is longer
    assert bundle["silence_margins"] == [0.09, 0.09]  # the corpus script leaves 0.1 s around the speech

    done = transcribe(str(demo_run), str(tmp_path / "long.flac"), "--json", "--timestamps")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads(done.stdout)
    chunks = record["chunks"]
    assert record["duration_s"] == pytest.approx(t, abs=0.01)
    assert len(chunks) == 20  # one piece per utterance, cut at every pause
    assert all(0 < c["end"] - c["start"] <= bundle["max_seconds"] for c in chunks)
    for (start, end), chunk in zip(spans, chunks, strict=True):  # each holds its utterance, and no more
        assert start - 0.1 <= chunk["start"] <= start + 0.15 and end - 0.15 <= chunk["end"] <= end + 0.1
    # as accurate as the utterances transcribed one by one (within 2x their CER: this model is weak)
    refs = " ".join(row["text"] for row in rows)
    one_by_one = transcribe(str(demo_run), *[str(ROOT / "data" / row["audio"]) for row in rows], "--json")
    alone = " ".join(json.loads(line)["text"] for line in one_by_one.stdout.splitlines())
    assert error_rates([refs], [record["text"]])["ler"] <= 2 * error_rates([refs], [alone])["ler"]
    assert record["text"] == " ".join(c["text"] for c in chunks if c["text"])
    words = record["words"]
    assert [w["word"] for w in words] == record["text"].split()
    assert [w["start"] for w in words] == sorted(w["start"] for w in words) and words[-1]["end"] <= t
    assert all(any(c["start"] <= w["start"] < w["end"] <= c["end"] for c in chunks) for w in words)
    assert all(0.0 <= c["confidence"] <= 1.0 for c in chunks) and 0.0 <= record["confidence"] <= 1.0
    # each piece reads as the same span cut by a manifest would
    manifest = tmp_path / "pieces.jsonl"
    manifest.write_text("".join(json.dumps({"audio": "long.flac", **c}) + "\n" for c in chunks))
    pieces = [json.loads(line) for line in transcribe(str(demo_run), str(manifest), "--json").stdout.splitlines()]
    assert [" ".join(p["text"].split()) for p in pieces] == [c["text"] for c in chunks]
    # plain output stays one line per file
    assert (
        transcribe(str(demo_run), str(tmp_path / "long.flac")).stdout == f"{tmp_path / 'long.flac'}\t{record['text']}\n"
    )


def test_a_hotword_puts_right_a_word_that_greedy_decoding_misspells(demo_run, tmp_path, transcribe):
    wav = str(ROOT / "data" / "wav" / "test" / "test_00011.wav")  # "one seven five"
    greedy = json.loads(transcribe(str(demo_run), wav, "--json").stdout)
    assert "seven" not in greedy["text"].split() and "hotwords" not in greedy
    (tmp_path / "other.txt").write_text("zero\n")
    (tmp_path / "hot.txt").write_text("Seven\n")
    without = json.loads(transcribe(str(demo_run), wav, "--json", "--hotwords", str(tmp_path / "other.txt")).stdout)
    assert "seven" not in without["text"].split() and without["hotwords"] == []  # the same beam, another hotword
    boosted = json.loads(transcribe(str(demo_run), wav, "--json", "--hotwords", str(tmp_path / "hot.txt")).stdout)
    assert "seven" in boosted["text"].split() and boosted["hotwords"] == ["seven"]
    # a missing file: one line naming the option, exit 2, before the model loads
    done = transcribe(str(demo_run), wav, "--hotwords", str(tmp_path / "missing.txt"))
    assert done.returncode == 2 and "missing.txt" in done.stderr and "--hotwords" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_bundles_language_model_changes_the_transcript_and_lm_none_leaves_the_acoustic_models():
    from dataclasses import replace

    from asr.data.audio import load_audio
    from asr.data.features import FeatureOptions
    from asr.data.text import Vocabulary
    from asr.decoding.lm_search import LMDecoder, LMWeights, estimate_character_lm
    from asr.inference.bundle import Bundle
    from asr.inference.options import DecodeOptions
    from asr.inference.transcribe import choose_lm, decode_features
    from asr.model.ctc import CTCModel
    from asr.model.options import ModelOptions

    features, vocab = FeatureOptions(sample_rate=8000), Vocabulary()
    model = CTCModel(features.num_features, vocab.characters, ModelOptions(num_layers=1, units=8, stride=3))
    model.build_for()
    # every step alike: the blank most likely, "o", "n", "e" close behind, the rest far
    kernel, bias = model.logits.get_weights()
    bias[:] = -8.0
    bias[vocab.blank_index] = 0.0
    for letter in "one":
        bias[vocab.characters.index(letter)] = -0.5
    model.logits.set_weights([np.zeros_like(kernel), bias])
    lm = LMDecoder(estimate_character_lm(["one", "one one"], 3), LMWeights(alpha=1.0, beta=2.0))
    bundle = Bundle(model, features, vocab, lm=lm)
    feats = [bundle.featurize(load_audio(ROOT / "data" / "wav" / "test" / "test_00001.wav", 8000))]
    greedy = decode_features(replace(bundle, lm=None), feats)[0]["text"]
    fused = decode_features(bundle, feats)[0]["text"]
    assert greedy == "" and fused and set(fused) <= set("one ")  # the language model's bonus and its letters
    assert decode_features(choose_lm(bundle, DecodeOptions(lm="none")), feats)[0]["text"] == greedy
