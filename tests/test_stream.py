"""Streaming recognition: the stream of a file gives the whole file's logits and transcript."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT

from asr.cli.transcribe import main as transcribe_main
from asr.data.audio import load_audio
from asr.data.features import FeatureOptions
from asr.data.text import Vocabulary
from asr.inference.bundle import Bundle, load_bundle, save_bundle
from asr.inference.stream import Stream
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions

pytestmark = pytest.mark.slow  # TensorFlow models

WAV = ROOT / "data" / "wav" / "test" / "test_00001.wav"  # 8 kHz


def _bundle(bidirectional: bool = False, lookahead: int = 0) -> Bundle:
    """An untrained model over MFCC + deltas + delta-deltas, 3 frames a step, global statistics."""
    features = FeatureOptions(sample_rate=8000, deltas=2, normalize="global")
    vocab = Vocabulary()
    options = ModelOptions(num_layers=2, units=16, bidirectional=bidirectional, stride=3, lookahead=lookahead)
    model = CTCModel(features.num_features, vocab.characters, options, seed=1)
    model.build_for()
    rng = np.random.default_rng(0)
    cmvn = (rng.normal(size=features.num_features).astype(np.float32), np.full(features.num_features, 2.0, np.float32))
    return Bundle(model, features, vocab, cmvn)


@pytest.mark.parametrize(("chunk_ms", "lookahead"), [(160, 0), (37, 0), (5000, 0), (160, 2), (37, 3)])
def test_a_stream_in_chunks_gives_the_whole_files_logits(chunk_ms, lookahead):
    bundle = _bundle(lookahead=lookahead)
    samples = load_audio(WAV, 8000)
    feats = bundle.featurize(samples)
    whole = bundle.model({"features": feats[None], "lengths": np.array([len(feats)])}).numpy()[0]
    stream = Stream(bundle)
    chunk = 8000 * chunk_ms // 1000
    for begin in range(0, len(samples), chunk):
        stream.feed(samples[begin : begin + chunk])
        assert len(stream.all_logits()) <= len(whole)  # partial results never run ahead of the audio
    np.testing.assert_allclose(stream.finish(), whole, atol=1e-5)


def _stream_cli(args: list[str], pcm: bytes = b"") -> tuple[int, list[dict], str]:
    """`asr-transcribe ... --stream --json` in a subprocess: exit status, its JSON lines, stderr."""
    command = [sys.executable, "-m", "asr.cli.transcribe", *args, "--stream", "--json"]
    done = subprocess.run(command, input=pcm, capture_output=True)
    return done.returncode, [json.loads(line) for line in done.stdout.decode().splitlines()], done.stderr.decode()


def test_stdin_pcm_streams_to_the_segments_of_the_whole_file(demo_run, tmp_path):
    import soundfile

    import asr

    rows = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:4]]
    pause = np.zeros(int(0.6 * 8000), np.float32)
    parts = [p for row in rows for p in (load_audio(ROOT / "data" / row["audio"], 8000), pause)]
    samples = np.concatenate(parts)
    soundfile.write(tmp_path / "long.wav", samples, 8000, subtype="PCM_16")
    recognizer = asr.load(demo_run)  # a bidirectional model: streams segment by segment like any other
    whole = recognizer.transcribe(tmp_path / "long.wav")
    alone = [segment.text for segment in whole.segments]
    assert len(alone) == 4  # the file is longer than the model's longest training utterance: cut at its pauses
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    code, lines, err = _stream_cli([str(demo_run), "-", "--chunk-ms", "160", "--timestamps"], pcm)
    assert code == 0, err[-2000:]
    finals = [line for line in lines if "final" in line]
    assert [f["final"] for f in finals] == alone  # one segment per utterance, each read as the file's piece is
    assert all(f["audio"] == "-" and f["words"] and f["start"] < f["end"] for f in finals)
    assert all(a["end"] <= b["start"] for a, b in zip(finals, finals[1:], strict=False))
    end = lines[-1]
    assert end["audio"] == "-" and end["text"] == " ".join(t for t in alone if t) == whole.text
    assert [w["word"] for w in end["words"]] == end["text"].split() and end["duration_s"] == pytest.approx(
        len(samples) / 8000, abs=0.001
    )
    assert all("partial" in line for line in lines if "final" not in line and line is not end)


def test_stream_edge_cases_each_end_in_a_record(tmp_path):
    bundle = _bundle()
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    model = str(tmp_path / "model")
    code, lines, err = _stream_cli([model, "-"])  # empty stdin
    assert code == 0 and lines == [
        {"audio": "-", "duration_s": 0.0, "text": "", "confidence": 1.0, "seconds": lines[0]["seconds"]}
    ]
    code, lines, _ = _stream_cli([model, "-"], np.zeros(8000, "<i2").tobytes())  # a second of zeros
    assert code == 0 and lines[-1]["text"] == "" and lines[-1]["duration_s"] == 1.0
    assert not any(line.get("final") or line.get("partial") for line in lines)  # no words out of silence
    # an unreadable file in a list: its error record, and the others go on; a folder is its audio files
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "a.wav").write_bytes(WAV.read_bytes())
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    code, lines, err = _stream_cli([model, str(tmp_path / "bad.wav"), str(tmp_path / "audio")])
    ends = [line for line in lines if "error" in line or "text" in line]
    assert code == 1 and [e["audio"] for e in ends] == [str(tmp_path / "bad.wav"), str(tmp_path / "audio" / "a.wav")]
    assert "not a readable audio file" in ends[0]["error"] and ends[1]["duration_s"] == pytest.approx(0.92, abs=0.01)
    assert "streamed 1 file" in err and "1 failed" in err


def test_options_that_cannot_work_with_a_stream_are_refused_in_one_line(tmp_path, capsys):
    for extra, message in [
        (["--n-best", "2"], "--n-best does not work with --stream"),
        (["--batch-size", "4"], "--batch-size does not work with --stream"),
    ]:
        with pytest.raises(SystemExit) as e:
            transcribe_main([str(tmp_path), str(WAV), "--stream", "--json", *extra])
        assert e.value.code == 2 and message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        transcribe_main([str(tmp_path), str(WAV), "--chunk-ms", "100"])
    assert e.value.code == 2 and "--chunk-ms sets the chunks of --stream: add --stream" in capsys.readouterr().err


def test_stdin_without_stream_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        transcribe_main([str(tmp_path), "-"])
    assert e.value.code == 2 and "AUDIO '-' (raw PCM on stdin) needs --stream" in capsys.readouterr().err


def test_a_pause_after_words_closes_a_segment():
    bundle = _bundle()
    stream = Stream(bundle)
    blank, classes = bundle.vocab.blank_index, bundle.vocab.num_classes
    letter = {c: i for i, c in enumerate(bundle.vocab.characters)}

    def steps(path: str) -> list:  # one-hot logits per step, "_" a blank
        return [np.eye(classes)[blank if c == "_" else letter[c]] * 5.0 for c in path]

    quiet = "_" * 20  # 20 steps of 30 ms (3 frames of 10 ms): SEGMENT_PAUSE_SECONDS
    stream._record(np.array(steps("h_i" + "_" * 3)))
    assert stream.close_segment() is None and stream.segment() == "hi"  # a short gap inside speech stays open
    stream._record(np.array(steps(quiet)))
    assert stream.close_segment() == "hi" and stream.segment() == ""
    assert stream.close_segment() is None  # nothing new to close
    stream._record(np.array(steps("y_o" + quiet)))
    assert stream.close_segment() == "yo"


def _stacked(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """The file's stacked steps [S, F * stride] (zero-padded as the model pads) and its whole-file logits."""
    feats = bundle.featurize(load_audio(WAV, 8000))
    whole = bundle.model({"features": feats[None], "lengths": np.array([len(feats)])}).numpy()[0]
    stride = bundle.model.stride
    padded = np.concatenate([feats, np.zeros(((-len(feats)) % stride, feats.shape[1]), np.float32)])
    return padded.reshape(-1, feats.shape[1] * stride), whole


