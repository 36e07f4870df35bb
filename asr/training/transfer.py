"""Starting a run from a trained bundle (trainer.init_from): its feature and model settings, its weights, and the
output rows of the characters the two alphabets share.

`read_source` reads the source's bundle.json and weights file once per command, checks the weights without
TensorFlow (before any data is read) and keeps both: `adopt_source` and `run_settings` take what it read, and
`initialize_from` copies those weights (the very ones hashed) into the new run's built model. The language model of
the source is never read.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np

from asr.data.features import FeatureOptions
from asr.errors import UserError
from asr.inference.bundle import (
    BUNDLE_FILE,
    WEIGHTS_FILE,
    BundleError,
    find_bundle,
    read_cmvn,
    read_spec,
)
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions
from asr.models import ModelNotFoundError, resolve_model, streaming_twin
from asr.training.options import RunOptions

log = logging.getLogger(__name__)

KEY = "trainer.init_from"
FIX = "pass trainer.init_from=<a training run directory, its model/ folder, or a shipped model's name such as base>"


# The lowest feature rate a source may have: 4 kHz audio keeps speech only up to 2 kHz (the first two formants),
# half the telephone band (8 kHz, the lowest rate speech corpora are recorded at); below it the corpus audio would
# be resampled into features that no longer hold speech.
MIN_SAMPLE_RATE = 4000


class SourceError(UserError):
    """trainer.init_from names no usable bundle, or one whose settings cannot serve this run."""


@dataclass(frozen=True)
class Source:
    """The bundle a run starts from: where it is, the SHA-256 of its settings and weights, what it was trained
    with."""

    directory: Path
    sha256: str
    features: FeatureOptions
    model: ModelOptions
    characters: str
    cmvn: tuple[np.ndarray, np.ndarray] | None = None  # its global normalization statistics, when it has them
    spec: dict = field(default_factory=dict, repr=False)  # its bundle.json, parsed
    weights: bytes = field(default=b"", repr=False)  # its weights file, as read (and hashed)


def bundle_sha256(directory: Path) -> str:
    """SHA-256 over a bundle's settings (bundle.json) and weights: what decides the weights a run starts from."""
    digest = hashlib.sha256()
    for name in (BUNDLE_FILE, WEIGHTS_FILE):
        with open(directory / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def content_sha256(settings: bytes, weights: bytes) -> str:
    """bundle_sha256 of a bundle whose bundle.json and weights file hold these bytes."""
    digest = hashlib.sha256(settings)
    digest.update(weights)
    return digest.hexdigest()


def read_source(path: str) -> Source:
    """The bundle at `path` (a run directory, its model/ folder, or a shipped model's name: asr.models), checked
    without loading TensorFlow weights; SourceError naming trainer.init_from, the problem and the fix. Its two files
    are read here, once: the Source holds what was read."""
    try:
        where = resolve_model(path, FIX)
    except ModelNotFoundError as e:
        raise SourceError(f"{KEY}={e}") from None
    try:
        directory = find_bundle(where)
        settings = (directory / BUNDLE_FILE).read_bytes()
        spec = read_spec(directory, settings)
        if not (directory / WEIGHTS_FILE).is_file():
            raise BundleError(f"{directory}: no {WEIGHTS_FILE}; train the source run to its end first")
        weights = (directory / WEIGHTS_FILE).read_bytes()
        check_weights(directory / WEIGHTS_FILE, weights)
        features = FeatureOptions(**spec["features"])
        model = ModelOptions(**spec["model"]["options"])
        characters = str(spec["vocabulary"])
        cmvn = read_cmvn(spec.get("normalization"), features, directory / BUNDLE_FILE)
        sha256 = content_sha256(settings, weights)
    except BundleError as e:
        raise SourceError(f"{KEY}={path}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise SourceError(f"{KEY}={path}: its {BUNDLE_FILE} has settings this asr cannot use ({e}); {FIX}") from None
    except OSError as e:
        raise SourceError(f"{KEY}={path}: cannot read the bundle ({e}); {FIX}") from None
    if features.sample_rate < MIN_SAMPLE_RATE:
        raise SourceError(
            f"{KEY}={path}: its features are computed at {features.sample_rate} Hz, a rate speech audio cannot be "
            f"resampled to without losing the speech (at least {MIN_SAMPLE_RATE} Hz); start from a model trained at "
            f"the corpus's rate (8000 or 16000 Hz), or train from scratch without {KEY}"
        )
    if model.num_layers < 1 or features.num_features != spec["model"].get("num_features"):
        raise SourceError(f"{KEY}={path}: its {BUNDLE_FILE} has features and a model that do not fit together; {FIX}")
    return Source(directory, sha256, features, model, characters, cmvn, spec, weights)


def check_weights(path: Path, content: bytes | None = None) -> None:
    """BundleError unless every array of the weights file at `path` (`content`: its bytes, read already) reads
    (HDF5, checked without TensorFlow: a damaged file fails before any data is read, not when the model is
    built)."""
    try:
        with h5py.File(path if content is None else io.BytesIO(content), "r") as weights:
            weights.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except (OSError, RuntimeError, ValueError) as e:  # h5py's errors for a truncated or foreign file
        raise BundleError(
            f"{path}: cannot read the weights ({e}); copy the bundle again, or train the source run to its end"
        ) from None


def adopt_source(options: RunOptions, source: Source | None = None) -> tuple[RunOptions, Source | None]:
    """`options` with the feature and model settings of trainer.init_from's bundle (logged where they differ) but
    the run's own model.dropout (a training setting: no weights depend on it), and the source (`source`: the one
    read_source gave for it already, else read now); unchanged options and None without one. A streaming run
    (model.bidirectional=false) that names a bidirectional shipped model with a shipped streaming twin (base ->
    base_streaming) starts from the twin, and trainer.init_from says so. SourceError for a source that cannot serve
    the run (unreadable, bidirectional for a streaming run, or trainer.freeze_layers beyond its LSTM layers)."""
    trainer = options.trainer
    if trainer.init_from is None:
        return options, None
    source = source or read_source(trainer.init_from)
    streams = not options.model.bidirectional
    if streams and source.model.bidirectional and (twin := streaming_twin(trainer.init_from)) is not None:
        log.info("%s=%s is bidirectional and the run streams: starting from %s", KEY, trainer.init_from, twin)
        trainer = replace(trainer, init_from=twin)
        options = replace(options, trainer=trainer)
        source = read_source(twin)
    if streams and source.model.bidirectional:
        raise SourceError(
            f"model.bidirectional=false asks for a model that streams, but the model of {KEY}={trainer.init_from} "
            "is bidirectional and the run would take its layers; start from a unidirectional one "
            f"({KEY}=base_streaming, the shipped streaming base, or a run of yours with "
            "model.bidirectional=false), or drop model.bidirectional=false"
        )
    if trainer.freeze_layers > source.model.num_layers:
        raise SourceError(
            f"trainer.freeze_layers={trainer.freeze_layers} but the model of {KEY}={trainer.init_from} has "
            f"{source.model.num_layers} LSTM layers; freeze at most that many"
        )
    model = replace(source.model, dropout=options.model.dropout)
    adopted = (("features", options.features, source.features), ("model", options.model, model))
    for group, mine, theirs in adopted:
        changed = {k: v for k, v in asdict(theirs).items() if asdict(mine)[k] != v}
        if changed:
            log.info("%s from %s: %s", group, source.directory, ", ".join(f"{k}={v}" for k, v in changed.items()))
    return replace(options, features=source.features, model=model), source


def base_character(character: str) -> str:
    """The letter a character is written on: the first code point of its canonical decomposition (č -> c)."""
    return unicodedata.normalize("NFD", character)[0]


def source_rows(characters: str, source: str) -> tuple[list[int | None], dict[str, str]]:
    """For each character of `characters`, its output row in a model of alphabet `source` (the same character,
    else its base letter, else None: a fresh row); and the characters that took their base letter's row."""
    rows, from_base = [], {}
    for c in characters:
        if c in source:
            rows.append(source.index(c))
        elif (base := base_character(c)) != c and base in source:
            rows.append(source.index(base))
            from_base[c] = base
        else:
            rows.append(None)
    return rows, from_base


def trained_model(source: Source) -> CTCModel:
    """The source's model with the weights read_source read (its language model is neither needed nor read);
    SourceError naming trainer.init_from when they do not load."""
    try:
        trained = CTCModel.from_config(source.spec["model"])
        trained.build_for()
        # Keras loads weights from a file path only: a private copy of the bytes that were checked and hashed
        with tempfile.TemporaryDirectory(prefix="asr-init-from-") as folder:
            copy = Path(folder) / WEIGHTS_FILE
            copy.write_bytes(source.weights)
            trained.load_weights(copy)
    except Exception as e:  # Keras and h5py raise many kinds for weights of another model
        raise SourceError(
            f"{KEY}={source.directory}: its {WEIGHTS_FILE} does not fit its {BUNDLE_FILE} ({e}); copy the bundle again"
        ) from None
    return trained


def initialize_from(model: CTCModel, source: Source) -> dict:
    """Copy the source bundle's front-end and LSTM weights into `model` (built, same architecture), and the
    output rows of the blank and of every character the alphabets share (a new letter: its base letter's row);
    returns what was copied, for result.json."""
    trained = trained_model(source)
    for mine, theirs in zip([*model.convs, *model.rnns], [*trained.convs, *trained.rnns], strict=True):
        mine.set_weights(theirs.get_weights())
    if model.lookahead is not None:  # the same architecture as the source (its model settings were adopted)
        model.lookahead.set_weights(trained.lookahead.get_weights())
    kernel, bias = trained.logits.get_weights()  # [units (x2), len(source) + 1], [len(source) + 1]
    new_kernel, new_bias = model.logits.get_weights()
    rows, from_base = source_rows(model.characters, trained.characters)
    for i, row in enumerate([*rows, trained.blank_index]):  # the blank is the last row of both
        if row is not None:
            new_kernel[:, i], new_bias[i] = kernel[:, row], bias[row]
    model.logits.set_weights([new_kernel, new_bias])
    fresh = "".join(c for c, row in zip(model.characters, rows, strict=True) if row is None)
    shared = "".join(c for c in model.characters if c in trained.characters)
    log.info(
        "started from %s: %d LSTM layers copied; output rows of %d shared characters and the blank kept, %s from "
        "their base letters, %r new",
        source.directory,
        len(model.rnns),
        len(shared),
        json.dumps(from_base, ensure_ascii=False),
        fresh,
    )
    return {
        "bundle": str(source.directory),
        "sha256": source.sha256,
        "shared": shared,
        "from_base": from_base,
        "fresh": fresh,
    }
