"""asr.load -> Recognizer: one recognizer behind every door (paths, bytes, waveforms, streams, the TFLite runner).

The quick tests use tiny untrained models with hand-set output layers (a transcript known in advance); the slow
ones the demo_run fixture's trained model on recordings built from the demo corpus. Every test that builds a
TensorFlow model is marked slow (make test-fast stays under a minute)."""

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import ROOT, biased_bundle

import asr
from asr.data.audio import AudioError, load_audio
from asr.data.text import Vocabulary, error_rates
from asr.inference.results import Segment, Transcript, Word

RATE = 8000  # the rate of biased_bundle's model
WAV = ROOT / "data" / "wav" / "test" / "test_00001.wav"


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Path:
    """A bundle without a language model (max_seconds 2: longer recordings are cut)."""
    return biased_bundle(tmp_path_factory.mktemp("plain") / "model", max_seconds=2.0)


@pytest.fixture(scope="module")
def with_lm(tmp_path_factory) -> Path:
    """A bundle with a character language model of "one"."""
    return biased_bundle(tmp_path_factory.mktemp("lm") / "model", lm_texts=["one", "one one"])


def _speech() -> np.ndarray:
    """A demo utterance at 8 kHz (0.92 s)."""
    return load_audio(WAV, RATE)


def test_the_transcript_record_is_asr_transcribes_json():
    words = (Word(0.1, 0.4, "three", 0.91234), Word(0.5, 0.7, "oh", 0.5))
    cut = Transcript(
        "three oh",
        5.0,
        0.7,
        (Segment(0.0, 0.8, "three oh", 0.7, words), Segment(1.5, 2.0, "", 1.0)),
        words,
        cut=True,
        hotwords=("oh",),
    )
    assert cut.to_dict() == {
        "duration_s": 5.0,
        "text": "three oh",
        "words": [
            {"word": "three", "start": 0.1, "end": 0.4, "confidence": 0.9123},
            {"word": "oh", "start": 0.5, "end": 0.7, "confidence": 0.5},
        ],
        "confidence": 0.7,
        "chunks": [
            {"start": 0.0, "end": 0.8, "text": "three oh", "confidence": 0.7},
            {"start": 1.5, "end": 2.0, "text": "", "confidence": 1.0},
        ],
        "hotwords": ["oh"],
    }
    whole = Transcript("a", 1.0, 0.5, nbest=({"text": "a", "score": -1.0},))
    assert whole.to_dict() == {
        "duration_s": 1.0,
        "text": "a",
        "nbest": [{"text": "a", "score": -1.0}],
        "confidence": 0.5,
    }


def test_the_results_load_without_tensorflow():
    script = "import sys, asr.inference.results, asr.inference.sources; print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]


@pytest.mark.slow
def test_a_path_bytes_and_a_waveform_give_one_transcript(plain):
    recognizer = asr.load(plain, hotwords=["one"])
    by_path = recognizer.transcribe(WAV, timestamps=True)
    assert by_path.text == "one" and by_path.hotwords == ("one",)  # the hotword's bonus brings it out
    assert recognizer.transcribe(WAV.read_bytes(), timestamps=True) == by_path
    assert recognizer.transcribe(_speech(), sample_rate=RATE, timestamps=True) == by_path
    # a waveform at another rate is resampled; int16 samples are PCM
    pcm = (_speech() * 32767).astype(np.int16)
    assert recognizer.transcribe(pcm, sample_rate=RATE).text == "one"
    assert [w.word for w in by_path.words] == ["one"] and 0.0 <= by_path.words[0].start < by_path.words[0].end <= 0.92
    assert recognizer.with_options(hotwords=None).transcribe(WAV).text == ""  # greedy: the blank wins every step


@pytest.mark.slow
def test_mistakes_are_one_clear_error(plain, tmp_path):
    recognizer = asr.load(plain)
    with pytest.raises(ValueError, match="a waveform needs its sample_rate"):
        recognizer.transcribe(_speech())
    with pytest.raises(ValueError, match="must be mono"):
        recognizer.transcribe(np.zeros((100, 2), np.float32), sample_rate=RATE)
    with pytest.raises(AudioError, match="<bytes>: not a readable audio file"):
        recognizer.transcribe(b"not audio")
    with pytest.raises(AudioError, match="file not found"):
        recognizer.transcribe(tmp_path / "missing.wav")
    with pytest.raises(asr.inference.recognizer.ModelNotFoundError, match="nosuchmodel: no such file or directory"):
        asr.load("nosuchmodel")
    with pytest.raises(asr.errors.UserError, match="lm=nowhere.arpa: no such file"):
        asr.load(plain, lm="nowhere.arpa")
    with pytest.raises(asr.errors.UserError, match="characters the model cannot write"):
        asr.load(plain, hotwords=["Ünï"])
    with pytest.raises(ValueError, match="beam_width 1 decodes greedily, which cannot favour hotwords"):
        asr.load(plain, hotwords=["one"]).transcribe(WAV, beam_width=1)
    assert not hasattr(asr, "transcribe") and "asr.load(path).transcribe" in _retired_message()


