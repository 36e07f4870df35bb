import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from asr.cli.sweep_report import main
from asr.system import usable_cpus
from asr.training.sweep import collect, threads_per_job


@pytest.mark.parametrize(
    ("requested", "launcher", "n_jobs", "cpus", "threads"),
    [
        (3, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", 2, 8, 3),  # explicit wins
        (None, "hydra._internal.core_plugins.basic_launcher.BasicLauncher", 1, 8, None),  # one job: TF decides
        (None, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", 2, 8, 4),
        (None, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", -1, 8, 1),  # a job per core
        (None, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", 16, 2, 1),
        (None, "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", -2, 8, 1),  # 7 jobs
    ],
)
def test_parallel_jobs_share_the_cores(requested, launcher, n_jobs, cpus, threads):
    assert threads_per_job(requested, launcher, n_jobs, cpus) == threads


def _job(sweep: Path, num: int, overrides: list[str], status: str, best: float | None = None, error: str = ""):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (job / "status.json").write_text(json.dumps({"status": status, "error": error}))
    if best is not None:
        result = {"best_val_ler": best, "epochs": 3, "train_seconds": 1.5, "test": {"ler": best + 0.01, "wer": 0.5}}
        (job / "result.json").write_text(json.dumps(result))
        (job / "metrics.jsonl").write_text("{}\n" * 3)


def test_sweep_report_lists_every_job_best_first(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    _job(sweep, 0, ["optimizer.lr=0.01", "model.units=8"], "completed", 0.4)
    _job(sweep, 1, ["optimizer.lr=0.001", "model.units=8"], "completed", 0.25)
    _job(sweep, 2, ["optimizer.lr=-1", "model.units=8"], "failed", error="ValueError: optimizer.lr must be positive")
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    assert [r["job"] for r in collect(sweep)] == ["1", "0", "2"]

    assert main([str(sweep)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "| job | optimizer.lr | best_val_ler | test_ler | test_wer | epochs | train_seconds | status |"
    assert lines[2] == "| 1 | 0.001 | 0.2500 | 0.2600 | 0.5000 | 3 | 1.5 | completed |"
    assert lines[4] == "| 2 | -1 |  |  |  | 0 |  | failed (ValueError: optimizer.lr must be positive) |"
    rows = list(csv.reader((sweep / "sweep_report.csv").open()))
    assert [r[0] for r in rows] == ["job", "1", "0", "2"]
    assert (sweep / "sweep_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_report_on_a_folder_without_jobs_says_so(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "holds no job directories" in capsys.readouterr().err


BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent
QUICK = ["model.num_layers=1", "trainer.epochs=1", "trainer.verbose=0", "augment=none"]


def _multirun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ}
    command = [str(BIN / "asr-train"), "-m", *args, *QUICK]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_others_finish(tmp_path):
    sweep = tmp_path / "grid"
    done = _multirun("hydra/launcher=joblib", "model.units=16,0,24", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 1  # Hydra re-raises the first failure once every job has ended
    status = {p.name: json.loads((p / "status.json").read_text()) for p in sweep.iterdir() if p.is_dir()}
    assert [status[j]["status"] for j in ("0", "1", "2")] == ["completed", "failed", "completed"]
    assert "model.num_layers and model.units must be >= 1" in status["1"]["error"]
    assert "Traceback" in status["1"]["traceback"]
    assert all((sweep / j / "result.json").is_file() for j in ("0", "2")) and not (sweep / "1" / "result.json").exists()
    # joblib processes share the 2+ cores: each job's TensorFlow got its share of the threads
    cores = usable_cpus()
    assert f"TensorFlow threads: {max(cores // 2, 1)} intra-op" in (sweep / "0" / "train.log").read_text()

    report = subprocess.run([str(BIN / "asr-sweep-report"), str(sweep)], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    rows = [line for line in report.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[1] for r in rows] == sorted(["16", "24"], key=lambda u: _val_ler(sweep, u)) + ["0"]
    assert rows[-1].endswith("failed (ConfigError: model.num_layers and model.units must be >= 1, got 1, 0) |")
    assert len(list(csv.reader((sweep / "sweep_report.csv").open()))) == 4


def _val_ler(sweep: Path, units: str) -> float:
    job = {"16": "0", "24": "2"}[units]
    return json.loads((sweep / job / "result.json").read_text())["best_val_ler"]


@pytest.mark.slow
def test_optuna_search_preset_runs_two_trials_and_reports_a_finite_best(tmp_path):
    sweep = tmp_path / "search"
    done = _multirun("experiment=demo_search", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert math.isfinite(results["best_value"]) and 0.0 <= results["best_value"] <= 1.5
    # the preset searches lr, units, layers and dropout; model.num_layers=1 on the command line fixes one
    assert set(results["best_params"]) == {"optimizer.lr", "model.units", "model.dropout"}
    values = [json.loads((sweep / j / "status.json").read_text())["value"] for j in ("0", "1")]
    assert results["best_value"] == min(values)


@pytest.mark.slow
def test_a_failed_optuna_trial_is_marked_failed_and_the_study_goes_on(tmp_path):
    extra = tmp_path / "conf" / "experiment"
    extra.mkdir(parents=True)
    (extra / "fail_search.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - demo\n  - override /hydra/sweeper: optuna\n  - override /hydra/sweeper/sampler: random\n"
        "  - _self_\n"
        "hydra:\n  sweeper:\n    n_trials: 3\n    n_jobs: 1\n    max_failure_rate: 1.0\n"
        "    sampler:\n      seed: 1\n    params:\n      model.units: choice(0, 8)\n"
    )
    sweep = tmp_path / "search"
    searchpath = f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    done = _multirun("experiment=fail_search", searchpath, f"hydra.sweep.dir={sweep}")
    assert done.returncode == 0, done.stderr[-3000:]  # not fatal for the study
    assert "Failed experiment: model.num_layers and model.units must be >= 1" in done.stderr + done.stdout
    statuses = sorted(json.loads((sweep / j / "status.json").read_text())["status"] for j in ("0", "1", "2"))
    assert statuses == ["completed", "completed", "failed"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_params"] == {"model.units": 8} and math.isfinite(results["best_value"])


@pytest.mark.slow
def test_two_sweep_processes_feed_one_optuna_study_in_a_new_sqlite_database(tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'study.db'}"  # missing: both processes start on a database to create
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    commands = [
        [
            str(BIN / "asr-train"),
            "-m",
            "experiment=demo_search",
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.n_jobs=1",
            f"hydra.sweeper.storage={storage}",
            "hydra.sweeper.study_name=shared",
            f"hydra.sweep.dir={tmp_path / name}",
            "model.units=16",
            *QUICK,
        ]
        for name in ("a", "b")
    ]
    processes = [subprocess.Popen(c, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [p.communicate(timeout=600)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], errors[0][-2000:] + errors[1][-2000:]
    study = optuna.load_study(study_name="shared", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]  # n_trials x 2 processes
    for name in ("a", "b"):
        assert (tmp_path / name / "0" / "result.json").is_file()


def test_the_optuna_sweepers_default_direction_enum_becomes_its_name():
    from hydra_plugins.hydra_optuna_sweeper.config import Direction

    from asr.training.sweep import study_directions

    assert study_directions(Direction.minimize) == ["minimize"]  # str() of it is "Direction.minimize"
    assert study_directions(["maximize", Direction.minimize]) == ["maximize", "minimize"]
    with pytest.raises(ValueError, match="hydra.sweeper.direction must be minimize or maximize"):
        study_directions("down")


@pytest.mark.slow  # TensorFlow training steps or an optuna database
def test_prepare_study_creates_a_shared_study_with_the_sweepers_default_direction(tmp_path):
    import optuna
    from hydra import compose, initialize_config_dir

    from asr.cli.callbacks import PrepareStudy
    from asr.config import register

    register()
    database = tmp_path / "study.db"
    overrides = [
        "hydra/sweeper=optuna",
        f"hydra.sweeper.storage=sqlite:///{database}",
        "hydra.sweeper.study_name=shared",
    ]
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    PrepareStudy().on_multirun_start(cfg)  # no experiment=demo_search: the sweeper's own default direction
    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{database}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and len(study.trials) == 0