def test_the_tflite_and_savedmodel_step_functions_stream_to_the_whole_files_logits(tmp_path, capsys):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from asr.cli.export import main as export_main

    bundle = _bundle()
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    assert export_main([str(tmp_path / "model"), str(tmp_path / "s.tflite"), "--tflite", "--stream"]) == 0
    assert export_main([str(tmp_path / "model"), str(tmp_path / "saved")]) == 0
    steps, whole = _stacked(load_bundle(tmp_path / "model"))
    lite, saved = Interpreter(model_path=str(tmp_path / "s.tflite")), tf.saved_model.load(str(tmp_path / "saved"))
    lite_states = saved_states = np.zeros((2, 2, 16), np.float32)
    lite_out, saved_out = [], []
    for begin in range(0, len(steps), 7):  # 7 steps (210 ms) at a time
        chunk = steps[begin : begin + 7]
        inputs = {d["name"]: d["index"] for d in lite.get_input_details()}
        lite.resize_tensor_input(inputs["steps"], chunk.shape)
        lite.resize_tensor_input(inputs["states"], lite_states.shape)
        lite.allocate_tensors()
        lite.set_tensor(inputs["steps"], chunk)
        lite.set_tensor(inputs["states"], lite_states)
        lite.invoke()
        outputs = [lite.get_tensor(d["index"]) for d in lite.get_output_details()]
        lite_out.append(next(o for o in outputs if o.ndim == 2))
        lite_states = next(o for o in outputs if o.ndim == 3)
        logits, saved_states = saved.step(tf.constant(chunk), tf.constant(saved_states))
        saved_out.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(lite_out), whole, atol=1e-5)
    np.testing.assert_allclose(np.concatenate(saved_out), whole, atol=1e-5)
    # a bidirectional model has no step function: refused in one line
    other = _bundle(bidirectional=True)
    save_bundle(tmp_path / "bi", other.model, other.features, other.vocab, other.cmvn)
    capsys.readouterr()
    assert export_main([str(tmp_path / "bi"), str(tmp_path / "b.tflite"), "--tflite", "--stream"]) == 2
    err = capsys.readouterr().err
    assert "needs a unidirectional model" in err and len(err.strip().splitlines()) == 1