def _retired_message() -> str:
    try:
        asr.transcribe  # noqa: B018
    except AttributeError as e:
        return str(e)
    return ""


@pytest.mark.slow
def test_the_language_model_is_read_when_first_used_and_lm_none_rescues_a_damaged_one(with_lm, tmp_path, caplog):
    import shutil

    recognizer = asr.load(with_lm)
    assert recognizer.transcribe(WAV).text == "one"  # the bundle's language model's bonus and its letters
    assert recognizer.transcribe(WAV, beam_width=1).text == ""  # beam width 1: greedy, no language model
    assert recognizer.with_options(lm="none").transcribe(WAV).text == ""
    damaged = tmp_path / "model"
    shutil.copytree(with_lm, damaged)
    arpa = damaged / "lm.arpa"
    arpa.write_text(arpa.read_text()[:200])  # cut off
    loaded = asr.load(damaged)  # loads: the language model is not read yet
    with pytest.raises(asr.inference.bundle.BundleError, match="lm.arpa.*pass --lm none"):
        loaded.transcribe(WAV)
    with caplog.at_level(logging.WARNING):
        rescued = asr.load(damaged, lm="none")
    assert rescued.transcribe(WAV).text == ""
    assert any(str(arpa) in r.getMessage() and "cut off" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_with_options_shares_the_loaded_model(with_lm):
    recognizer = asr.load(with_lm)
    other = recognizer.with_options(lm="none", hotwords=["one"])
    assert other.bundle is recognizer.bundle and other._shared is recognizer._shared
    assert (other.lm, recognizer.lm) == ("none", "bundle") and recognizer.hotwords is None
    info = recognizer.info()
    assert info["has_lm"] and info["sample_rate"] == RATE and info["vocabulary"] == Vocabulary().characters
    assert info["name"] == with_lm.parent.name and not info["streamable"]  # per-utterance normalization
    json.dumps(info)  # for GET /v1/models


def _tone(seconds: float) -> np.ndarray:
    """A voice-like tone (220 Hz, its loudness moving at 3 Hz) that the detector takes for speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


@pytest.mark.slow
def test_a_recording_longer_than_the_model_knows_is_cut_at_its_pauses_in_every_form(plain):
    recognizer = asr.load(plain, hotwords=["one"])
    pause = np.zeros(int(0.6 * RATE), np.float32)
    signal = np.concatenate([_tone(1.0), pause, _tone(1.0), pause, _tone(1.0)])  # 4.2 s, the model knows 2 s
    by_waveform = recognizer.transcribe(signal, sample_rate=RATE, timestamps=True)
    assert by_waveform.cut and len(by_waveform.segments) == 3
    for segment, onset in zip(by_waveform.segments, (0.0, 1.6, 3.2), strict=True):  # 0.2 s margins (the default)
        assert onset - 0.25 <= segment.start <= onset and onset + 1.0 <= segment.end <= onset + 1.25
        assert all(segment.start <= w.start < w.end <= segment.end for w in segment.words)
    buffer = io.BytesIO()
    soundfile.write(buffer, signal, RATE, format="WAV", subtype="FLOAT")
    assert recognizer.transcribe(buffer.getvalue(), timestamps=True) == by_waveform
    assert by_waveform.text == "one one one" and by_waveform.to_dict()["chunks"][1]["text"] == "one"


@pytest.mark.slow
@pytest.mark.parametrize("level_dbfs", [None, -60.0])
def test_silence_and_quiet_noise_give_no_words_whatever_the_model(plain, level_dbfs):
    recognizer = asr.load(plain, hotwords=["one"])  # it says "one" for anything it decodes
    samples = np.zeros(5 * RATE, np.float32)
    if level_dbfs is not None:
        samples = (np.random.default_rng(0).standard_normal(5 * RATE) * 10 ** (level_dbfs / 20)).astype(np.float32)
    transcript = recognizer.transcribe(samples, sample_rate=RATE, timestamps=True)
    assert transcript.text == "" and transcript.words == () and transcript.duration == 5.0
    session = recognizer.stream()
    closed = [s for begin in range(0, len(samples), 1600) for s in session.accept(samples[begin : begin + 1600]).closed]
    assert session.finish().text == "" and all(not s.text for s in closed)
    assert recognizer.transcribe(np.concatenate([samples, _tone(1.0)]), sample_rate=RATE).text == "one"


@pytest.mark.slow
def test_a_stream_closes_a_segment_at_each_pause_with_its_words_in_stream_time(plain):
    recognizer = asr.load(plain, hotwords=["one"])
    pause = np.zeros(int(0.6 * RATE), np.float32)
    signal = np.concatenate([pause, _tone(1.0), pause, _tone(1.0), pause[:800]])
    pcm = (signal * 32767).astype("<i2").tobytes()
    session = recognizer.stream()
    updates = [session.accept(pcm[begin : begin + 1601]) for begin in range(0, len(pcm), 1601)]  # odd byte counts
    closed = [s for u in updates for s in u.closed]
    assert [s.text for s in closed] == ["one"]  # the first closed once a pause followed it; the second is open
    assert 0.35 <= closed[0].start <= 0.6 and 1.6 <= closed[0].end <= 1.85  # 0.2 s margins (the default)
    assert all(closed[0].start <= w.start < w.end <= closed[0].end for w in closed[0].words)
    final = session.finish()
    assert [s.text for s in final.segments] == ["one", "one"] and final.text == "one one"
    assert 1.95 <= final.segments[1].start <= 2.2 and final.duration == pytest.approx(len(signal) / RATE)
    with pytest.raises(ValueError, match="the stream is finished"):
        session.accept(b"\0\0")
    # at another rate: resampled as it comes, to the same segments
    other = recognizer.stream(16000)
    from asr.data.audio import resample

    high = resample(signal, RATE, 16000)
    for begin in range(0, len(high), 3200):
        other.accept(high[begin : begin + 3200])
    assert [(s.text, s.start) for s in other.finish().segments] == [(s.text, s.start) for s in final.segments]


@pytest.mark.slow
def test_the_lite_model_cuts_and_reads_silence_as_the_recognizer_does(plain, tmp_path):
    from asr.inference.lite import LiteModel
    from asr.inference.tflite import export_tflite

    recognizer = asr.load(plain)
    lite = LiteModel(export_tflite(recognizer.bundle, tmp_path / "m.tflite"))
    pause = np.zeros(int(0.6 * RATE), np.float32)
    signal = np.concatenate([_tone(1.0), pause, _tone(1.0), pause, _tone(1.0)])
    mine, theirs = lite.transcribe(signal, RATE, timestamps=True), recognizer.transcribe(signal, sample_rate=RATE)
    assert [(s.start, s.end, s.text) for s in mine.segments] == [(s.start, s.end, s.text) for s in theirs.segments]
    assert mine.cut and len(mine.segments) == 3
    assert lite.transcribe(np.zeros(5 * RATE, np.float32), RATE).segments[0].text == ""


# The trained demo model (slow: the demo_run fixture trains it)


def _joined(rows: list[dict], pause_seconds: float = 0.6) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Demo test utterances joined with pauses of digital silence, and each one's span in seconds."""
    parts, spans, t = [], [], 0.0
    for row in rows:
        wave = soundfile.read(ROOT / "data" / row["audio"], dtype="float32")[0]
        parts += [wave, np.zeros(int(pause_seconds * RATE), np.float32)]
        spans.append((t, t + len(wave) / RATE))
        t += len(wave) / RATE + pause_seconds
    return np.concatenate(parts), spans


@pytest.mark.slow
def test_a_long_recording_reads_as_its_utterances_do_through_every_door(demo_run, tmp_path):
    rows = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:20]]
    signal, spans = _joined(rows)
    soundfile.write(tmp_path / "long.wav", signal, RATE, subtype="FLOAT")
    recognizer = asr.load(demo_run)
    assert recognizer.bundle.max_seconds < len(signal) / RATE
    alone = [t.text for t in recognizer.transcribe_many([ROOT / "data" / r["audio"] for r in rows])]
    whole = recognizer.transcribe(tmp_path / "long.wav", timestamps=True)
    assert len(whole.segments) == 20  # one piece per utterance, holding it whole (a soft onset's margin aside)
    for (start, end), segment in zip(spans, whole.segments, strict=True):
        assert start - 0.1 <= segment.start <= start + 0.1 and end - 0.1 <= segment.end <= end + 0.1
    assert recognizer.transcribe(signal, sample_rate=RATE, timestamps=True) == whole
    assert recognizer.transcribe((tmp_path / "long.wav").read_bytes(), timestamps=True) == whole
    # nearly as accurate as the files one by one: 3.4 CER points worse on this fixture's weak model (6 epochs, 47 %
    # file by file); the demo model's long file reads exactly as its files do (asr-bench recognizer)
    refs = " ".join(r["text"] for r in rows)
    assert error_rates([refs], [whole.text])["ler"] <= error_rates([refs], [" ".join(alone)])["ler"] + 0.05
    # streamed in 200 ms chunks: the same segments, decoded alike
    session = recognizer.stream()
    for begin in range(0, len(signal), 1600):
        session.accept(signal[begin : begin + 1600])
    streamed = session.finish()
    assert [(s.start, s.end, s.text) for s in streamed.segments] == [(s.start, s.end, s.text) for s in whole.segments]
    assert [w.word for w in streamed.words] == whole.text.split()


@pytest.mark.slow
def test_silence_gives_no_words_from_the_trained_model(demo_run):
    recognizer = asr.load(demo_run)
    noise = (np.random.default_rng(0).standard_normal(5 * RATE) * 10 ** (-60 / 20)).astype(np.float32)
    for samples in (np.zeros(5 * RATE, np.float32), noise):
        assert recognizer.transcribe(samples, sample_rate=RATE).text == ""
