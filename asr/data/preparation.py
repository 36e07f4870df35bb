"""Preparation of every split: read, check each utterance once, featurize (cached), normalize, and report.

The first step of `asr-train`, and all of `asr-prepare`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from asr.data.activity import sample_evenly, silence_margins
from asr.data.audio import (
    CLIP_LEVEL,
    CLIP_SHARE,
    SILENCE_PEAK_DBFS,
    SILENCE_RMS_DBFS,
    AudioError,
    read_audio,
    resample,
    trim_silence,
)
from asr.data.datasets import DatasetError, Utterance, load_splits, manifest_sha256
from asr.data.extraction import FeatureCache, StoredFeatures, default_cache_dir
from asr.data.features import FeatureOptions, apply_global_stats, global_stats
from asr.data.options import AUTO_MEMORY_BYTES, AugmentOptions, DataOptions, OnError, Storage, split_paths
from asr.data.text import AUTO, Vocabulary, derive_characters
from asr.data.validation import SPEAKING_RATE, Example, prepare_all
from asr.files import atomic_write_text

log = logging.getLogger(__name__)

REPORT_FILE = "prepare_report.json"
# What turning a file into float32 mono at the model's rate can involve; counted per split in the report.
CONVERSIONS = ("channels", "sample_rate", "sample_format")


@dataclass(frozen=True)
class PrepareReport:
    """What preparing the data found: prepare_report.json (to_json), in this order."""

    vocabulary: str  # the characters the labels are encoded with
    unseen_characters: dict[str, dict]  # per split: characters outside the vocabulary and how often
    splits: dict[str, dict]  # per split: utterances, usable, rejected, warnings, conversions, durations, rates
    problems: dict[str, int]  # rejected utterances per kind of problem
    rejected: list[dict]  # {split, item, kind, reason} per utterance left out
    warnings: list[dict]  # {split, item, kind, reason} per utterance kept with a warning
    checks: dict  # the thresholds of the checks
    dataset_sha256: str  # of every split's manifest (asr.data.datasets.manifest_sha256)
    vocabulary_found: str  # the characters of the usable training transcripts
    feature_seconds: float
    cache_hits: int
    cache_misses: int
    storage: str  # where the features are kept: memory or disk
    feature_bytes: int
    silence_margins_s: list[float] | None  # median silence before and after the training utterances' speech
    cache: dict | None  # the feature cache's usage, when there is one
    shard: dict | None  # {shard, num_shards} when only one shard was prepared

    def to_json(self) -> dict:
        """prepare_report.json's content."""
        return asdict(self)


@dataclass(frozen=True)
class PreparedData:
    """Examples per split, the global normalization statistics (if used), the report and the vocabulary the
    examples are encoded with."""

    examples: dict[str, list[Example]]
    cmvn: tuple[np.ndarray, np.ndarray] | None
    report: PrepareReport
    vocab: Vocabulary
    # Median silence before and after the speech of the training utterances, seconds (None: none has speech)
    margins: tuple[float, float] | None = None


def load_data(cfg: DataOptions) -> dict[str, list[Utterance]]:
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


def _spread(values: Sequence[float], digits: int) -> dict:
    """min, mean and max of a split's values, rounded (zeros for an empty split)."""
    array = np.array(values) if len(values) else np.zeros(1)
    return {name: round(float(getattr(array, name)()), digits) for name in ("min", "mean", "max")}


def _durations(examples: list[Example], options: FeatureOptions) -> dict:
    """Duration statistics (seconds, from frame counts) of a split."""
    seconds = [len(e.features) * options.winstep for e in examples]
    return {"total": round(float(sum(seconds)), 2), **_spread(seconds, 3)}


def _speaking_rates(examples: list[Example], options: FeatureOptions) -> dict:
    """Characters per second of audio over a split's examples: min, mean, max."""
    return _spread([len(e.text) / options.seconds(len(e.features)) for e in examples], 2)


def _per_source(
    sources: Sequence[str], items: Sequence[Utterance], examples: Sequence[Example], options: FeatureOptions
) -> dict[str, dict]:
    """Utterances, usable ones and their audio (seconds) of each path of a split given as several."""
    return {
        source: {
            "utterances": sum(u.source == source for u in items),
            "usable": len(mine := [e for e in examples if e.source == source]),
            "duration_s": _durations(mine, options)["total"],
        }
        for source in sources
    }


def vocabulary(cfg: DataOptions, train: Sequence[Utterance]) -> Vocabulary:
    """The configured vocabulary, or with data.characters=auto the one the training transcripts use."""
    if cfg.characters != AUTO:
        return Vocabulary(cfg.characters, cfg.fold_accents)
    characters = derive_characters((u.text or "" for u in train), cfg.fold_accents)
    if characters == " ":
        raise DatasetError(f"data.characters=auto found no characters in the training transcripts under {cfg.root}")
    log.info("vocabulary of the training transcripts (%d characters): %r", len(characters), characters)
    return Vocabulary(characters, cfg.fold_accents)


