"""`asr-train [overrides]`: train as configured (`-m` for a multirun); `asr-train --help` lists the keys."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr.cli.app import one_line_errors, run_hydra_app
from asr.config import ConfigError, to_options
from asr.files import atomic_write_text
from asr.training.options import RunOptions
from asr.training.sweep import threads_per_job


@hydra.main(version_base="1.3", config_path="pkg://asr.conf", config_name="config")
def _task(cfg: DictConfig) -> float:
    """Hydra task: typed options in, best validation LER out (what a sweeper minimizes)."""
    with one_line_errors("asr-train"):
        return _train(cfg)


def _train(cfg: DictConfig) -> float:
    """The work of the task: options, the cluster, threads and workers for the launcher, then training."""
    options = to_options(cfg)  # a config mistake stops here, before TensorFlow loads
    if options.data.num_shards > 1:
        raise ConfigError(
            f"data.num_shards={options.data.num_shards}: shards are for asr-prepare (feature extraction in "
            f"parallel); train with the default data.num_shards=1, which finds every shard's features in the cache"
        )
    from asr.training import cluster

    cluster.setup()  # TF_CONFIG from SLURM or submitit, before TensorFlow starts
    from asr.training.loop import train  # TensorFlow is imported here, once there is work to do
    from asr.training.transfer import adopt_source

    hydra_cfg = HydraConfig.get()
    launcher = hydra_cfg.launcher
    target = str(launcher.get("_target_", ""))
    threads = threads_per_job(options.trainer.threads, target, int(launcher.get("n_jobs", 1) or 1))
    workers = options.data.workers
    if "joblib" in target and workers is None:
        workers = 1  # the jobs already run in parallel processes (which cannot start their own)
    options = replace(
        options, trainer=replace(options.trainer, threads=threads), data=replace(options.data, workers=workers)
    )
    run_dir = Path(hydra_cfg.runtime.output_dir)
    adopted, source = adopt_source(options)  # checked here, before any data is read
    if source is not None and hydra_cfg.output_subdir is not None:
        record_adopted(cfg, adopted, run_dir / hydra_cfg.output_subdir / "config.yaml")
    options = replace(options, trainer=adopted.trainer)  # trainer.init_from: a streaming run's twin of the base
    return train(options, run_dir, list(hydra_cfg.overrides.task), source).best_val_ler  # the source read once


def record_adopted(cfg: DictConfig, options: RunOptions, path: Path) -> None:
    """Rewrite the run's composed config (Hydra's .hydra/config.yaml) with the feature and model settings taken
    from trainer.init_from's bundle, and the bundle it names (a streaming run's twin of the base), so that the
    config says what the run trained."""
    adopted = OmegaConf.to_container(cfg, resolve=True)
    adopted["trainer"]["init_from"] = options.trainer.init_from
    adopted["features"] = json.loads(json.dumps(asdict(options.features)))  # enums as their values
    adopted["model"] = json.loads(json.dumps(asdict(options.model)))
    atomic_write_text(path, OmegaConf.to_yaml(adopted))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point `asr-train`."""
    run_hydra_app(_task, "asr-train", argv, "train")


if __name__ == "__main__":
    main()
