"""Which settings decide a run's training numbers, and whether a checkpoint was made with the same ones (a resume
must be)."""

from __future__ import annotations

import hashlib
import json
import typing
from dataclasses import MISSING, asdict, fields, is_dataclass

from asr.training.options import RunOptions
from asr.training.transfer import Source, read_source

# Settings that do not change the numbers a run trains to: how fast, where and how it runs, what it shows, and
# what comes after training (the language model; trainer.average_last, from the checkpoints kept).
NOT_DECIDING = {
    "trainer": ("resume", "verbose", "samples", "threads", "checkpoint_every_epochs", "checkpoint_every_seconds")
    + ("strategy", "cpu_devices", "average_last"),
    "data": ("workers", "cache", "cache_dir", "storage", "shard", "num_shards"),
}
# Checkpoints that hold no settings (written before they were stored) hold a hash of the deciding settings that
# left these out at these values (the settings added after those runs were made, at the value that kept the
# behaviour before them).
UNHASHED_AT_VALUE = {
    ("data", "trim_silence"): False,
    ("optimizer", "ema_momentum"): None,
    ("data", "train_weights"): [],
    ("trainer", "init_from"): None,
    ("trainer", "freeze_layers"): 0,
    ("trainer", "freeze_epochs"): 0,
    ("trainer", "init_cmvn"): "train",
    ("trainer", "intermediate_ctc"): 0.0,
    ("trainer", "intermediate_ctc_layer"): None,
    ("model", "lookahead"): 0,
}


def run_settings(options: RunOptions, source: Source | None = None) -> dict:
    """The settings that decide a run's training numbers, as JSON values, by group (trainer.init_from: the
    SHA-256 of the base bundle's content, wherever it lies; `source`: that bundle as read_source read it already,
    else it is read now)."""
    settings = json.loads(json.dumps(asdict(options)))  # enums as their values
    settings.pop("lm")
    for group, keys in NOT_DECIDING.items():
        for key in keys:
            settings[group].pop(key)
    if options.trainer.init_from is not None:
        settings["trainer"]["init_from"] = (source or read_source(options.trainer.init_from)).sha256
    return settings


def settings_sha256(settings: dict) -> str:
    """A hash of run_settings() output."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def defaults() -> dict:
    """The default of every setting, as JSON values, by group (None where a setting has none)."""

    def default(f) -> object:
        if f.default is not MISSING:
            return f.default
        return f.default_factory() if f.default_factory is not MISSING else None

    groups = {}
    for group, kind in typing.get_type_hints(RunOptions).items():
        if is_dataclass(kind):
            groups[group] = json.loads(json.dumps({f.name: default(f) for f in fields(kind)}, default=str))
    return groups


def differences(saved: dict, current: dict) -> list[str]:
    """The settings in which `current` differs from `saved` ("group.key: saved -> current"); a setting only one
    of them has (one added or removed since) differs only when it is not at its default."""
    known = defaults()
    found = []
    for group in sorted(set(saved) | set(current)):
        mine, theirs = current.get(group), saved.get(group)
        if not isinstance(mine, dict) or not isinstance(theirs, dict):
            if mine != theirs:
                found.append(f"{group}: {theirs!r} -> {mine!r}")
            continue
        for key in sorted(set(mine) | set(theirs)):
            default = known.get(group, {}).get(key)
            before, now = theirs.get(key, default), mine.get(key, default)
            if before != now:
                found.append(f"{group}.{key}: {before!r} -> {now!r}")
    return found


def legacy_sha256(settings: dict) -> str:
    """The hash a checkpoint without settings holds for these settings (see UNHASHED_AT_VALUE)."""
    kept = {group: dict(value) if isinstance(value, dict) else value for group, value in settings.items()}
    for (group, key), value in UNHASHED_AT_VALUE.items():
        if kept[group].get(key, value) == value:
            kept[group].pop(key, None)
    return settings_sha256(kept)
