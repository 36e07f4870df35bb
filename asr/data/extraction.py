"""Feature extraction at scale: a content-addressed feature cache and parallel workers in a stable order.

No TensorFlow here: worker processes import only NumPy, SciPy and python_speech_features.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import mmap
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, astuple, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm import tqdm

from asr.data.audio import TRIM_MARGIN_SECONDS, TRIM_TOP_DB, AudioError, Levels, read_audio, resample, trim_silence
from asr.data.features import FeatureOptions, apply_global_stats, extract
from asr.data.perturbation import (
    BABBLE_VERSION,
    NOISE_VERSION,
    REVERB_VERSION,
    VTLP_BOUNDARY,
    add_babble,
    add_noise,
    add_reverb,
)
from asr.files import atomic_write, atomic_write_text
from asr.system import die_with_parent, usable_cpus

log = logging.getLogger(__name__)

# Bump when the meaning of a cached array changes (invalidates every entry).
CACHE_VERSION = 4  # 2: libsndfile and soxr; 3: audio facts beside the features; 4: resampled audio clipped to [-1, 1]
# Fewer files than this are extracted in this process: starting workers costs about a second.
PARALLEL_MIN_FILES = 400


@dataclass(frozen=True)
class Job:
    """One feature matrix to make: an audio file, an optional [start, end) cut, a speed factor, a VTLP warp, a
    noise level (coloured noise, or the babble of other utterances), a room's reverberation time
    (asr.data.perturbation)."""

    audio: str
    start: float | None = None
    end: float | None = None
    speed: float = 1.0
    trim: bool = False  # cut the silence around the speech (audio.trim_silence) before the speed change
    warp: float = 1.0  # VTLP factor of the spectrum (augment.vtlp_warps)
    snr_db: float | None = None  # noise added at this SNR (augment.noise_snr_db), after the speed change
    # With snr_db, the noise is the babble of these utterances' speech (audio, start, end) instead of coloured
    # noise (augment.babble_snr_db).
    babble: tuple[tuple[str, float | None, float | None], ...] = ()
    rt60: float | None = None  # reverberation of a synthetic room of this RT60 in seconds (augment.reverb_rt60)


@dataclass
class Stats:
    """What extraction did."""

    cache_hits: int = 0
    cache_misses: int = 0
    feature_seconds: float = 0.0
    errors: dict[int, str] = field(default_factory=dict)  # job index -> why its audio was refused
    error_kinds: dict[int, str] = field(default_factory=dict)  # job index -> the kind of that refusal
    facts: dict[int, AudioFacts] = field(default_factory=dict)  # job index -> what the audio was like


@dataclass(frozen=True)
class AudioFacts:
    """What a file's audio was before it became features: its format and its levels."""

    channels: int
    samplerate: int
    subtype: str
    peak_dbfs: float
    rms_dbfs: float
    clipped_share: float

    def levels(self) -> Levels:
        return Levels(self.peak_dbfs, self.rms_dbfs, self.clipped_share)

    def conversions(self, sample_rate: int) -> list[str]:
        """What was converted to make float32 mono at `sample_rate`: channels, sample_rate, sample_format."""
        done = ["channels"] if self.channels > 1 else []
        done += ["sample_rate"] if self.samplerate != sample_rate else []
        return done + (["sample_format"] if self.subtype != "PCM_16" else [])


