"""What the data stage is told: where the corpus is, how to read it, and how to augment training inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from asr.data.text import DEFAULT_CHARACTERS


class DataFormat(StrEnum):
    """How a split path is read (see asr.data.datasets)."""

    auto = "auto"  # from what the train path holds
    dir = "dir"  # a folder of audio files, each with a same-stem .txt transcript
    jsonl = "jsonl"  # one JSON object per line: audio, text, optional start/end
    csv = "csv"  # DeepSpeech CSV: wav_filename, wav_filesize, transcript
    fsdd = "fsdd"  # Free Spoken Digit Dataset file names, the dataset's own split
    librispeech = "librispeech"  # <speaker>/<chapter>/<speaker>-<chapter>.trans.txt beside .flac files
    commonvoice = "commonvoice"  # Common Voice: a split's .tsv (client_id, path, sentence) beside clips/


class Storage(StrEnum):
    """Where the features live while training: memory (read once), disk (left in the feature cache, read
    memory-mapped batch by batch: memory stays flat whatever the corpus size), auto (memory while all splits'
    features fit in AUTO_MEMORY_BYTES, else disk). disk needs data.cache=true."""

    auto = "auto"
    memory = "memory"
    disk = "disk"


# data.storage=auto keeps features in memory up to this many bytes: 1 GiB is about 18 h of audio as 40
# float32 coefficients every 10 ms (6 h at three speeds), small beside the memory of a machine that trains.
AUTO_MEMORY_BYTES = 1 << 30


# What a bad utterance does: skip (leave it out and report it) or raise (stop at the first one). Members are
# named by their values, as OmegaConf matches names ("raise" is a keyword, hence the functional form).
OnError = StrEnum("OnError", ["skip", "raise"], module=__name__)
# What a transcript with characters outside the vocabulary does: skip the utterance (reported), drop those
# characters (reported as a warning) or raise (stop, naming the utterance and the characters).
UnknownCharacters = StrEnum("UnknownCharacters", ["skip", "drop", "raise"], module=__name__)


@dataclass(frozen=True)
class DataOptions:
    """Where the utterances are. A split is a path relative to `root` (or absolute), a manifest or a folder, or
    a list of such paths (several corpora: each read with its own format detection, then joined)."""

    root: str
    format: DataFormat = DataFormat.auto
    train: str | tuple[str, ...] = "train.jsonl"
    valid: str | tuple[str, ...] = "valid.jsonl"  # empty: carve valid_fraction of train (none if 0)
    test: str | tuple[str, ...] = "test.jsonl"  # empty: no test evaluation
    # One factor per training path: each epoch draws round(factor x its usable utterances) from it (without
    # replacement below 1, every utterance floor(factor) times plus a draw for the rest above), so a small corpus
    # is not drowned by a large one. Empty: every utterance once per epoch.
    train_weights: tuple[float, ...] = ()
    valid_fraction: float = 0.0
    holdout_speakers: tuple[str, ...] = ()  # fsdd: these speakers go wholly to test
    audio_root: str = ""  # relative audio paths in manifests resolve against this; empty: the manifest's folder
    # The characters the model emits, in order (space required), or "auto": those of the training transcripts
    characters: str = DEFAULT_CHARACTERS
    fold_accents: bool = False  # match "café" as "cafe" (the English presets); off keeps every script's letters
    on_error: OnError = OnError.skip
    unknown_characters: UnknownCharacters = UnknownCharacters.skip
    cache: bool = True  # reuse features computed by earlier runs (keyed by audio content and settings)
    cache_dir: str = ""  # empty: $XDG_CACHE_HOME/asr (~/.cache/asr)
    workers: int | None = None  # feature extraction processes; None: one per usable core
    storage: Storage = Storage.auto
    # Training utterances longer than this (seconds, at speed 1) are left out and reported (null: none);
    # validation and test keep theirs.
    max_seconds: float | None = None
    # Cut the silence before and after the speech of each training utterance (everything 40 dB under its loudest
    # 10 ms, but 0.2 s of it on each side): recordings that trail off in a second of silence cost that second in
    # every epoch. Validation and test keep their audio as it is, as asr-transcribe reads it.
    trim_silence: bool = False
    # asr-prepare: extract only shard `shard` of `num_shards` (a stable split of every split's utterances, by
    # key) into the feature cache, so that a job array of num_shards jobs prepares a corpus in parallel.
    shard: int = 0
    num_shards: int = 1

    def __post_init__(self) -> None:
        for name in ("train", "valid", "test"):
            object.__setattr__(self, name, _split_spec(name, getattr(self, name)))
        object.__setattr__(self, "train_weights", tuple(float(w) for w in self.train_weights))
        if self.train_weights:
            if len(self.train_weights) != len(self.train_paths):
                raise ValueError(
                    f"data.train_weights needs one factor per data.train path: {len(self.train_paths)} paths, "
                    f"{len(self.train_weights)} weights"
                )
            if any(not w > 0 for w in self.train_weights):
                raise ValueError(f"data.train_weights must be positive factors, got {list(self.train_weights)}")
        object.__setattr__(self, "format", DataFormat(self.format))
        object.__setattr__(self, "on_error", OnError(self.on_error))
        object.__setattr__(self, "unknown_characters", UnknownCharacters(self.unknown_characters))
        object.__setattr__(self, "storage", Storage(self.storage))
        if self.storage == Storage.disk and not self.cache:
            raise ValueError("data.storage=disk keeps the features in the feature cache; it needs data.cache=true")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError(f"data.max_seconds must be positive or null (no limit), got {self.max_seconds}")
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise ValueError(
                f"data.shard must be in [0, data.num_shards) and data.num_shards >= 1, got shard={self.shard}, "
                f"num_shards={self.num_shards}"
            )
        object.__setattr__(self, "holdout_speakers", tuple(self.holdout_speakers))
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"data.workers must be >= 1 or null (one per core), got {self.workers}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"data.valid_fraction must be in [0, 1), got {self.valid_fraction}")

    @property
    def train_paths(self) -> tuple[str, ...]:
        """The training split's paths (one for a single path)."""
        return split_paths(self.train)


