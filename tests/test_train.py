"""End to end through the console scripts, as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900, **kwargs)


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_seed_article_preset_reaches_ler_0_and_decodes_both_strings(shared_data, tmp_path):
    run_dir = tmp_path / "seed"
    done = run([str(BIN / "asr-train"), "experiment=ldc93s1_seed", f"hydra.run.dir={run_dir}"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"run directory: {run_dir}" in done.stdout
    metrics = read_metrics(run_dir)
    assert [m["epoch"] for m in metrics] == list(range(1, 401))
    assert set(metrics[0]) >= {"loss", "ler", "wer", "val_loss", "val_ler", "val_wer", "epoch_seconds", "lr"}
    assert metrics[-1]["ler"] == 0.0 and metrics[-1]["val_ler"] == 0.0
    result = json.loads((run_dir / "result.json").read_text())
    assert result["test"] == {"ler": 0.0, "wer": 0.0, "utt_acc": 1.0, "n": 2}
    assert [s["hyp"] for s in result["samples"]] == [
        "she had your dark suit in greasy wash water all year",
        "dark suit in greasy",
    ]
    # the bundle alone transcribes the 44.1 kHz stereo copy of the utterance
    stereo = shared_data / "ldc93s1" / "LDC93S1_pcms16le_2_44100.wav"
    done = run([str(BIN / "asr-transcribe"), str(run_dir / "model"), str(stereo)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == f"{stereo}\tshe had your dark suit in greasy wash water all year\n"
    assert "transcribed 1 files" in done.stderr


def test_short_demo_run_trains_saves_and_transcribes(demo_run, tmp_path):
    run_dir = demo_run
    result = json.loads((run_dir / "result.json").read_text())
    assert result["test"]["n"] == 150 and 0.0 <= result["test"]["ler"] <= 1.5
    assert [m["epoch"] for m in read_metrics(run_dir)] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run_dir / "model" / "bundle.json").read_text())["sample_rate"] == 8000

    # a directory with three good files and one corrupt one
    folder = tmp_path / "audio"
    folder.mkdir()
    for line in (ROOT / "data" / "test.jsonl").read_text().splitlines()[:3]:
        source = ROOT / "data" / json.loads(line)["audio"]
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "test_99999.wav").write_bytes(b"RIFF....not really")
    done = run([str(BIN / "asr-transcribe"), str(run_dir), str(folder), "--json"])
    assert done.returncode == 1  # one file failed
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(r["audio"]).name for r in records] == sorted(p.name for p in folder.iterdir())  # input order
    assert all(set(r) == {"audio", "text", "duration_s", "seconds"} for r in records[:3])
    assert "not a readable WAV file" in records[3]["error"]
    done = run([str(BIN / "asr-transcribe"), str(run_dir), str(folder)])
    assert done.returncode == 1 and len(done.stdout.splitlines()) == 3
    assert "test_99999.wav: not a readable WAV file" in done.stderr


def test_mistyped_override_fails_naming_the_key(tmp_path):
    done = run([str(BIN / "asr-train"), "model.unitz=3", f"hydra.run.dir={tmp_path}"])
    assert done.returncode != 0
    assert "unitz" in done.stderr
    assert not (tmp_path / "metrics.jsonl").exists()


def test_missing_data_root_names_the_fix(tmp_path):
    done = run([str(BIN / "asr-train"), f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path}"])
    assert done.returncode != 0
    assert "nowhere does not exist; pass data.root=" in done.stderr


def _values(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock field."""
    return [{k: v for k, v in m.items() if k != "epoch_seconds"} for m in read_metrics(run_dir)]


@pytest.mark.slow
def test_our_ldc93s1_recipe_reaches_ler_0_fast_and_reproducibly(shared_data, tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in runs:
        done = run([str(BIN / "asr-train"), "experiment=ldc93s1", f"hydra.run.dir={run_dir}", "trainer.verbose=0"])
        assert done.returncode == 0, done.stderr[-3000:]
    metrics = read_metrics(runs[0])
    assert len(metrics) <= 100 and metrics[-1]["val_ler"] == 0.0
    assert all(m["val_ler"] > 0 for m in metrics[:-1])  # it stopped at the first epoch with LER 0
    assert _values(runs[0]) == _values(runs[1])  # same config and seed: the same numbers, bit for bit
    stereo = shared_data / "ldc93s1" / "LDC93S1_pcms16le_2_44100.wav"
    done = run([str(BIN / "asr-transcribe"), str(runs[0]), str(stereo), "--json"])
    record = json.loads(done.stdout)
    assert record["text"] == "she had your dark suit in greasy wash water all year"
    assert record["duration_s"] == pytest.approx(2.92, abs=0.01)


def test_asr_prepare_on_fsdd_lists_no_bad_files(shared_data, tmp_path):
    done = run([str(BIN / "asr-prepare"), "experiment=fsdd", f"hydra.run.dir={tmp_path}", "data.speeds=[1.0]"])
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "prepare_report.json").read_text())
    assert report["problems"] == {} and report["rejected"] == []
    assert {name: s["usable"] for name, s in report["splits"].items()} == {"train": 2026, "valid": 224, "test": 250}
    assert report["vocabulary_found"] == "efghinorstuvwxz"
    assert report["cache_misses"] == 2500 and report["cache_hits"] == 0
    assert "problems: none" in done.stdout
    again = run(
        [str(BIN / "asr-prepare"), "experiment=fsdd", f"hydra.run.dir={tmp_path / 'again'}", "data.speeds=[1.0]"]
    )
    report = json.loads((tmp_path / "again" / "prepare_report.json").read_text())
    assert again.returncode == 0 and report["cache_hits"] == 2500 and report["cache_misses"] == 0