@dataclass(frozen=True)
class StoredFeatures:
    """A float32 feature matrix [T, F] left in the feature cache: its length without reading it, its values on
    demand (np.asarray, or read_into a batch: the file is memory-mapped and copied, normalized by `cmvn` if
    set), so a split of any size costs no memory until a batch needs it."""

    path: str
    shape: tuple[int, int]
    offset: int  # bytes before the data: the .npy header
    cmvn: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    @classmethod
    def of(cls, path: Path, head: bytes | None = None) -> StoredFeatures:
        """The reference to a C-ordered float32 .npy file, from its header (read from the file, or given as the
        file's first bytes `head`)."""
        with io.BytesIO(head) if head is not None else path.open("rb") as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = header(f)
            if fortran_order or dtype != np.float32 or len(shape) != 2:
                raise ValueError(f"{path}: not a C-ordered float32 matrix")
            return cls(str(path), tuple(shape), f.tell())

    def read_into(self, target: np.ndarray) -> None:
        """Copy the values (normalized) into `target`, an array of `shape`."""
        try:
            with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                values = np.frombuffer(mapped, np.float32, self.shape[0] * self.shape[1], self.offset)
                target[...] = values.reshape(self.shape)
                del values  # the map closes only without views of it
        except (OSError, ValueError) as e:
            raise OSError(
                f"feature cache entry {self.path} cannot be read ({e}); was the cache pruned during training? "
                f"Run again to rebuild it"
            ) from e
        if self.cmvn is not None:
            target[...] = apply_global_stats(target, self.cmvn)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = np.empty(self.shape, np.float32)
        self.read_into(array)
        return array if dtype is None else array.astype(dtype)


@dataclass(frozen=True)
class CacheUsage:
    """What a feature cache folder holds."""

    entries: int
    bytes: int


def cache_entries(directory: Path) -> list[tuple[float, int, Path]]:
    """(last used, bytes, data file) of every entry under a cache folder, least recently used first."""
    found = []
    for data_path in directory.glob("??/*.npy"):
        side_path = data_path.with_suffix(".json")
        try:
            used = max(side_path.stat().st_mtime, data_path.stat().st_mtime)
            size = data_path.stat().st_size + side_path.stat().st_size
        except OSError:  # a half-written or concurrently removed entry
            continue
        found.append((used, size, data_path))
    return sorted(found)


def cache_usage(directory: Path) -> CacheUsage:
    """Entries and bytes of a cache folder."""
    entries = cache_entries(directory) if directory.is_dir() else []
    return CacheUsage(len(entries), sum(size for _, size, _ in entries))


def prune_cache(directory: Path, max_bytes: int | None = None, older_than_days: float | None = None) -> CacheUsage:
    """Remove the least recently used entries until the folder holds at most `max_bytes`, and every entry
    unused for `older_than_days`; returns what was removed."""
    entries = cache_entries(directory) if directory.is_dir() else []
    total = sum(size for _, size, _ in entries)
    cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else None
    removed = CacheUsage(0, 0)
    for used, size, data_path in entries:
        too_big = max_bytes is not None and total > max_bytes
        if not too_big and (cutoff is None or used >= cutoff):
            continue
        data_path.unlink(missing_ok=True)
        data_path.with_suffix(".json").unlink(missing_ok=True)
        total -= size
        removed = CacheUsage(removed.entries + 1, removed.bytes + size)
    return removed


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/asr, or ~/.cache/asr."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "asr"


def featurize(job: Job, options: FeatureOptions) -> np.ndarray:
    """Load (cut, speed-perturbed) audio and compute its features; raises AudioError."""
    return featurize_checked(job, options)[0]


def featurize_checked(job: Job, options: FeatureOptions) -> tuple[np.ndarray, AudioFacts]:
    """Features of a training, validation or test item, and the facts of its audio; AudioError (kind
    silent_audio) for a silent recording as well as for an unreadable one."""
    recording = read_audio(job.audio, job.start, job.end)
    levels = Levels.of(recording.samples)
    if silence := levels.silence():
        raise AudioError(job.audio, silence, "check the recording or remove it from the dataset", kind="silent_audio")
    facts = AudioFacts(recording.channels, recording.samplerate, recording.subtype, *astuple(levels))
    signal = resample(recording.samples, recording.samplerate, options.sample_rate)
    if job.trim:
        signal = trim_silence(signal, options.sample_rate)
    if job.speed != 1.0:
        signal = resample(signal, int(round(options.sample_rate * job.speed)), options.sample_rate)
    if signal.size == 0:
        raise AudioError(
            job.audio, f"too short: no samples left at {options.sample_rate} Hz", "remove it from the dataset"
        )
    if job.snr_db is not None and job.babble:
        signal = add_babble(signal, babble_speech(job, options.sample_rate), job.snr_db)
    elif job.snr_db is not None:
        signal = add_noise(signal, job.snr_db)[0]
    if job.rt60 is not None:
        signal = add_reverb(signal, job.rt60, options.sample_rate)[0]
    return extract(signal, options, job.warp), facts


