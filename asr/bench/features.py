"""Feature extraction speed, part of `asr-bench train`: asr-train's extraction of the training split, from the
feature cache and computed without it, in audio seconds per wall second."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from asr.bench.common import audio_seconds
from asr.system import usable_cpus

if TYPE_CHECKING:
    from asr.training.options import RunOptions

log = logging.getLogger(__name__)


COLD_MAX_FILES = 3000  # the uncached extraction is timed over at most this many files (it is the slow one)


def bench_features(options: RunOptions, items: Sequence[tuple]) -> dict:
    """Feature extraction of the training split (speed 1) as asr-train does it (extract_all, data.workers
    processes, all cores by default), in audio seconds per wall second: from the feature cache (every file a
    hit), and computed without it over the first COLD_MAX_FILES files."""
    from asr.data.extraction import FeatureCache, Job, default_cache_dir, extract_all

    jobs = [Job(audio, start, end) for audio, start, end, _ in items]
    workers = options.data.workers or 0
    cache_dir = Path(options.data.cache_dir) if options.data.cache_dir else default_cache_dir()
    cache = FeatureCache(cache_dir, options.features)
    _, stats = extract_all(jobs, options.features, cache, workers)
    if stats.cache_misses:  # data.cache=false: the run above filled the cache, time the hits now
        _, stats = extract_all(jobs, options.features, cache, workers)
    cold_items = items[:COLD_MAX_FILES]
    log.info("%d files from the cache; now %d computed without it", len(jobs), len(cold_items))
    _, cold = extract_all(jobs[: len(cold_items)], options.features, None, workers)
    return {
        "audio_seconds_per_second_cached": round(audio_seconds(items) / stats.feature_seconds, 1),
        "cached_files": len(jobs),
        "cache_hits": stats.cache_hits,
        "audio_seconds_per_second_cold": round(audio_seconds(cold_items) / cold.feature_seconds, 1),
        "cold_files": len(cold_items),
        "workers": workers or usable_cpus(),
    }
