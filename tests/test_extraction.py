"""Feature cache and parallel extraction."""

import numpy as np
from conftest import sine, write_wav

from asr.data.extraction import (
    CacheUsage,
    FeatureCache,
    Job,
    StoredFeatures,
    cache_usage,
    extract_all,
    featurize,
    prune_cache,
)
from asr.data.features import FeatureOptions


def _files(tmp_path, n):
    return [write_wav(tmp_path / f"{i}.wav", 8000, sine(8000, 0.2 + 0.01 * i, hz=200 + 20 * i)) for i in range(n)]


def test_cache_hit_miss_and_rebuild(tmp_path):
    options = FeatureOptions(sample_rate=8000)
    cache = FeatureCache(tmp_path / "cache", options)
    jobs = [Job(str(p)) for p in _files(tmp_path, 3)]
    first, stats = extract_all(jobs, options, cache)
    assert (stats.cache_hits, stats.cache_misses) == (0, 3)
    again, stats = extract_all(jobs, options, cache)
    assert (stats.cache_hits, stats.cache_misses) == (3, 0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # any feature setting is part of the key
    other = FeatureOptions(sample_rate=8000, numcep=12)
    _, stats = extract_all(jobs, other, FeatureCache(tmp_path / "cache", other))
    assert stats.cache_misses == 3
    # changed audio content misses; the same content under the same path hits
    write_wav(tmp_path / "0.wav", 8000, sine(8000, 0.2, hz=999))
    changed, stats = extract_all(jobs, options, cache)
    assert (stats.cache_hits, stats.cache_misses) == (2, 1)
    assert not np.array_equal(changed[0], first[0])
    # a damaged entry is detected, not used, and rebuilt
    entry = next((tmp_path / "cache").rglob(f"{cache.key(jobs[1])}.npy"))
    entry.write_bytes(entry.read_bytes()[:-8] + b"\x00" * 8)
    rebuilt, stats = extract_all(jobs, options, cache)
    assert stats.cache_misses == 1
    np.testing.assert_array_equal(rebuilt[1], first[1])
    _, stats = extract_all(jobs, options, cache)
    assert stats.cache_misses == 0


def test_parallel_extraction_keeps_order_and_values(tmp_path, monkeypatch):
    monkeypatch.setattr("asr.data.extraction.PARALLEL_MIN_FILES", 4)
    options = FeatureOptions(sample_rate=8000, deltas=1)
    paths = _files(tmp_path, 6)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"no")
    jobs = [Job(str(p)) for p in paths[:3]] + [Job(str(broken))] + [Job(str(p), speed=1.1) for p in paths[3:]]
    parallel, stats = extract_all(jobs, options, None, workers=2)
    assert list(stats.errors) == [3] and "not a readable audio file" in stats.errors[3]
    for job, result in zip(jobs, parallel, strict=True):
        if job.audio != str(broken):
            np.testing.assert_array_equal(result, featurize(job, options))


def test_features_left_on_disk_read_back_the_same_values_and_the_cache_can_be_pruned(tmp_path):
    import os
    import time

    options = FeatureOptions(sample_rate=8000)
    cache = FeatureCache(tmp_path / "cache", options)
    jobs = [Job(str(p)) for p in _files(tmp_path, 4)]
    in_memory, _ = extract_all(jobs, options, cache)
    for round_ in ("computed", "from the cache"):
        stored, stats = extract_all(jobs, options, cache, on_disk=True)
        assert all(isinstance(s, StoredFeatures) for s in stored), round_
        for s, m in zip(stored, in_memory, strict=True):
            assert len(s) == len(m) and s.shape == m.shape
            np.testing.assert_array_equal(np.asarray(s), m)
    usage = cache_usage(tmp_path / "cache")
    assert usage.entries == 4 and usage.bytes > sum(m.nbytes for m in in_memory)
    assert cache.usage() == {"directory": str(tmp_path / "cache"), "entries": 4, "bytes": usage.bytes}
    # last used: entries 0 and 1 in 2001, entry 2 a minute ago, entry 3 now
    entries = [next((tmp_path / "cache").rglob(f"{cache.key(job)}.npy")) for job in jobs]
    now = time.time()
    for entry, used in zip(entries, (1e9, 1e9, now - 60, now), strict=True):
        for path in (entry, entry.with_suffix(".json")):
            os.utime(path, (used, used))
    assert prune_cache(tmp_path / "cache", older_than_days=1).entries == 2
    assert [p.exists() for p in entries] == [False, False, True, True]
    # a size limit removes the least recently used first
    newest = entries[3].stat().st_size + entries[3].with_suffix(".json").stat().st_size
    assert prune_cache(tmp_path / "cache", max_bytes=newest).entries == 1
    assert [p.exists() for p in entries] == [False, False, False, True]
    assert cache_usage(tmp_path / "cache") == CacheUsage(1, newest)
    _, stats = extract_all(jobs, options, cache)
    assert (stats.cache_hits, stats.cache_misses) == (1, 3)
    prune_cache(tmp_path / "cache", max_bytes=0)
    assert cache_usage(tmp_path / "cache").entries == 0
