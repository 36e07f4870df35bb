"""asr-export: a SavedModel that a plain TensorFlow process (no `asr`) uses to transcribe waveforms."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from asr.cli.export import main as export_main

BIN = Path(sys.executable).parent

# What README shows: load with plain TensorFlow, feed float32 waveforms and their lengths.
PLAIN_TF = """
import json, sys
import numpy as np, tensorflow as tf
from scipy.io import wavfile
model = tf.saved_model.load(sys.argv[1])
waves = [wavfile.read(p)[1].astype(np.float32) / 32768 for p in sys.argv[2:]]
batch = np.zeros((len(waves), max(map(len, waves))), np.float32)
for i, w in enumerate(waves):
    batch[i, : len(w)] = w
out = model.serve(batch, np.array([len(w) for w in waves], np.int32))
assert "asr" not in sys.modules
print(json.dumps([t.decode() for t in out["transcripts"].numpy()]))
"""


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.mark.slow  # the demo_run fixture trains a model
def test_exported_model_transcribes_like_asr_transcribe(demo_run, tmp_path):
    out_dir = tmp_path / "saved"
    done = subprocess.run(
        [str(BIN / "asr-export"), str(demo_run), str(out_dir)], capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:40]]
    files = [str(ROOT / "data" / m["audio"]) for m in manifest]
    done = subprocess.run(
        [str(BIN / "asr-transcribe"), str(demo_run), *files, "--json"], capture_output=True, text=True, env=_env()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    expected = [json.loads(line)["text"] for line in done.stdout.splitlines()]
    # a fresh interpreter that never imports asr (cwd outside the repo, no asr on the path)
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_TF, str(out_dir), *files],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**_env(), "PYTHONPATH": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == expected
    assert sum(bool(t) for t in expected) > 30  # the model says something: the comparison means something


@pytest.mark.slow  # the demo_run fixture trains a model
def test_export_refuses_a_non_bundle_and_an_existing_target(demo_run, tmp_path, capsys):
    assert export_main([str(tmp_path), str(tmp_path / "x")]) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert export_main([str(demo_run), str(tmp_path)]) == 2  # exists: nothing is overwritten
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow  # writes a SavedModel
def test_the_export_of_a_model_with_global_statistics_normalizes_as_the_bundle_does(tmp_path):
    import numpy as np
    import tensorflow as tf

    from asr.data.audio import load_audio
    from asr.data.features import FeatureOptions
    from asr.data.text import Vocabulary
    from asr.inference.bundle import load_bundle, save_bundle
    from asr.model.ctc import CTCModel
    from asr.model.options import ModelOptions

    features, vocab = FeatureOptions(sample_rate=8000, deltas=1, normalize="global"), Vocabulary()
    model = CTCModel(features.num_features, vocab.characters, ModelOptions(num_layers=1, units=16, stride=2), seed=2)
    model.build_for()
    rng = np.random.default_rng(0)
    cmvn = (rng.normal(size=features.num_features).astype(np.float32), np.full(features.num_features, 3.0, np.float32))
    save_bundle(tmp_path / "model", model, features, vocab, cmvn)
    assert export_main([str(tmp_path / "model"), str(tmp_path / "saved")]) == 0
    bundle = load_bundle(tmp_path / "model")
    wave = load_audio(ROOT / "data" / "wav" / "test" / "test_00001.wav", 8000)
    feats = bundle.featurize(wave)  # MFCC, then the training split's mean and deviation
    expected = bundle.model({"features": feats[None], "lengths": np.array([len(feats)])}).numpy()[0]
    saved = tf.saved_model.load(str(tmp_path / "saved"))
    out = saved.serve(wave[None], np.array([len(wave)], np.int32))
    np.testing.assert_allclose(out["logits"].numpy()[0], expected, atol=2e-3)


def _tiny_bundle(directory: Path, normalize: str, **model: object) -> Path:
    """A saved bundle of an untrained one-layer model (8 kHz MFCC with deltas) with the given settings."""
    import numpy as np

    from asr.data.features import FeatureOptions
    from asr.data.text import Vocabulary
    from asr.inference.bundle import save_bundle
    from asr.model.ctc import CTCModel
    from asr.model.options import ModelOptions

    features, vocab = FeatureOptions(sample_rate=8000, deltas=1, normalize=normalize), Vocabulary()
    options = ModelOptions(num_layers=1, units=8, stride=2, **model)
    network = CTCModel(features.num_features, vocab.characters, options, seed=0)
    network.build_for()
    ones = np.ones(features.num_features, np.float32)
    cmvn = (0 * ones, ones) if normalize in ("global", "both") else None
    return save_bundle(directory / "model", network, features, vocab, cmvn)


@pytest.mark.parametrize(
    ("normalize", "model", "message"),
    [
        ("global", {"bidirectional": True}, "this one is bidirectional"),
        ("utterance", {"bidirectional": False}, "features.normalize=utterance"),
    ],
)
def test_the_streaming_step_export_refuses_a_model_that_cannot_stream_before_converting(
    normalize, model, message, tmp_path, capsys, monkeypatch
):
    from asr.model.ctc import CTCModel

    def never(model):
        raise AssertionError("the step function of a model that cannot stream was built")

    monkeypatch.setattr(CTCModel, "step_function", never)
    bundle = _tiny_bundle(tmp_path, normalize, **model)
    out = tmp_path / "step.tflite"
    assert export_main([str(bundle), str(out), "--tflite", "--stream"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("asr-export: error: --stream") and message in err and len(err.strip().splitlines()) == 1
    assert "experiment=demo_streaming" in err  # the fix
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.slow  # converts to TFLite
@pytest.mark.parametrize(
    ("flags", "kind"),
    [
        ([], "float32"),
        (["--dynamic-range"], "int8 weights, float32 activations"),
        (["--stream"], "streaming step function, float32"),
    ],
)
def test_the_tflite_export_says_what_it_wrote(flags, kind, tmp_path, capsys):
    bundle = _tiny_bundle(tmp_path, "global", bidirectional=False)
    out = tmp_path / "m.tflite"
    assert export_main([str(bundle), str(out), "--tflite", *flags]) == 0
    size = out.stat().st_size / 1e6
    assert capsys.readouterr().out == f"TFLite ({kind}) written to {out} ({size:.2f} MB) with m.json\n"


@pytest.mark.slow  # writes SavedModels
def test_the_savedmodel_has_a_step_function_only_for_a_model_that_can_stream(tmp_path):
    import tensorflow as tf

    for normalize, streams in (("global", True), ("utterance", False)):
        bundle = _tiny_bundle(tmp_path / normalize, normalize, bidirectional=False)
        assert export_main([str(bundle), str(tmp_path / normalize / "saved")]) == 0
        saved = tf.saved_model.load(str(tmp_path / normalize / "saved"))
        assert hasattr(saved, "serve") and hasattr(saved, "step") == streams, normalize
        spec = json.loads((tmp_path / normalize / "saved" / "model.json").read_text())
        max_seconds = json.loads((bundle / "bundle.json").read_text())["max_seconds"]
        assert spec["serve"]["max_seconds"] == max_seconds and spec["step"] == streams
        assert spec["sample_rate"] == 8000 and not spec["serve"]["cuts_long_recordings"]