def test_the_step_function_of_a_lookahead_model_streams_to_the_whole_files_logits(tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from asr.cli.export import main as export_main

    k = 2
    bundle = _bundle(lookahead=k)
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    assert export_main([str(tmp_path / "model"), str(tmp_path / "s.tflite"), "--tflite", "--stream"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["delay_steps"] == k
    steps, whole = _stacked(load_bundle(tmp_path / "model"))
    lite = Interpreter(model_path=str(tmp_path / "s.tflite"))
    inputs = {d["name"]: d["index"] for d in lite.get_input_details()}
    states, tail, out = np.zeros((2, 2, 16), np.float32), np.zeros((k, 16), np.float32), []
    chunks = [steps[begin : begin + 7] for begin in range(0, len(steps), 7)] + [steps[:0]]  # then an empty flush
    for index, chunk in enumerate(chunks):
        final = np.float32(index == len(chunks) - 1)
        lite.resize_tensor_input(inputs["steps"], chunk.shape)
        lite.allocate_tensors()
        for name, value in [("steps", chunk), ("states", states), ("tail", tail), ("final", final)]:
            lite.set_tensor(inputs[name], value)
        lite.invoke()
        by_shape = {o.shape[1:]: o for o in (lite.get_tensor(d["index"]) for d in lite.get_output_details())}
        out.append(by_shape[(whole.shape[1],)])
        states, tail = by_shape[(2, 16)], by_shape[(16,)]
    np.testing.assert_allclose(np.concatenate(out)[k:], whole, atol=1e-5)  # the first k rows precede the stream
    assert export_main([str(tmp_path / "model"), str(tmp_path / "saved")]) == 0
    saved = tf.saved_model.load(str(tmp_path / "saved"))
    logits, _, _ = saved.step(tf.constant(steps), tf.zeros((2, 2, 16)), tf.zeros((k, 16)), tf.constant(1.0))
    np.testing.assert_allclose(logits.numpy()[k:], whole, atol=1e-5)


def test_a_users_mistake_after_tensorflow_loaded_is_one_line_on_stderr(tmp_path):
    bundle = _bundle()
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    weights = tmp_path / "model" / "model.weights.h5"
    weights.write_bytes(weights.read_bytes()[:100])  # cut off: found when the model loads, after TensorFlow
    command = [sys.executable, "-m", "asr.cli.transcribe", str(tmp_path / "model"), str(WAV), "--stream"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    # TensorFlow's start-up lines (absl's "All log messages before absl::InitializeLog()", oneDNN's) are not shown
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"asr-transcribe: error: {weights}: cannot load the weights")
    assert done.stderr.rstrip().endswith("re-export the model")
