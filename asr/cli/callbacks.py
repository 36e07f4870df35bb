"""Hydra callbacks of `asr-train` and `asr-prepare` (named in conf/config.yaml)."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from asr.cli.app import NEW_RUN_DIRS, NewRunDir
from asr.compat import job_exception
from asr.files import atomic_write_text
from asr.training.cluster import discover
from asr.training.state import STATUS_FILE
from asr.training.sweep import prepare_study, study_directions

log = logging.getLogger(__name__)


class NoteNewRunDir(Callback):
    """Hydra callback: before a single run creates its directory, note whether it is new (so that a run failing
    before it writes anything of value leaves no folder behind, and a resumed run's folder is never removed)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(str(config.hydra.run.dir)).absolute()  # resolves ${now:...} once: run_job gets the same
        if run_dir.exists():
            return
        top = run_dir
        while not top.parent.exists():
            top = top.parent
        NEW_RUN_DIRS.append(NewRunDir(run_dir, top, f"{config.hydra.job.name}.log"))


class RecordStatus(Callback):
    """Hydra callback: writes status.json into every job's directory when the job ends, failed or not
    (with the error and traceback), so that a sweep's failures are on record beside its results; in a
    multi-worker job the chief alone writes it."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not discover().is_chief:  # one task of a multi-worker job: the chief writes the job directory
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        record: dict[str, Any] = {"overrides": list(job_return.overrides or [])}
        if job_return.status == JobStatus.COMPLETED:
            value = job_return.return_value
            record.update(status="completed", value=value if isinstance(value, int | float) else None)
        else:
            error = job_exception(job_return)
            lines = traceback.format_exception(type(error), error, error.__traceback__)
            record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback="".join(lines))
            log.error("job failed: %s\n%s", record["error"], record["traceback"])
        job_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job_dir / STATUS_FILE, json.dumps(record, indent=2) + "\n")


class PrepareStudy(Callback):
    """Hydra callback: before an optuna sweep with a shared storage (hydra.sweeper.storage) opens it, create
    the database schema and the study once under a file lock (processes starting together on a missing
    database race otherwise)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweeper = config.hydra.sweeper
        storage = sweeper.get("storage")
        if not storage or "optuna" not in str(sweeper.get("_target_", "")):
            return
        direction = (
            OmegaConf.to_container(sweeper.direction) if OmegaConf.is_list(sweeper.direction) else sweeper.direction
        )
        prepare_study(str(storage), str(sweeper.study_name), study_directions(direction))
