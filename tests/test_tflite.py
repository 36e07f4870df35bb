"""asr-export --tflite and the LiteRT runner, on the model of the demo_run fixture."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from asr.cli.export import main as export_main
from asr.cli.transcribe import main as transcribe_main
from asr.data.text import error_rates

pytestmark = pytest.mark.slow  # the demo_run fixture trains a model

FILES = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:12]]

# Run in a fresh interpreter: transcripts of the .tflite file, and whether TensorFlow got imported.
RUNNER = """
import json, sys
from asr.inference.lite import LiteModel
from asr.data.audio import load_audio
model = LiteModel(sys.argv[1])
rate = model.features.sample_rate
texts = [model.transcribe(load_audio(p, rate), rate).text for p in sys.argv[2:]]
print(json.dumps({"texts": texts, "tensorflow": "tensorflow" in sys.modules}))
"""


def _lite(path, audio):
    done = subprocess.run([sys.executable, "-c", RUNNER, str(path), *audio], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_float32_tflite_transcribes_as_the_keras_model_without_tensorflow(demo_run, tmp_path, capsys):
    audio = [str(ROOT / "data" / row["audio"]) for row in FILES]
    assert export_main([str(demo_run), str(tmp_path / "m.tflite"), "--tflite"]) == 0
    spec = json.loads((tmp_path / "m.json").read_text())
    assert spec["quantization"] == "none" and spec["input"]["shape"][0] == 1 and spec["blank_index"] == 28
    capsys.readouterr()
    assert transcribe_main([str(demo_run), *audio, "--json", "--lm", "none"]) == 0
    keras = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
    lite = _lite(tmp_path / "m.tflite", audio)
    assert lite["texts"] == keras and not lite["tensorflow"]


def test_int8_tflite_runs_and_stays_close_to_the_keras_model(demo_run, tmp_path, capsys):
    audio = [str(ROOT / "data" / row["audio"]) for row in FILES]
    refs = [row["text"] for row in FILES]
    assert export_main([str(demo_run), str(tmp_path / "q.tflite"), "--tflite", "--int8"]) == 0
    assert json.loads((tmp_path / "q.json").read_text())["quantization"] == "int8"
    assert (tmp_path / "q.tflite").stat().st_size < 0.5 * (demo_run / "model" / "model.weights.h5").stat().st_size
    capsys.readouterr()
    assert transcribe_main([str(demo_run), *audio, "--json", "--lm", "none"]) == 0
    keras = [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()]
    quantized = _lite(tmp_path / "q.tflite", audio)["texts"]
    assert error_rates(refs, quantized)["ler"] <= error_rates(refs, keras)["ler"] + 0.05  # within 5 CER points


def test_export_mistakes_are_one_line_each(demo_run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        export_main([str(demo_run), str(tmp_path / "q.tflite"), "--int8"])
    assert (
        e.value.code == 2
        and "--int8 and --dynamic-range quantize a TFLite file: add --tflite" in capsys.readouterr().err
    )
    with pytest.raises(SystemExit) as e:
        export_main([str(demo_run), str(tmp_path / "out"), "--tflite"])
    assert e.value.code == 2 and "name it <name>.tflite" in capsys.readouterr().err
    (tmp_path / "taken.json").write_text("{}")
    assert export_main([str(demo_run), str(tmp_path / "taken.tflite"), "--tflite"]) == 2
    err = capsys.readouterr().err
    assert "already exists; choose a new name (nothing is overwritten)" in err and len(err.strip().splitlines()) == 1
