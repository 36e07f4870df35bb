"""Structured Hydra configs: the schema every config file and override is checked against at start."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from asr.features import FeatureOptions
from asr.text import DEFAULT_CHARACTERS

# The repository root when running from a source checkout (conf/ and data/ beside the package).
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def repo_root() -> str:
    """Root of the source checkout if asr runs from one, else the current directory (installed wheel)."""
    if (SOURCE_ROOT / "pyproject.toml").is_file() and (SOURCE_ROOT / "conf").is_dir():
        return str(SOURCE_ROOT)
    return str(Path.cwd())


@dataclass
class DataConfig:
    """Where the utterances are. Split paths are relative to `root` (or absolute): a .jsonl manifest or a
    directory of .wav + same-stem .txt files."""

    root: str = MISSING
    format: str = "auto"  # auto | dir | jsonl | csv | fsdd (auto: from what the train path holds)
    train: str = "train.jsonl"
    valid: str = "valid.jsonl"  # empty: carve valid_fraction of train
    test: str = "test.jsonl"  # empty: no test evaluation
    valid_fraction: float = 0.0
    holdout_speakers: list[str] = field(default_factory=list)  # fsdd: these speakers go wholly to test
    # Relative audio paths in manifests resolve against this folder; empty: the manifest's own folder.
    audio_root: str = ""
    characters: str = DEFAULT_CHARACTERS
    on_error: str = "skip"  # skip: leave bad utterances out and report them; raise: stop at the first
    cache: bool = True  # reuse features computed by earlier runs (keyed by audio content and settings)
    cache_dir: str = ""  # empty: $XDG_CACHE_HOME/asr (~/.cache/asr)
    workers: int = 0  # feature extraction processes; 0: one per core
    # Speed perturbation of the training split: each epoch plays every utterance at one of these factors,
    # drawn at random; 1.1 is 10 % faster and higher, like a shorter vocal tract (Ko et al. 2015).
    speeds: list[float] = field(default_factory=lambda: [1.0])


def _mutable_copy(frozen: type) -> type:
    """A non-frozen dataclass with the same fields, types and defaults (Hydra merges into its nodes)."""
    hints = typing.get_type_hints(frozen)
    return dataclasses.make_dataclass(
        frozen.__name__.replace("Options", "Config"),
        [(f.name, hints[f.name], field(default=f.default)) for f in dataclasses.fields(frozen)],
    )


# Same fields as asr.features.FeatureOptions, which validates them when train.py builds it.
FeaturesConfig = _mutable_copy(FeatureOptions)


@dataclass
class ModelConfig:
    """Stacked LSTM: layers, width, direction, dropout after each layer, output-layer init."""

    num_layers: int = 2
    units: int = 128
    bidirectional: bool = True
    dropout: float = 0.0
    logits_init_stddev: float = 0.0  # > 0: truncated normal with this stddev; 0: Glorot uniform
    stride: int = 1  # stack this many consecutive frames into one LSTM step (fewer steps: faster)
    # SpecAugment-style masking of training batches: how many bands, and their widest (frames / features)
    time_masks: int = 0
    time_mask_width: int = 0
    freq_masks: int = 0
    freq_mask_width: int = 0


@dataclass
class OptimizerConfig:
    """Optimizer and learning rate."""

    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0  # adamw only
    clipnorm: float = 0.0  # > 0: clip each gradient tensor's norm to this
    # constant | cosine (linear warm-up, then cosine decay to 0 at the last step) | plateau (constant, times
    # plateau_factor after plateau_patience epochs without a lower validation LER, down to min_lr)
    schedule: str = "constant"
    warmup_epochs: float = 0.0  # cosine only
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 0.0


@dataclass
class TrainerConfig:
    """The fit loop."""

    epochs: int = 30
    batch_size: int = 32
    bucketing: bool = True  # batches of similar lengths (less padding)
    deterministic: bool = True  # op determinism: same seed, same numbers
    threads: int = 0  # TensorFlow intra/inter-op threads; 0: TensorFlow's default
    stop_at_val_ler: float = -1.0  # >= 0: stop once val_ler <= this
    patience: int = 0  # > 0: stop after this many epochs without a lower val_ler (early stopping)
    keep_best: bool = False  # true: the bundle holds the weights of the epoch with the lowest val_ler
    # auto: continue from the run directory's last checkpoint if it has one; never: move the earlier run's
    # files aside (into previous-<time>/) and start over
    resume: str = "auto"
    samples: int = 10  # test transcripts listed in result.json
    verbose: int = 1  # Keras progress: 0 silent, 1 bar, 2 one line per epoch


@dataclass
class Config:
    """The whole run."""

    name: str = "run"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)  # type: ignore[valid-type]
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


def register() -> None:
    """Register the schema and the `asr_repo` resolver (idempotent)."""
    if not OmegaConf.has_resolver("asr_repo"):
        OmegaConf.register_new_resolver("asr_repo", repo_root)
    ConfigStore.instance().store(name="schema", node=Config)
