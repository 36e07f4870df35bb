"""`asr-prepare [overrides]`: validate a dataset, write prepare_report.json, fill the feature cache; no training."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from asr.cli.app import one_line_errors, run_hydra_app
from asr.config import to_options


@hydra.main(version_base="1.3", config_path="pkg://asr.conf", config_name="config")
def _task(cfg: DictConfig) -> None:
    """Hydra task: prepare every split of the configured data and write the report."""
    from asr.data.preparation import prepare_data, write_prepare_report

    with one_line_errors("asr-prepare"):
        options = to_options(cfg)
        if options.trainer.init_from is not None:  # the features of the model the run will start from
            from asr.training.transfer import adopt_source

            options, _ = adopt_source(options)
        prepared = prepare_data(options.data, options.features, options.model.stride, options.augment)
        write_prepare_report(prepared.report, Path(HydraConfig.get().runtime.output_dir))


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point `asr-prepare`."""
    run_hydra_app(_task, "asr-prepare", argv, "prepare", extra=["hydra/help=prepare"])


if __name__ == "__main__":
    main()
