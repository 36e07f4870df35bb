"""RunState: what a training run has done so far, shared by the callbacks and saved in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np


@dataclass
class RunState:
    """Progress of one run. Everything but `best_weights` goes into the checkpoint's JSON."""

    config_sha256: str = ""  # hash of the settings that decide the numbers (a resume must match it)
    epoch: int = 0  # epochs completed (1-based count)
    records: list[dict] = field(default_factory=list)  # the metrics.jsonl lines, one per epoch
    stopped: bool = False  # early stopping decided to end the run
    plateau_wait: int = 0  # epochs since reduce-on-plateau last acted or saw an improvement
    train_seconds: float = 0.0  # wall-clock training time, over every invocation of a resumed run
    best_weights: list[np.ndarray] | None = None  # weights of the best epoch so far (trainer.keep_best)

    def to_json(self) -> dict:
        """The JSON-able part (no weights)."""
        return {k: v for k, v in asdict(self).items() if k != "best_weights"}

    @classmethod
    def from_json(cls, data: dict, best_weights: list[np.ndarray] | None = None) -> RunState:
        """A state from to_json() output (unknown keys of other versions are ignored)."""
        known = {f.name for f in fields(cls)} - {"best_weights"}
        return cls(**{k: v for k, v in data.items() if k in known}, best_weights=best_weights)

    def best_epoch(self) -> tuple[int, float]:
        """(epoch, LER) of the best epoch so far; see best_epoch()."""
        return best_epoch(self.records)

    def epochs_without_improvement(self) -> int:
        """Epochs since the validation LER last went down; see epochs_without_improvement()."""
        return epochs_without_improvement(self.records)


def best_epoch(records: list[dict]) -> tuple[int, float]:
    """(epoch, LER) of the best epoch: lowest validation LER (training LER without validation); among equal
    LERs, common on small validation sets, the lowest loss."""
    key = [(r.get("val_ler", r["ler"]), r.get("val_loss", r["loss"]), r["epoch"]) for r in records]
    ler, _, epoch = min(key)
    return epoch, ler


def epochs_without_improvement(records: list[dict]) -> int:
    """Epochs since the validation LER last went down (the patience count of early stopping)."""
    lers = [r.get("val_ler", r["ler"]) for r in records]
    return len(lers) - 1 - lers.index(min(lers))
