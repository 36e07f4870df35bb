"""What the training loop is told: optimizer, learning-rate schedule, and the fit loop's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from asr.data.features import FeatureOptions
from asr.data.options import AugmentOptions, DataOptions
from asr.model.options import LMOptions, ModelOptions


class Optimizer(StrEnum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"


class Schedule(StrEnum):
    """constant; cosine: linear warm-up over `warmup_ratio` of all steps from 0, then cosine decay to 0 at the
    last step; plateau: constant, times `plateau_factor` after `plateau_patience` epochs without a lower
    validation LER, down to `min_lr`."""

    constant = "constant"
    cosine = "cosine"
    plateau = "plateau"


class Strategy(StrEnum):
    """How one training job spreads over devices and processes (tf.distribute): auto picks multi_worker when
    this process is one of several tasks (TF_CONFIG, a SLURM step or a submitit job with more than one task),
    mirrored when several GPUs (or trainer.cpu_devices > 1 logical CPUs) are visible, else default (one
    device)."""

    auto = "auto"
    default = "default"
    mirrored = "mirrored"
    multi_worker = "multi_worker"


class InitCMVN(StrEnum):
    """With trainer.init_from and global normalization (features.normalize=global or both): the statistics the
    run normalizes with. train: its own training split's (the inputs then have zero mean and unit variance on this
    corpus, as the base's had on its own); source: the base model's, as it was trained with."""

    train = "train"
    source = "source"


class Resume(StrEnum):
    """auto: continue from the run directory's last checkpoint if it has one; never: move the earlier run's
    files aside (into previous-<time>/) and start over."""

    auto = "auto"
    never = "never"


@dataclass(frozen=True)
class OptimizerOptions:
    """Optimizer and learning rate."""

    name: Optimizer = Optimizer.adam
    lr: float = 1e-3
    momentum: float = 0.0  # sgd only
    weight_decay: float = 0.0  # adamw only
    # Clip each gradient tensor's norm to this (None: no clipping). CTC losses are sums over the characters of
    # an utterance, so their gradients spike; 1.0 is what the presets train with.
    clipnorm: float | None = 1.0
    schedule: Schedule = Schedule.constant
    warmup_ratio: float = 0.0  # cosine: share of all optimizer steps spent warming up, in [0, 1)
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 0.0
    # Keep an exponential moving average of the weights (Polyak averaging) with this momentum, None: none.
    # Validation, the best epoch's weights and the bundle then use the average; 0.99 averages over about the
    # last 100 optimizer steps.
    ema_momentum: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", Optimizer(self.name))
        if self.ema_momentum is not None and not 0.0 < self.ema_momentum < 1.0:
            raise ValueError(
                f"optimizer.ema_momentum is the weight of the running average at each step and must be in (0, 1) "
                f"(0.99 is usual) or null for no average, got {self.ema_momentum}"
            )
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        if self.clipnorm is not None and self.clipnorm <= 0:
            raise ValueError(f"optimizer.clipnorm must be > 0 or null (no clipping), got {self.clipnorm}")
        if self.lr <= 0:
            raise ValueError(f"optimizer.lr must be positive, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(
                f"optimizer.warmup_ratio is a share of all training steps and must be in [0, 1), got "
                f"{self.warmup_ratio}"
            )
        if self.schedule == Schedule.plateau and not (0.0 < self.plateau_factor < 1.0 and self.plateau_patience >= 1):
            raise ValueError(
                f"optimizer.plateau_factor must be in (0, 1) and plateau_patience >= 1, got "
                f"{self.plateau_factor}, {self.plateau_patience}"
            )


@dataclass(frozen=True)
class TrainerOptions:
    """The fit loop."""

    epochs: int = 30
    batch_size: int = 32
    # Batches by a frame budget instead of a count: as many utterances as fit in this many padded feature
    # frames (utterances x the longest's frames, before stacking); batch_size then only sizes evaluation.
    batch_frames: int | None = None
    bucketing: bool = True  # batches of similar lengths (less padding)
    deterministic: bool = True  # op determinism: same seed, same numbers
    threads: int | None = None  # TensorFlow intra/inter-op threads; None: TensorFlow's default
    stop_at_val_ler: float | None = None  # stop once val_ler <= this
    patience: int | None = None  # stop after this many epochs without a lower val_ler (early stopping)
    keep_best: bool = False  # true: the bundle holds the weights of the epoch with the lowest val_ler
    resume: Resume = Resume.auto
    samples: int = 10  # test transcripts listed in result.json
    verbose: int = 1  # Keras progress: 0 silent, 1 bar, 2 one line per epoch
    # Batches with a non-finite loss or gradients are skipped; more than this many in a row stop the run.
    max_skipped_in_a_row: int | None = 10
    # A checkpoint is written once both have passed since the last one (and after the last epoch): writing one
    # costs tens of milliseconds, more than a whole epoch of the smallest presets.
    checkpoint_every_epochs: int = 1
    checkpoint_every_seconds: float = 10.0
    # tf.distribute: the configured batch (or frame budget) is the global one, split over every replica.
    strategy: Strategy = Strategy.auto
    # Split the host CPU into this many logical devices (to run strategies without GPUs; null: one device).
    cpu_devices: int | None = None
    # Layers compute in float16 (GPUs with tensor cores), variables and the CTC loss stay float32.
    mixed_precision: bool = False
    # Start from a trained bundle (a run directory or its model/ folder): its feature and model settings and
    # weights; the output rows of the characters both alphabets share (asr.training.transfer). null: from scratch.
    init_from: str | None = None
    # Hold the lowest freeze_layers LSTM layers fixed during the first freeze_epochs epochs (both 0: never; one
    # without the other is refused).
    freeze_layers: int = 0
    freeze_epochs: int = 0
    init_cmvn: InitCMVN = InitCMVN.train
    # Weight of an auxiliary CTC loss on the output of LSTM layer intermediate_ctc_layer (null: the middle one)
    # through the shared output layer (intermediate CTC, Lee & Watanabe 2021); 0: off.
    intermediate_ctc: float = 0.0
    intermediate_ctc_layer: int | None = None
    # Average the weights at the end of the last average_last epochs (checkpoint averaging, as Vaswani et al. 2017
    # averaged their last checkpoints); the bundle takes the average where its validation LER is lower than that of
    # the weights it would hold otherwise (trainer.keep_best's or the last epoch's). 0 or 1: off. While it is set,
    # every epoch writes a checkpoint (an early stop may end the run at any epoch) and the last average_last stay.
    average_last: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "resume", Resume(self.resume))
        object.__setattr__(self, "strategy", Strategy(self.strategy))
        object.__setattr__(self, "init_cmvn", InitCMVN(self.init_cmvn))
        if self.stop_at_val_ler is not None and self.stop_at_val_ler < 0:
            raise ValueError(f"trainer.stop_at_val_ler must be >= 0 or null (off), got {self.stop_at_val_ler}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"trainer.epochs and trainer.batch_size must be >= 1, got {self.epochs}, {self.batch_size}"
            )
        if self.batch_frames is not None and self.batch_frames < 1:
            raise ValueError(
                f"trainer.batch_frames must be >= 1 or null (batches of batch_size), got {self.batch_frames}"
            )
        if self.checkpoint_every_epochs < 1 or self.checkpoint_every_seconds < 0:
            raise ValueError(
                f"trainer.checkpoint_every_epochs must be >= 1 and trainer.checkpoint_every_seconds >= 0, got "
                f"{self.checkpoint_every_epochs}, {self.checkpoint_every_seconds}"
            )
        if self.init_from == "":
            object.__setattr__(self, "init_from", None)
        if self.freeze_layers < 0 or self.freeze_epochs < 0:
            raise ValueError(
                f"trainer.freeze_layers and trainer.freeze_epochs must be >= 0, got {self.freeze_layers}, "
                f"{self.freeze_epochs}"
            )
        if self.freeze_layers and not self.freeze_epochs:
            raise ValueError(
                f"trainer.freeze_layers={self.freeze_layers} holds layers only during the first trainer.freeze_epochs "
                "epochs, and trainer.freeze_epochs is 0; add trainer.freeze_epochs=<epochs> (e.g. 4), or drop "
                "trainer.freeze_layers"
            )
        if self.freeze_epochs and not self.freeze_layers:
            raise ValueError(
                f"trainer.freeze_epochs={self.freeze_epochs} holds the lowest trainer.freeze_layers LSTM layers, and "
                "trainer.freeze_layers is 0; add trainer.freeze_layers=<layers> (e.g. 2), or drop "
                "trainer.freeze_epochs"
            )
        if self.freeze_layers and self.init_from is None:
            raise ValueError(
                "trainer.freeze_layers holds layers of a trained model fixed; it needs trainer.init_from=<run "
                "directory or bundle> (or trainer.freeze_layers=0)"
            )
        if self.init_cmvn == InitCMVN.source and self.init_from is None:
            raise ValueError("trainer.init_cmvn=source takes a base model's statistics; it needs trainer.init_from")
        if not 0.0 <= self.intermediate_ctc < 1.0:
            raise ValueError(
                "trainer.intermediate_ctc is the auxiliary loss's weight, in [0, 1) (0: off), got "
                f"{self.intermediate_ctc}"
            )
        if self.average_last < 0 or self.average_last > self.epochs:
            raise ValueError(
                f"trainer.average_last is a number of final epochs, 0 (off) to trainer.epochs={self.epochs}, got "
                f"{self.average_last}"
            )
        for name in ("threads", "patience", "cpu_devices"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"trainer.{name} must be >= 1 or null (off), got {getattr(self, name)}")
        if self.max_skipped_in_a_row is not None and self.max_skipped_in_a_row < 0:
            limit = self.max_skipped_in_a_row
            raise ValueError(f"trainer.max_skipped_in_a_row must be >= 0 or null (off), got {limit}")


@dataclass(frozen=True)
class RunOptions:
    """Everything a training run is told, validated (asr.config.to_options builds it from a Hydra config)."""

    data: DataOptions
    name: str = "run"
    seed: int = 0
    features: FeatureOptions = field(default_factory=FeatureOptions)
    augment: AugmentOptions = field(default_factory=AugmentOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    trainer: TrainerOptions = field(default_factory=TrainerOptions)
    lm: LMOptions = field(default_factory=LMOptions)

    def __post_init__(self) -> None:
        layer, layers = self.trainer.intermediate_ctc_layer, self.model.num_layers
        if self.trainer.intermediate_ctc and layer is not None and not 1 <= layer < layers:
            raise ValueError(
                f"trainer.intermediate_ctc_layer must name a layer below the top one (1 to {layers - 1}), got {layer}"
            )
