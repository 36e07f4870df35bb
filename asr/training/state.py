"""RunState: what a training run has done so far, shared by the callbacks and saved in every checkpoint; EpochRecord:
one epoch's figures (a line of metrics.jsonl)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np

STATUS_FILE = "status.json"  # a job's status in its directory (written by the asr-train Hydra callback)


@dataclass
class EpochRecord:
    """One epoch's figures, as the RecordEpoch callback makes them and metrics.jsonl holds them (the validation
    figures only with a validation split; the times once the epoch's callbacks are done)."""

    epoch: int  # 1-based
    loss: float
    ler: float
    wer: float
    val_loss: float | None = None
    val_ler: float | None = None
    val_wer: float | None = None
    skipped_batches: float = 0.0  # training batches skipped for a non-finite loss or gradient
    lr: float = 0.0  # the learning rate at the epoch's end
    padding_share: float = 0.0  # padded frames / real frames of the epoch's batches
    epoch_seconds: float | None = None  # wall time from the previous epoch's end to this one's
    end_of_epoch_seconds: float | None = None  # the part spent in the callbacks (checkpoint, plot, TensorBoard...)

    @property
    def validated_ler(self) -> float:
        """The validation LER, or the training LER without a validation split."""
        return self.ler if self.val_ler is None else self.val_ler

    @property
    def validated_loss(self) -> float:
        """The validation loss, or the training loss without a validation split."""
        return self.loss if self.val_loss is None else self.val_loss

    def to_json(self) -> dict:
        """The metrics.jsonl line (figures not measured are left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> EpochRecord:
        """A record from to_json() output (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RunState:
    """Progress of one run. Everything but `best_weights` goes into the checkpoint's JSON."""

    config_sha256: str = ""  # hash of `settings`
    settings: dict | None = None  # the settings that decide the numbers (asr.training.settings; a resume must match)
    epoch: int = 0  # epochs completed (1-based count)
    records: list[EpochRecord] = field(default_factory=list)  # one per epoch: the lines of metrics.jsonl
    stopped: bool = False  # early stopping decided to end the run
    plateau_wait: int = 0  # epochs since reduce-on-plateau last acted or saw an improvement
    train_seconds: float = 0.0  # wall-clock training time, over every invocation of a resumed run
    best_weights: list[np.ndarray] | None = None  # weights of the best epoch so far (trainer.keep_best)

    def to_json(self) -> dict:
        """The JSON-able part (no weights)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "best_weights"}
        return {**data, "records": [r.to_json() for r in self.records]}

    @classmethod
    def from_json(cls, data: dict, best_weights: list[np.ndarray] | None = None) -> RunState:
        """A state from to_json() output (unknown keys of other versions are ignored)."""
        known = {f.name for f in fields(cls)} - {"best_weights"}
        values = {k: v for k, v in data.items() if k in known}
        values["records"] = [EpochRecord.from_json(r) for r in values.get("records", [])]
        return cls(**values, best_weights=best_weights)

    def best_epoch(self) -> tuple[int, float]:
        """(epoch, LER) of the best epoch so far; see best_epoch()."""
        return best_epoch(self.records)

    def epochs_without_improvement(self) -> int:
        """Epochs since the validation LER last went down; see epochs_without_improvement()."""
        return epochs_without_improvement(self.records)


def best_epoch(records: list[EpochRecord]) -> tuple[int, float]:
    """(epoch, LER) of the best epoch: lowest validation LER (training LER without validation); among equal
    LERs, common on small validation sets, the lowest loss."""
    ler, _, epoch = min((r.validated_ler, r.validated_loss, r.epoch) for r in records)
    return epoch, ler


def epochs_without_improvement(records: list[EpochRecord]) -> int:
    """Epochs since the validation LER last went down (the patience count of early stopping)."""
    lers = [r.validated_ler for r in records]
    return len(lers) - 1 - lers.index(min(lers))
