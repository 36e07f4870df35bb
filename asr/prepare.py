"""`asr-prepare [overrides]`: validate a dataset, write prepare_report.json, fill the feature cache; no training.

`prepare_data` is also the first step of `asr-train`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from asr.config import Config, DataConfig, register
from asr.datasets import DatasetError, Utterance, load_splits, manifest_sha256
from asr.extraction import FeatureCache, default_cache_dir
from asr.features import FeatureOptions, global_stats
from asr.files import atomic_write_text
from asr.pipeline import Example, prepare_all
from asr.text import Vocabulary

log = logging.getLogger(__name__)

ON_ERROR = ("skip", "raise")
REPORT_FILE = "prepare_report.json"


@dataclass(frozen=True)
class Prepared:
    """Examples per split, the global normalization statistics (if used) and the validation report."""

    examples: dict[str, list[Example]]
    cmvn: tuple[np.ndarray, np.ndarray] | None
    report: dict


def load_data(cfg: DataConfig) -> dict[str, list[Utterance]]:
    """Read the configured splits, with a clear error when the data folder is missing."""
    root = Path(cfg.root)
    if not root.is_dir():
        raise DatasetError(
            f"data.root {root} does not exist; pass data.root=<dataset folder> (presets that use "
            f"../shared/data also read the ASR_SHARED_DATA environment variable)"
        )
    audio_root = Path(cfg.audio_root) if cfg.audio_root else None
    return load_splits(
        root, cfg.train, cfg.valid, cfg.test, cfg.valid_fraction, audio_root, cfg.format, cfg.holdout_speakers
    )


def _durations(examples: list[Example], options: FeatureOptions) -> dict:
    """Duration statistics (seconds, from frame counts) of a split."""
    seconds = np.array([len(e.features) * options.winstep for e in examples]) if examples else np.zeros(1)
    return {
        "total": round(float(seconds.sum()), 2),
        "min": round(float(seconds.min()), 3),
        "mean": round(float(seconds.mean()), 3),
        "max": round(float(seconds.max()), 3),
    }


def prepare_data(cfg: DataConfig, options: FeatureOptions, vocab: Vocabulary, stride: int) -> Prepared:
    """Load every split, check each utterance once, compute (or reuse) features; skip or raise on bad items."""
    if cfg.on_error not in ON_ERROR:
        raise ValueError(f"data.on_error must be one of {ON_ERROR}, got {cfg.on_error!r}")
    splits = load_data(cfg)
    cache = FeatureCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(), options) if cfg.cache else None
    examples, rejected, report_splits = {}, [], {}
    totals = Counter()
    for name, items in splits.items():
        speeds = cfg.speeds if name == "train" else (1.0,)
        ok, bad, stats = prepare_all(items, options, vocab, stride, name, speeds, cache, cfg.workers)
        if bad and cfg.on_error == "raise":
            first = bad[0]
            raise DatasetError(f"{first.key}: {first.reason} (data.on_error=raise; use skip to leave it out)")
        examples[name] = ok
        rejected += [{"split": name, "item": r.key, "kind": r.kind, "reason": r.reason} for r in bad]
        totals.update(feature_seconds=stats.feature_seconds, cache_hits=stats.cache_hits, misses=stats.cache_misses)
        report_splits[name] = {
            "utterances": len(items),
            "usable": len(ok),
            "rejected": len(bad),
            "duration_s": _durations(ok, options),
        }
    if not examples["train"]:
        raise DatasetError(f"no usable training utterances under {cfg.root} ({len(rejected)} rejected)")
    cmvn = None
    if options.normalize in ("global", "both"):
        cmvn = global_stats([e.features for e in examples["train"]])  # training split only
        examples = {name: [apply_cmvn(e, cmvn) for e in split] for name, split in examples.items()}
    report = {
        "splits": report_splits,
        "problems": dict(Counter(r["kind"] for r in rejected)),
        "rejected": rejected,
        "dataset_sha256": manifest_sha256(splits),
        "vocabulary_found": "".join(sorted({c for e in examples["train"] for c in e.text})),
        "feature_seconds": round(totals["feature_seconds"], 3),
        "cache_hits": totals["cache_hits"],
        "cache_misses": totals["misses"],
    }
    return Prepared(examples, cmvn, report)


def apply_cmvn(example: Example, cmvn: tuple[np.ndarray, np.ndarray]) -> Example:
    """An example with every feature matrix (and variant) normalized by the global statistics."""
    mean, std = cmvn
    return replace(
        example,
        features=(example.features - mean) / std,
        variants=tuple((v - mean) / std for v in example.variants),
    )


def write_report(report: dict, run_dir: Path) -> None:
    """prepare_report.json in run_dir, and a few human lines on the console."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    for name, split in report["splits"].items():
        print(
            f"{name}: {split['usable']} of {split['utterances']} utterances usable, "
            f"{split['duration_s']['total'] / 60:.1f} min of audio"
        )
    problems = ", ".join(f"{kind} {n}" for kind, n in report["problems"].items()) or "none"
    print(
        f"problems: {problems}; features: {report['feature_seconds']:.1f} s "
        f"(cache: {report['cache_hits']} hits, {report['cache_misses']} misses); "
        f"report: {run_dir / REPORT_FILE}"
    )


@hydra.main(version_base="1.3", config_path="pkg://asr.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    config: Config = OmegaConf.to_object(cfg)
    options = FeatureOptions(**asdict(config.features))
    prepared = prepare_data(config.data, options, Vocabulary(config.data.characters), config.model.stride)
    write_report(prepared.report, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    """Console entry point `asr-prepare`."""
    register()
    _hydra_main()


if __name__ == "__main__":
    main()