def split_paths(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    """A split's paths: () for an empty one, (path,) for a single path, the list's paths otherwise."""
    if isinstance(spec, str):
        return (spec,) if spec else ()
    return tuple(spec)


def _split_spec(name: str, value: object) -> str | tuple[str, ...]:
    """data.<name> as a path or a tuple of paths (a list of one path is that path); ValueError naming the key
    for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return "" if not value else value[0] if len(value) == 1 else tuple(value)
    raise ValueError(
        f"data.{name} must be a path or a list of paths (e.g. data.{name}=[a/{name}.jsonl,b/{name}.jsonl]), "
        f"got {value!r}"
    )


@dataclass(frozen=True)
class AugmentOptions:
    """How training inputs are varied: speed perturbation of the audio, VTLP, additive noise and babble,
    reverberation, SpecAugment-style masks."""

    # Each epoch plays every training utterance at one of these factors, drawn from (seed, epoch); 1.1 is 10 %
    # faster and higher, like a shorter vocal tract (Ko et al. 2015, "Audio augmentation for speech recognition").
    speeds: tuple[float, ...] = (1.0,)
    # Vocal tract length perturbation (Jaitly and Hinton 2013; asr.data.perturbation): each factor adds a variant of
    # every training utterance (at speed 1) with its spectrum warped by it before the mel filterbank; they use
    # 0.9-1.1. Additive noise: each SNR (dB) adds a variant (at speed 1) with white, pink or brown noise, the colour
    # drawn per utterance; babble: each SNR adds a variant with the speech of 3-7 other training utterances (of other
    # speakers where the manifests name them) summed under it. Reverberation: each RT60 (seconds) adds a variant (at
    # speed 1) heard in a synthetic room of that reverberation time (0.2-0.8 s: living rooms to lecture halls). Each
    # epoch plays every utterance as one of its variants (speeds included), drawn from (seed, epoch). Empty: none
    # (every variant costs the features' memory once more).
    vtlp_warps: tuple[float, ...] = ()
    noise_snr_db: tuple[float, ...] = ()
    babble_snr_db: tuple[float, ...] = ()
    reverb_rt60: tuple[float, ...] = ()
    # SpecAugment (Park et al. 2019): how many bands of time frames / feature channels are zeroed per
    # utterance, and their widest width.
    time_masks: int = 0
    time_mask_width: int = 0
    freq_masks: int = 0
    freq_mask_width: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "speeds", tuple(float(s) for s in self.speeds))
        if not self.speeds or any(s <= 0 for s in self.speeds):
            raise ValueError(f"augment.speeds must be positive factors, got {list(self.speeds)}")
        object.__setattr__(self, "vtlp_warps", tuple(float(w) for w in self.vtlp_warps))
        object.__setattr__(self, "noise_snr_db", tuple(float(s) for s in self.noise_snr_db))
        if any(not VTLP_RANGE[0] <= w <= VTLP_RANGE[1] for w in self.vtlp_warps):
            raise ValueError(
                f"augment.vtlp_warps must be factors within {VTLP_RANGE[0]}-{VTLP_RANGE[1]} (0.9-1.1 is usual), got "
                f"{list(self.vtlp_warps)}"
            )
        object.__setattr__(self, "babble_snr_db", tuple(float(s) for s in self.babble_snr_db))
        for name in ("noise_snr_db", "babble_snr_db"):
            if any(not math.isfinite(s) for s in getattr(self, name)):
                raise ValueError(f"augment.{name} must be finite decibels (5-30 is usual), got {getattr(self, name)}")
        object.__setattr__(self, "reverb_rt60", tuple(float(r) for r in self.reverb_rt60))
        if any(not REVERB_RANGE[0] <= r <= REVERB_RANGE[1] for r in self.reverb_rt60):
            raise ValueError(
                f"augment.reverb_rt60 must be reverberation times within {REVERB_RANGE[0]}-{REVERB_RANGE[1]} s "
                f"(0.2-0.8 is usual), got {list(self.reverb_rt60)}"
            )
        masks = (self.time_masks, self.time_mask_width, self.freq_masks, self.freq_mask_width)
        if any(m < 0 for m in masks):
            raise ValueError(f"augment mask counts and widths must be >= 0, got {masks}")


# The VTLP factors accepted: vocal tract lengths of adults and children differ by up to about a third (warps beyond
# this range no longer sound like a voice).
VTLP_RANGE = (0.7, 1.3)
# The RT60s accepted (seconds): from a dry booth to a large church; beyond, speech is no longer intelligible.
REVERB_RANGE = (0.05, 3.0)
# The SpecAugment fields, which the model applies in its training step (the speeds are the data stage's).
MASK_FIELDS = ("time_masks", "time_mask_width", "freq_masks", "freq_mask_width")