def unseen_characters(items: Sequence[Utterance], vocab: Vocabulary) -> dict[str, int]:
    """Characters outside the vocabulary in a split's normalized transcripts: utterances holding each."""
    counts = Counter(c for u in items for c in vocab.unknown_characters(u.text or ""))
    return dict(sorted(counts.items()))


def shard_of(key: str, num_shards: int) -> int:
    """The shard (0 .. num_shards - 1) an utterance belongs to: a stable function of its key alone."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % num_shards


def take_shard(splits: dict[str, list[Utterance]], shard: int, num_shards: int) -> dict[str, list[Utterance]]:
    """Every split's utterances of shard `shard` of `num_shards`."""
    return {name: [u for u in items if shard_of(u.key, num_shards) == shard] for name, items in splits.items()}


def prepare_data(
    cfg: DataOptions,
    options: FeatureOptions,
    stride: int,
    augment: AugmentOptions,
    splits: dict[str, list[Utterance]] | None = None,
    cmvn: tuple[np.ndarray, np.ndarray] | None = None,
) -> PreparedData:
    """Load every split (or take `splits`, as load_data returns them), settle the vocabulary, check each
    utterance once, compute (or reuse) features (the training split at every speed, VTLP warp and noise level
    of `augment`); skip or raise on bad items. With data.num_shards > 1 only shard data.shard of every split (the
    vocabulary still comes from the whole training split). Global normalization uses `cmvn` where given (a base
    model's), else the statistics of the training split."""
    splits = load_data(cfg) if splits is None else splits
    vocab = vocabulary(cfg, splits["train"])
    sharded = cfg.num_shards > 1
    if sharded:
        sizes = {name: len(items) for name, items in splits.items()}
        splits = take_shard(splits, cfg.shard, cfg.num_shards)
        log.info(
            "shard %d of %d: %s",
            cfg.shard,
            cfg.num_shards,
            ", ".join(f"{name} {len(items)} of {sizes[name]}" for name, items in splits.items()),
        )
    cache = FeatureCache(Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(), options) if cfg.cache else None
    on_disk = cache is not None and cfg.storage != Storage.memory
    examples, rejected, warnings, report_splits = {}, [], [], {}
    totals = Counter()
    for name, items in splits.items():
        speeds = augment.speeds if name == "train" else (1.0,)
        perturbations = (
            {
                "warps": augment.vtlp_warps,
                "snrs": augment.noise_snr_db,
                "babble_snrs": augment.babble_snr_db,
                "rt60s": augment.reverb_rt60,
            }
            if name == "train"
            else {}
        )
        limit = cfg.max_seconds if name == "train" else None
        trim = cfg.trim_silence and name == "train"
        checked = prepare_all(
            items,
            options,
            vocab,
            stride,
            name,
            speeds,
            cache,
            cfg.workers,
            cfg.unknown_characters,
            on_disk,
            limit,
            trim=trim,
            **perturbations,
        )
        if checked.rejected and cfg.on_error == OnError["raise"]:
            first = checked.rejected[0]
            raise DatasetError(f"{first.key}: {first.reason} (data.on_error=raise; use skip to leave it out)")
        examples[name] = checked.examples
        rejected += [{"split": name, "item": r.key, "kind": r.kind, "reason": r.reason} for r in checked.rejected]
        warnings += [{"split": name, "item": w.key, "kind": w.kind, "reason": w.reason} for w in checked.warnings]
        stats = checked.stats
        totals.update(feature_seconds=stats.feature_seconds, cache_hits=stats.cache_hits, misses=stats.cache_misses)
        report_splits[name] = {
            "utterances": len(items),
            "usable": len(checked.examples),
            "rejected": len(checked.rejected),
            "warnings": len(checked.warnings),
            "converted": {kind: checked.converted[kind] for kind in CONVERSIONS},
            "duration_s": _durations(checked.examples, options),
            "speaking_rate": _speaking_rates(checked.examples, options),
        }
        if len(sources := split_paths(getattr(cfg, name))) > 1:
            report_splits[name]["sources"] = _per_source(sources, items, checked.examples, options)
    if not examples["train"] and not sharded:
        kinds = ", ".join(f"{kind} {n}" for kind, n in Counter(r["kind"] for r in rejected).items()) or "none"
        paths = ", ".join(str(Path(cfg.root) / p) for p in cfg.train_paths)
        raise DatasetError(
            f"no usable training utterances in {paths} ({len(rejected)} rejected: {kinds}); "
            f"the reasons are listed in the log above"
        )
    feature_bytes = sum(_nbytes(e) for split in examples.values() for e in split)
    if on_disk and cfg.storage == Storage.auto and feature_bytes <= AUTO_MEMORY_BYTES:
        examples = {name: [in_memory(e) for e in split] for name, split in examples.items()}
    storage = "disk" if any(isinstance(e.features, StoredFeatures) for e in examples["train"]) else "memory"
    log.info("features: %.1f MB, kept in %s", feature_bytes / 1e6, storage)
    if options.normalize not in ("global", "both"):
        cmvn = None
    elif cmvn is None and examples["train"]:
        cmvn = global_stats([e.features for e in examples["train"]])  # training split only
    if cmvn is not None:
        examples = {name: [with_global_stats(e, cmvn) for e in split] for name, split in examples.items()}
    usable = {e.key for e in examples["train"]}
    margins = training_margins([u for u in splits["train"] if u.key in usable], options, cfg.trim_silence)
    report = PrepareReport(
        **{
            "vocabulary": vocab.characters,
            "unseen_characters": {name: unseen_characters(items, vocab) for name, items in splits.items()},
            "splits": report_splits,
            "problems": dict(Counter(r["kind"] for r in rejected)),
            "rejected": rejected,
            "warnings": warnings,
            "checks": {
                "silence_below_dbfs": {"peak": SILENCE_PEAK_DBFS, "rms": SILENCE_RMS_DBFS},
                "clipping": {"level": CLIP_LEVEL, "warn_above_share": CLIP_SHARE},
                "speaking_rate_chars_per_second": list(SPEAKING_RATE),
            },
            "dataset_sha256": manifest_sha256(splits),
            "vocabulary_found": "".join(sorted({c for e in examples["train"] for c in e.text})),
            "feature_seconds": round(totals["feature_seconds"], 3),
            "cache_hits": totals["cache_hits"],
            "cache_misses": totals["misses"],
            "storage": storage,
            "feature_bytes": feature_bytes,
            "silence_margins_s": None if margins is None else list(margins),
            "cache": cache.usage() if cache else None,
            "shard": {"shard": cfg.shard, "num_shards": cfg.num_shards} if sharded else None,
        }
    )
    return PreparedData(examples, cmvn, report, vocab, margins)


