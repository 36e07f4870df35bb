"""Multirun support: each job's status recorded in its own directory, threads per parallel job, and the
report of a whole sweep (one table of all jobs, Markdown + CSV, and a PNG; the `asr-sweep-report` command)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from asr.files import atomic_write_text
from asr.system import usable_cpus
from asr.training.state import STATUS_FILE

log = logging.getLogger(__name__)

REPORT_CSV = "sweep_report.csv"
REPORT_PNG = "sweep_report.png"
COLUMNS = ("job", "status", "overrides", "best_val_ler", "test_ler", "test_wer", "epochs", "train_seconds")


def threads_per_job(requested: int | None, launcher_target: str, n_jobs: int, cpus: int | None = None) -> int | None:
    """TensorFlow threads for one job: as requested if set; under the joblib launcher, the cores shared out
    between its parallel jobs (n_jobs <= 0 counts from the number of cores, as joblib does); else None
    (TensorFlow's default, all cores)."""
    if requested is not None or "joblib" not in launcher_target:
        return requested
    cpus = cpus or usable_cpus()
    parallel = n_jobs if n_jobs > 0 else max(cpus + 1 + n_jobs, 1)
    return max(cpus // min(parallel, cpus), 1)


def _read_json(path: Path) -> dict | None:
    """A JSON file's object, or None if missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def job_row(job_dir: Path) -> dict:
    """One job's row: its overrides, status, and results when it finished."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = yaml.safe_load(overrides_file.read_text(encoding="utf-8")) if overrides_file.is_file() else []
    pairs = dict(o.split("=", 1) for o in overrides or [] if "=" in o)
    status = _read_json(job_dir / STATUS_FILE) or {}
    result = _read_json(job_dir / "result.json") or {}
    test = result.get("test") or {}
    metrics = job_dir / "metrics.jsonl"
    epochs = len(metrics.read_text(encoding="utf-8").splitlines()) if metrics.is_file() else 0
    return {
        "job": job_dir.name,
        "status": status.get("status") or ("completed" if result else "incomplete"),
        "overrides": pairs,
        "best_val_ler": result.get("best_val_ler"),
        "test_ler": test.get("ler"),
        "test_wer": test.get("wer"),
        "epochs": result.get("epochs", epochs),
        "train_seconds": result.get("train_seconds"),
        "error": status.get("error", ""),
    }


def collect(sweep_dir: Path) -> list[dict]:
    """Rows of every job directory of a multirun (those holding .hydra/), best validation LER first;
    failed and unfinished jobs last."""
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()] if sweep_dir.is_dir() else []
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir} holds no job directories (with .hydra/); pass a multirun directory")
    rows = [job_row(p) for p in jobs]

    def order(row: dict) -> tuple:
        ler = row["best_val_ler"]
        good = row["status"] == "completed" and ler is not None and math.isfinite(ler)
        return (not good, ler if good else 0.0, int(row["job"]) if row["job"].isdigit() else row["job"])

    return sorted(rows, key=order)


def swept(rows: list[dict]) -> list[str]:
    """Override keys whose values differ between jobs (all keys when none differ)."""
    keys = sorted({k for r in rows for k in r["overrides"]})
    varying = [k for k in keys if len({r["overrides"].get(k) for r in rows}) > 1]
    return varying or keys


def _cell(value: Any, decimals: int = 4) -> str:
    """A table cell: numbers to `decimals` decimals, missing values empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and cells: one column per swept parameter instead of the raw overrides."""
    parameters = swept(rows)
    header = ["job", *parameters, *COLUMNS[3:], "status"]
    cells = [
        [row["job"], *(row["overrides"].get(p, "") for p in parameters)]
        + [_cell(row[c], 1 if c == "train_seconds" else 4) for c in COLUMNS[3:]]
        + [row["status"] + (f" ({row['error']})" if row["error"] else "")]
        for row in rows
    ]
    return header, cells


def markdown(header: list[str], cells: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def write_sweep_report(sweep_dir: Path, out_dir: Path | None = None) -> tuple[str, Path, Path]:
    """Markdown table (returned), sweep_report.csv and sweep_report.png in out_dir (default: the sweep)."""
    from asr.training.plots import sweep_plot

    rows = collect(sweep_dir)
    header, cells = table(rows)
    out_dir = out_dir or sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(cells)
    csv_path, png_path = out_dir / REPORT_CSV, out_dir / REPORT_PNG
    atomic_write_text(csv_path, buffer.getvalue())
    sweep_plot(rows, swept(rows), png_path)
    return markdown(header, cells), csv_path, png_path


def study_lock_path(storage: str) -> Path:
    """The lock file that serializes the creation of an optuna storage on this machine: beside a sqlite
    database, else in the asr cache folder (keyed by the URL)."""
    from sqlalchemy.engine import make_url

    url = make_url(storage)
    if url.get_backend_name() == "sqlite" and url.database:
        return Path(url.database).with_name(Path(url.database).name + ".lock")
    from asr.data.extraction import default_cache_dir

    digest = hashlib.sha256(storage.encode("utf-8")).hexdigest()[:16]
    return default_cache_dir() / "locks" / f"optuna-{digest}.lock"


def study_directions(direction: Any) -> list[str]:
    """Optuna's direction names of a sweeper's `direction` setting: one value or a list, each a name or an Enum
    (the optuna sweeper's default is its Direction enum, whose str() is "Direction.minimize", not a name)."""
    values = list(direction) if isinstance(direction, list | tuple) else [direction]
    names = [value.name if isinstance(value, Enum) else str(value) for value in values]
    for name in names:
        if name not in ("minimize", "maximize"):
            raise ValueError(f"hydra.sweeper.direction must be minimize or maximize (or a list of them), got {name!r}")
    return names


def prepare_study(storage: str, study_name: str, directions: list[str]) -> int:
    """Create an optuna storage's schema and the study (if missing) once, under a file lock, so that several
    sweep processes starting together on a new database do not race; returns the study's trial count."""
    import optuna
    from filelock import FileLock

    lock = study_lock_path(storage)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        study = optuna.create_study(storage=storage, study_name=study_name, directions=directions, load_if_exists=True)
        trials = len(study.trials)
    log.info("optuna study %r in %s: %d trials so far", study_name, storage, trials)
    return trials