def babble_speech(job: Job, sample_rate: int) -> list[np.ndarray]:
    """The talkers of a job's babble as float32 signals at `sample_rate` (their silence cut where the job's is);
    AudioError naming the job's audio when none of them can be read."""
    talkers, problems = [], []
    for audio, start, end in job.babble:
        try:
            recording = read_audio(audio, start, end)
        except AudioError as e:
            problems.append(e.reason)
            continue
        speech = resample(recording.samples, recording.samplerate, sample_rate)
        talkers.append(trim_silence(speech, sample_rate) if job.trim else speech)
    if not talkers:
        raise AudioError(
            job.audio,
            f"none of the {len(job.babble)} talkers of its babble could be read ({problems[0]})",
            "check the training files, or leave augment.babble_snr_db empty",
        )
    return talkers


@functools.lru_cache(maxsize=1 << 16)
def content_digest(path: str, size: int, mtime_ns: int) -> str:
    """SHA-256 of a file's bytes, remembered for the file at this size and modification time (a file's key and
    the babble of others read it again)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def file_digest(path: str) -> str:
    """SHA-256 of a file's bytes; OSError where it cannot be read."""
    status = os.stat(path)
    return content_digest(path, status.st_size, status.st_mtime_ns)


def talker_digest(path: str) -> str:
    """file_digest, or "unreadable" for a talker of a babble that cannot be read (it is left out of the mix)."""
    try:
        return file_digest(path)
    except OSError:
        return "unreadable"


def _featurize_or_error(args: tuple[Job, FeatureOptions]) -> tuple[np.ndarray, AudioFacts] | tuple[str, str]:
    """Worker entry: the features and audio facts, or the kind and reason of the refusal."""
    try:
        return featurize_checked(*args)
    except AudioError as e:
        return e.kind, e.reason


