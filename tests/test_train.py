"""End to end through the console scripts, as a user runs them."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asr.config import Config, OptimizerConfig, TrainerConfig
from asr.model.ctc import CTCModel
from asr.training.loop import (
    RunMonitor,
    TrainingDiverged,
    best_epoch,
    build_optimizer,
    config_sha256,
    epochs_without_improvement,
)

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


SHORT = [
    "trainer.epochs=3",
    "trainer.batch_size=8",
    "model.num_layers=1",
    "model.units=48",
    "data.speeds=[1.0,0.9]",
    "trainer.verbose=0",
]  # the demo recipe (masks, dropout, speed draws) made small: a few seconds per epoch


def _train(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    done = run([str(BIN / "asr-train"), f"hydra.run.dir={run_dir}", *SHORT, *overrides])
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_run_killed_mid_epoch_resumes_to_the_same_numbers_bit_for_bit(tmp_path):
    reference = tmp_path / "reference"
    _train(reference)
    assert [m["epoch"] for m in read_metrics(reference)] == [1, 2, 3]

    # the same command, killed with SIGKILL as soon as epoch 1's checkpoint exists (during epoch 2)
    killed = tmp_path / "killed"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [str(BIN / "asr-train"), f"hydra.run.dir={killed}", *SHORT]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = killed / "checkpoints" / "epoch-0001.npz"
    deadline = time.monotonic() + 600
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists() and not (killed / "checkpoints" / "epoch-0002.npz").exists()
    assert not (killed / "result.json").exists()

    done = _train(killed)  # same command, same directory: resumes (trainer.resume=auto)
    result = json.loads((killed / "result.json").read_text())
    assert result["resumed_from_epoch"] == 1
    assert _values(killed) == _values(reference)  # every loss/ler/wer value, bit for bit
    assert result["test"] == json.loads((reference / "result.json").read_text())["test"]
    assert "run directory" in done.stdout
    provenance = json.loads((killed / "provenance.json").read_text())
    assert len(provenance["previous"]) == 1 and provenance["previous"][0]["ended"] is None

    # a different seed gives different numbers
    other = tmp_path / "other_seed"
    _train(other, "seed=1")
    assert _values(other) != _values(reference)


def test_resume_never_moves_the_old_run_aside_and_a_changed_config_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    _train(run_dir, "trainer.epochs=1")
    old = (run_dir / "metrics.jsonl").read_text()
    done = run([str(BIN / "asr-train"), f"hydra.run.dir={run_dir}", *SHORT, "trainer.epochs=1", "optimizer.lr=0.01"])
    assert done.returncode != 0
    assert "holds a run with other settings" in done.stderr and "trainer.resume=never" in done.stderr
    _train(run_dir, "trainer.epochs=1", "optimizer.lr=0.01", "trainer.resume=never")
    (previous,) = run_dir.glob("previous-*")
    assert (previous / "metrics.jsonl").read_text() == old  # kept, not overwritten
    assert {"checkpoints", "model", "result.json", "provenance.json"} <= {p.name for p in previous.iterdir()}
    assert (run_dir / "metrics.jsonl").read_text() != old


def test_run_directory_holds_provenance_tensorboard_and_curves(demo_run):
    provenance = json.loads((demo_run / "provenance.json").read_text())
    assert provenance["command"][0] == "asr-train" and "trainer.epochs=6" in provenance["overrides"]
    assert len(provenance["git"]["commit"] or "x" * 40) == 40
    assert provenance["versions"]["keras"].startswith("3.")
    assert provenance["dataset_sha256"] == json.loads((demo_run / "prepare_report.json").read_text())["dataset_sha256"]
    assert provenance["started"] <= provenance["ended"]
    assert (demo_run / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((demo_run / "status.json").read_text())["status"] == "completed"

    import tensorflow as tf

    tags = {}
    for split in ("train", "validation"):
        for events in (demo_run / "tb" / split).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(events)):
                for value in event.summary.value:
                    tags.setdefault(split, set()).add(value.tag)
    assert {"loss", "ler", "wer", "lr"} <= tags["train"]
    assert {"loss", "ler", "wer", "samples"} <= tags["validation"]


def _monitor(tmp_path: Path, trainer: TrainerConfig, optimizer: OptimizerConfig) -> RunMonitor:
    model = CTCModel(num_features=4, characters="ab ", num_layers=1, units=4)
    model.compile(optimizer=build_optimizer(optimizer, 10, 10))
    model.build_for()
    state = {"epoch": 0, "records": [], "stopped": False, "plateau_wait": 0, "train_seconds": 0.0}
    monitor = RunMonitor(tmp_path, trainer, optimizer, state, [0.1] * 10, None)
    monitor.set_model(model)
    monitor.on_train_begin()
    return monitor


def _epoch(monitor: RunMonitor, epoch: int, val_ler: float, loss: float = 1.0) -> None:
    monitor.on_epoch_begin(epoch)
    logs = {"loss": loss, "ler": 0.5, "wer": 0.5, "val_loss": loss, "val_ler": val_ler, "val_wer": 0.5}
    monitor.on_epoch_end(epoch, logs)


def test_reduce_on_plateau_and_early_stopping_follow_the_validation_ler(tmp_path):
    optimizer = OptimizerConfig(lr=0.01, schedule="plateau", plateau_factor=0.5, plateau_patience=2, min_lr=0.003)
    monitor = _monitor(tmp_path, TrainerConfig(patience=4, keep_best=True), optimizer)
    lrs = []
    for epoch, ler in enumerate([0.9, 0.5, 0.6, 0.5, 0.7, 0.4, 0.6, 0.6, 0.6, 0.6]):
        if monitor.model.stop_training:
            break
        _epoch(monitor, epoch, ler)
        lrs.append(round(float(monitor.model.optimizer.learning_rate.numpy()), 6))
    # flat for 2 epochs -> halved (after epochs 4 and 8); never below min_lr; a new best resets the count
    assert lrs == [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.003, 0.003, 0.003][: len(lrs)]
    assert len(lrs) == 10 and monitor.state["stopped"]  # epochs 7-10 without a lower LER: patience 4
    assert best_epoch(monitor.records) == (6, 0.4)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_ler"] for line in lines][-1] == 0.6 and len(lines) == 10
    assert (tmp_path / "checkpoints" / "epoch-0010.npz").is_file() and (tmp_path / "learning_curves.png").is_file()


def test_a_nan_loss_stops_the_run_with_a_clear_error(tmp_path):
    monitor = _monitor(tmp_path, TrainerConfig(), OptimizerConfig())
    _epoch(monitor, 0, 0.9)
    with pytest.raises(TrainingDiverged, match="epoch 2: the training loss is nan; lower optimizer.lr"):
        _epoch(monitor, 1, 0.9, loss=float("nan"))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_best_epoch_breaks_ler_ties_by_loss_and_patience_counts_from_the_lowest_ler():
    records = [
        {"epoch": 1, "ler": 0.2, "loss": 3.0, "val_ler": 0.1, "val_loss": 2.0},
        {"epoch": 2, "ler": 0.1, "loss": 2.0, "val_ler": 0.1, "val_loss": 1.5},
        {"epoch": 3, "ler": 0.1, "loss": 1.0, "val_ler": 0.2, "val_loss": 1.0},
    ]
    assert best_epoch(records) == (2, 0.1)
    assert epochs_without_improvement(records) == 2
    assert best_epoch([{"epoch": 1, "ler": 0.3, "loss": 1.0}]) == (1, 0.3)  # no validation split


def test_settings_that_do_not_change_the_numbers_do_not_block_a_resume():
    a, b = Config(), Config()
    b.trainer.resume, b.trainer.verbose, b.data.workers, b.trainer.threads = "never", 0, 4, 1
    assert config_sha256(a) == config_sha256(b)
    b.optimizer.lr *= 2
    assert config_sha256(a) != config_sha256(b)


def test_determinism_can_be_traded_for_speed_within_one_process():
    from tensorflow.python.framework import config as tf_config

    from asr.training.loop import set_determinism

    set_determinism(0, True, 0)
    assert tf_config.is_op_determinism_enabled()
    set_determinism(0, False, 0)  # the next job of a multirun, with trainer.deterministic=false
    assert not tf_config.is_op_determinism_enabled()
    set_determinism(0, True, 0)
    assert tf_config.is_op_determinism_enabled()
