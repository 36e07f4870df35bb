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


def test_stdin_pcm_streams_to_the_transcript_of_the_file(tmp_path):
    bundle = _bundle()
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    samples = load_audio(WAV, 8000)
    stream = Stream(load_bundle(tmp_path / "model"))
    stream.feed(samples)
    stream.finish()
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    command = [sys.executable, "-m", "asr.cli.transcribe", str(tmp_path / "model"), "-", "--stream"]
    done = subprocess.run([*command, "--chunk-ms", "160"], input=pcm, capture_output=True)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert all("partial" in line for line in lines[:-1]) and lines[-1]["audio"] == "-"
    # 16-bit PCM rounds the samples: the transcript is the file's
    assert lines[-1]["final"] == stream.text()


def test_stdin_without_stream_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        transcribe_main([str(tmp_path), "-"])
    assert e.value.code == 2 and "AUDIO '-' (raw PCM on stdin) needs --stream" in capsys.readouterr().err


def test_a_bidirectional_model_is_refused_in_one_line(tmp_path, capsys):
    bundle = _bundle(bidirectional=True)
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    assert transcribe_main([str(tmp_path / "model"), str(WAV), "--stream"]) == 2
    err = capsys.readouterr().err
    assert "--stream needs a unidirectional model, this one is bidirectional" in err
    assert "experiment=demo_streaming" in err and len(err.strip().splitlines()) == 1


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
    bundle = _bundle(bidirectional=True)
    save_bundle(tmp_path / "model", bundle.model, bundle.features, bundle.vocab, bundle.cmvn)
    command = [sys.executable, "-m", "asr.cli.transcribe", str(tmp_path / "model"), str(WAV), "--stream"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    # TensorFlow's start-up lines (absl's "All log messages before absl::InitializeLog()", oneDNN's) are not shown
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "asr-transcribe: error: --stream needs a unidirectional model, this one is bidirectional; train one with "
        "experiment=demo_streaming or speech_streaming (model.bidirectional=false)"
    ]