class FeatureCache:
    """Feature matrices on disk, keyed by the audio bytes, the cut, the speed and every feature setting.

    Entries are .npy files written atomically (write, then rename) with a JSON sidecar holding the SHA-256 of
    their data and the facts of the audio; an entry whose data does not match is treated as missing and rebuilt.
    """

    def __init__(self, directory: Path, options: FeatureOptions) -> None:
        self.directory = directory
        self.settings = json.dumps({"v": CACHE_VERSION, **options.to_dict()}, sort_keys=True)

    def key(self, job: Job) -> str | None:
        """Hex key of a job, or None if its audio cannot be read (then it is not cached)."""
        try:
            content = file_digest(job.audio)
        except OSError:
            return None
        talkers = [f"{talker_digest(audio)} {start} {end}" for audio, start, end in job.babble]
        spec = f"{content}|{job.start}|{job.end}|{job.speed}|{self.settings}"
        if job.trim:  # with what trims: other settings, other features
            spec += f"|trim {TRIM_TOP_DB:g} dB {TRIM_MARGIN_SECONDS:g} s"
        if job.warp != 1.0:  # the perturbations only where used: the keys of other jobs stay as they were
            spec += f"|vtlp {job.warp!r} {VTLP_BOUNDARY!r}"
        if job.snr_db is not None and job.babble:
            spec += f"|babble {job.snr_db!r} dB v{BABBLE_VERSION} of {','.join(talkers)}"
        elif job.snr_db is not None:
            spec += f"|noise {job.snr_db!r} dB v{NOISE_VERSION}"
        if job.rt60 is not None:
            spec += f"|reverb {job.rt60!r} s v{REVERB_VERSION}"
        return hashlib.sha256(spec.encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.directory / key[:2]
        return folder / f"{key}.npy", folder / f"{key}.json"

    def get(self, key: str, stored: bool = False) -> tuple[np.ndarray | StoredFeatures, AudioFacts] | None:
        """The cached array (with `stored`: a reference to it, the data checked but not decoded) and audio
        facts, or None when absent or damaged (a damaged entry is removed)."""
        data_path, side_path = self._paths(key)
        if not data_path.is_file():
            return None
        try:
            raw = data_path.read_bytes()
            side = json.loads(side_path.read_text())
            if hashlib.sha256(raw).hexdigest() != side["sha256"]:
                raise ValueError("checksum mismatch")
            facts = AudioFacts(**side["facts"])
            if stored:
                return StoredFeatures.of(data_path, raw), facts
            return np.load(io.BytesIO(raw), allow_pickle=False), facts  # the bytes just checked, not a second read
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("feature cache entry %s is damaged (%s); rebuilding it", data_path, e)
            data_path.unlink(missing_ok=True)
            return None

    def usage(self) -> dict:
        """Entries and bytes of the whole cache folder (every feature setting)."""
        return {"directory": str(self.directory), **asdict(cache_usage(self.directory))}

    def touch(self, key: str) -> None:
        """Mark an entry as used now (asr-cache prune removes the least recently used first)."""
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(self._paths(key)[1])

    def put(self, key: str, array: np.ndarray, facts: AudioFacts) -> StoredFeatures:
        """Store an array and its audio facts (atomically: a crash never leaves a half entry that looks valid);
        returns the reference to it."""
        data_path, side_path = self._paths(key)
        data_path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        raw = buffer.getvalue()
        side = {"sha256": hashlib.sha256(raw).hexdigest(), "facts": asdict(facts)}
        # no fsync: a cache entry lost in a power cut is only recomputed (and its checksum catches a torn one)
        atomic_write_text(side_path, json.dumps(side) + "\n", sync=False)
        atomic_write(data_path, lambda f: f.write(raw), sync=False)
        return StoredFeatures.of(data_path, raw)


def extract_all(
    jobs: Sequence[Job],
    options: FeatureOptions,
    cache: FeatureCache | None = None,
    workers: int = 0,
    desc: str = "features",
    on_disk: bool = False,
) -> tuple[list[np.ndarray | StoredFeatures | None], Stats]:
    """Features for every job, in job order (None where the audio failed: see stats.errors).

    Cached entries are reused; the rest are computed over `workers` processes (0: all cores) with a
    progress bar, and stored in the cache. With `on_disk` (and a cache) the results are StoredFeatures:
    each matrix is dropped from memory once it is in the cache.
    """
    started = time.perf_counter()
    stats = Stats()
    on_disk = on_disk and cache is not None
    results: list[np.ndarray | StoredFeatures | None] = [None] * len(jobs)
    keys = [cache.key(job) if cache else None for job in jobs]
    todo = []
    for i, key in enumerate(keys):
        cached = cache.get(key, stored=on_disk) if cache and key else None
        if cached is not None:
            results[i], stats.facts[i] = cached
            cache.touch(key)
            stats.cache_hits += 1
        else:
            todo.append(i)
    stats.cache_misses = len(todo) if cache else 0
    workers = workers or usable_cpus()
    args = [(jobs[i], options) for i in todo]

    def keep(i: int, out: tuple) -> None:
        """Record one job's output (and cache it) as it arrives."""
        if isinstance(out[0], str):
            stats.error_kinds[i], stats.errors[i] = out
            return
        results[i], stats.facts[i] = out
        if cache and keys[i]:
            stored = cache.put(keys[i], *out)
            if on_disk:
                results[i] = stored

    # a bar only on a terminal: in a log file its redraws would be thousands of lines
    bar = tqdm(total=len(todo), desc=desc, unit="file", disable=len(todo) < 200 or not sys.stderr.isatty(), leave=False)
    done = 0
    if workers > 1 and len(todo) >= PARALLEL_MIN_FILES:
        try:
            context, parent = get_context("spawn"), os.getpid()
            with ProcessPoolExecutor(workers, context, initializer=die_with_parent, initargs=(parent,)) as pool:
                for out in pool.map(_featurize_or_error, args, chunksize=32):
                    keep(todo[done], out)
                    done += 1
                    bar.update()
        except BrokenProcessPool as error:  # e.g. inside a worker process that cannot start processes itself
            log.warning("parallel feature extraction failed (%s); going on in this process", error)
    for n in range(done, len(todo)):
        keep(todo[n], _featurize_or_error(args[n]))
        bar.update()
    bar.close()
    stats.feature_seconds = time.perf_counter() - started
    return results, stats
