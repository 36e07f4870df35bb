"""Shipped models (asr.models): found by name (trainer.init_from=base, asr-transcribe base), written from a run
with float16 weights that load back into float32 and transcribe as the run's bundle does (scripts/ship_base.py)."""

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, tiny_bundle

import asr.models
from asr.models import ModelNotFoundError, ShipError, resolve_model, ship_model, shipped_models

SHIP = ROOT / "scripts" / "ship_base.py"
FIX = "pass a run"


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty models/ folder standing in for the repository's."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setattr(asr.models, "MODELS_DIR", folder)
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished-looking run directory: the bundle of a tiny untrained model, result.json, provenance.json."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    tiny_bundle(run / "model", num_layers=2)
    (run / "result.json").write_text(json.dumps({"test": {"ler": 0.25}}))
    (run / "provenance.json").write_text(json.dumps({"command": ["asr-train", "experiment=base"]}))
    return run


def test_an_existing_path_wins_and_a_bare_name_finds_its_shipped_model(models_dir, tmp_path, monkeypatch):
    (models_dir / "base").mkdir()
    (models_dir / "tiny").mkdir()
    (models_dir / ".base.123.tmp").mkdir()  # a ship in progress is no model
    assert shipped_models() == ["base", "tiny"]
    assert resolve_model("base") == models_dir / "base"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()  # a folder of that name where the command runs is what the user means
    assert resolve_model("base") == Path("base")
    assert resolve_model(str(models_dir / "tiny")) == models_dir / "tiny"


def test_an_unknown_name_lists_the_shipped_ones_and_a_missing_path_is_named_alone(models_dir):
    (models_dir / "base").mkdir()
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model("bsae", FIX)
    assert str(raised.value) == f"bsae: no such file or directory, nor a shipped model (shipped models: base); {FIX}"
    with pytest.raises(ModelNotFoundError) as raised:
        resolve_model("runs/nowhere", FIX)  # a path: the shipped names are no help
    assert str(raised.value) == f"runs/nowhere: no such file or directory; {FIX}"
    (models_dir / "base").rmdir()
    with pytest.raises(ModelNotFoundError, match=f"nor a shipped model \\(no shipped models in {models_dir}\\)"):
        resolve_model("base", FIX)


def test_asr_models_loads_without_tensorflow():
    script = "import sys, asr.models, asr.cli.transcribe; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-2000:]


def test_a_shipped_model_stores_float16_weights_and_loads_them_into_float32(tiny_run, models_dir):
    from asr.inference.bundle import load_bundle

    record = ship_model(tiny_run, models_dir / "base")
    shipped = models_dir / "base"
    with h5py.File(shipped / "model.weights.h5") as copy, h5py.File(tiny_run / "model" / "model.weights.h5") as f:
        stored = {}
        copy.visititems(lambda name, item: stored.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
        original = {}
        f.visititems(lambda name, item: original.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    assert stored.keys() == original.keys() and len(stored) >= 8  # two LSTM layers and the output layer
    assert {a.dtype for a in stored.values()} == {np.dtype(np.float16)}
    assert {a.dtype for a in original.values()} == {np.dtype(np.float32)}
    spec = json.loads((shipped / "bundle.json").read_text())
    assert spec["weights_dtype"] == "float16"
    assert spec["vocabulary"] == json.loads((tiny_run / "model" / "bundle.json").read_text())["vocabulary"]
    assert json.loads((shipped / "result.json").read_text()) == {"test": {"ler": 0.25}}
    provenance = json.loads((shipped / "provenance.json").read_text())
    assert provenance["command"] == ["asr-train", "experiment=base"]
    assert provenance["shipped"]["run"] == str(tiny_run.resolve()) and provenance["shipped"]["weights"] == "float16"
    assert record["float16_bytes"] < record["bytes"]
    loaded = load_bundle(resolve_model("base"))
    reference = load_bundle(tiny_run)
    assert {w.dtype for w in loaded.model.weights} == {"float32"}
    largest = 0.0
    for mine, theirs in zip(loaded.model.get_weights(), reference.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs.astype(np.float16).astype(np.float32))
        largest = max(largest, float(np.abs(mine - theirs).max()))
    assert largest == pytest.approx(record["max_abs_change"]) and 0 < largest < 1e-3
    x = {"features": np.random.default_rng(0).normal(size=(2, 12, 26)).astype(np.float32), "lengths": np.array([12, 7])}
    np.testing.assert_allclose(loaded.model(x).numpy(), reference.model(x).numpy(), atol=5e-3)


def test_shipping_refuses_an_existing_target_an_unfinished_run_and_a_model_too_large(tiny_run, models_dir, tmp_path):
    target = models_dir / "base"
    ship_model(tiny_run, target)
    (target / "MODEL_CARD.md").write_text("the card")
    before = (target / "model.weights.h5").read_bytes()
    with pytest.raises(ShipError, match=r"base: already exists; pass --force to replace it"):
        ship_model(tiny_run, target)
    with pytest.raises(ShipError, match=r"would be 0\.\d MB, above 0\.01 MB"):
        ship_model(tiny_run, target, force=True, max_mb=0.01)
    assert (target / "model.weights.h5").read_bytes() == before  # a refused ship leaves the model as it was
    assert sorted(p.name for p in models_dir.iterdir()) == ["base"]  # and no staging folder behind
    ship_model(tiny_run, target, force=True)
    assert (target / "MODEL_CARD.md").read_text() == "the card"  # the card is the project's, not the run's
    unfinished = tmp_path / "unfinished"
    (unfinished / "model").mkdir(parents=True)
    (unfinished / "provenance.json").write_text("{}")
    with pytest.raises(ShipError, match=r"unfinished: not a finished training run \(no result.json\); finish"):
        ship_model(unfinished, models_dir / "other")


def test_ship_base_script_is_one_line_on_a_mistake(tmp_path, capsys):
    import runpy

    main = runpy.run_path(str(SHIP))["main"]  # in this process: the script as `python scripts/ship_base.py` runs it
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "base")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"ship_base.py: error: {tmp_path / 'nowhere'}: not a finished training run (no result.json, "
        f"provenance.json); finish the training first (the same asr-train command resumes it) and pass its run "
        f"directory"
    )
    assert not (tmp_path / "base").exists()


def test_init_from_a_shipped_name_reads_that_bundle_and_an_unknown_name_is_one_line(tiny_run, models_dir):
    from asr.training.transfer import SourceError, read_source

    ship_model(tiny_run, models_dir / "base")
    source = read_source("base")
    assert source.directory == models_dir / "base" and source.model.num_layers == 2
    with pytest.raises(SourceError) as raised:
        read_source("bsae")
    assert str(raised.value).startswith(
        "trainer.init_from=bsae: no such file or directory, nor a shipped model (shipped models: base); pass "
        "trainer.init_from=<a training run directory, its model/ folder, or a shipped model's name"
    )


@pytest.mark.slow
def test_the_float16_model_transcribes_as_the_run_did(demo_run, models_dir, capsys):
    from asr.cli.transcribe import main

    ship_model(demo_run, models_dir / "base")
    test = ROOT / "data" / "test.jsonl"
    outputs = {}
    for name, model in (("run", str(demo_run)), ("shipped", "base")):
        assert main([model, str(test), "--json"]) == 0
        outputs[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    texts = {name: [r["text"] for r in records] for name, records in outputs.items()}
    assert len(texts["run"]) == 150 and any(texts["run"])
    same = sum(a == b for a, b in zip(texts["run"], texts["shipped"], strict=True))
    assert same >= 147, [(a, b) for a, b in zip(texts["run"], texts["shipped"], strict=True) if a != b]