def training_margins(items: Sequence[Utterance], options: FeatureOptions, trim: bool) -> tuple[float, float] | None:
    """Median silence before and after the speech of (up to MARGIN_SAMPLE of) the training utterances, as the
    model saw them (at its sample rate, trimmed with data.trim_silence), in seconds."""

    def signals():
        for i in sample_evenly(len(items)):
            try:
                recording = read_audio(items[i].audio, items[i].start, items[i].end)
            except AudioError:
                continue
            signal = resample(recording.samples, recording.samplerate, options.sample_rate)
            yield (trim_silence(signal, options.sample_rate) if trim else signal), options.sample_rate

    return silence_margins(signals())


def _nbytes(example: Example) -> int:
    """Bytes of an example's feature matrices (float32), all speeds."""
    return sum(int(np.prod(f.shape)) * 4 for f in (example.features, *example.variants))


def in_memory(example: Example) -> Example:
    """An example with its features read from the cache into memory."""
    return replace(
        example, features=np.asarray(example.features), variants=tuple(np.asarray(v) for v in example.variants)
    )


def with_global_stats(example: Example, cmvn: tuple[np.ndarray, np.ndarray]) -> Example:
    """An example with every feature matrix (and variant) normalized by the global statistics (features left
    in the cache are normalized as they are read)."""

    def normalized(features: np.ndarray | StoredFeatures) -> np.ndarray | StoredFeatures:
        if isinstance(features, StoredFeatures):
            return replace(features, cmvn=cmvn)
        return apply_global_stats(features, cmvn)

    return replace(example, features=normalized(example.features), variants=tuple(map(normalized, example.variants)))


def write_prepare_report(report: PrepareReport, run_dir: Path) -> None:
    """prepare_report.json in run_dir, and a few human lines on the console."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / REPORT_FILE, json.dumps(report.to_json(), indent=2) + "\n")
    for name, split in report.splits.items():
        print(
            f"{name}: {split['usable']} of {split['utterances']} utterances usable, "
            f"{split['duration_s']['total'] / 60:.1f} min of audio"
        )
    problems = ", ".join(f"{kind} {n}" for kind, n in report.problems.items()) or "none"
    print(
        f"problems: {problems}; features: {report.feature_seconds:.1f} s "
        f"(cache: {report.cache_hits} hits, {report.cache_misses} misses); "
        f"report: {run_dir / REPORT_FILE}"
    )
