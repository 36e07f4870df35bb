"""Per-epoch training checkpoints: everything a killed run needs to continue exactly where it stopped.

A checkpoint is one .npz file, `checkpoints/epoch-NNNN.npz`, holding every model variable (weights and the
random-generator states of augmentation and dropout), every optimizer variable (step count, moments), the
best epoch's weights, and the JSON of the RunState (epoch, metric history, callback state). The data order needs no
state: epoch e's batches are a function of (seed, e). Files are written under a temporary name and renamed,
so a file with the final name is always complete.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from asr.errors import UserError
from asr.files import atomic_write
from asr.training.state import RunState

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2  # the newest and the one before it (a spare, should the newest be unreadable)
_NAME = re.compile(r"^epoch-(\d{4,})\.npz$")


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used to resume this run."""


@dataclass(frozen=True)
class Checkpoint:
    """What was saved at the end of an epoch."""

    path: Path
    state: RunState  # with the best epoch's weights
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]


def save(run_dir: Path, model: keras.Model, state: RunState, keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write the checkpoint of epoch state.epoch atomically; keep the newest `keep` (at least KEEP_CHECKPOINTS)."""
    directory = run_dir / CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.variables)}
    arrays.update({f"optimizer_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)})
    for i, w in enumerate(state.best_weights or []):
        arrays[f"best_{i}"] = w
    arrays["state"] = np.frombuffer(json.dumps(state.to_json()).encode("utf-8"), np.uint8)
    path = directory / f"epoch-{state.epoch:04d}.npz"
    atomic_write(path, lambda f: np.savez(f, **arrays))
    for old in sorted(_complete(directory))[: -max(keep, KEEP_CHECKPOINTS)]:
        old[1].unlink(missing_ok=True)
    return path


def _complete(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint file with a final name (temporary files are ignored)."""
    if not directory.is_dir():
        return []
    found = ((_NAME.match(p.name), p) for p in directory.iterdir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def latest_epoch(run_dir: Path) -> int | None:
    """The epoch of the newest checkpoint file of a run (not read), or None."""
    found = _complete(run_dir / CHECKPOINT_DIR)
    return found[-1][0] if found else None


def _read(path: Path) -> Checkpoint:
    """Load one checkpoint file."""
    with np.load(path, allow_pickle=False) as data:  # arrays only: a checkpoint never runs code

        def series(prefix: str) -> list[np.ndarray]:
            count = sum(1 for k in data.files if k.startswith(prefix))
            return [data[f"{prefix}{i}"] for i in range(count)]

        state = RunState.from_json(json.loads(data["state"].tobytes().decode("utf-8")), series("best_") or None)
        return Checkpoint(path, state, series("model_"), series("optimizer_"))


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest readable checkpoint of a run, or None; unreadable ones are reported and passed over."""
    for _, path in reversed(_complete(run_dir / CHECKPOINT_DIR)):
        try:
            return _read(path)
        except (OSError, ValueError, KeyError) as error:
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, error)
    return None


def averaged_weights(run_dir: Path, epochs: Sequence[int]) -> list[np.ndarray]:
    """The mean of the model variables saved at the end of `epochs` (floating-point ones; the others, such as
    random-generator states, as the last of them saved)."""
    found = dict(_complete(run_dir / CHECKPOINT_DIR))
    missing = [e for e in epochs if e not in found]
    if missing:
        raise CheckpointError(
            f"{run_dir / CHECKPOINT_DIR} has no checkpoint of epoch(s) {missing}; trainer.average_last keeps the "
            "checkpoints of the epochs it averages while training: train with it set from the start"
        )
    saved = [_read(found[e]).model_variables for e in epochs]
    return [
        np.mean([s[i] for s in saved], axis=0, dtype=np.float64).astype(last.dtype)
        if np.issubdtype(last.dtype, np.floating)
        else last
        for i, last in enumerate(saved[-1])
    ]


def restore(model: keras.Model, checkpoint: Checkpoint) -> None:
    """Put a checkpoint's model and optimizer variables into a compiled CTCModel (built here if needed, under
    the model's strategy)."""
    model.build_variables()
    targets = [("model", model.variables, checkpoint.model_variables)]
    targets.append(("optimizer", model.optimizer.variables, checkpoint.optimizer_variables))
    for what, variables, values in targets:
        shapes = [tuple(v.shape) for v in variables]
        if shapes != [tuple(v.shape) for v in values]:
            raise CheckpointError(
                f"{checkpoint.path}: its {what} variables do not match this model's; the run directory holds "
                f"a different model (start over with trainer.resume=never or use another hydra.run.dir)"
            )
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def move_aside(run_dir: Path, names: list[str]) -> Path | None:
    """Move the named files and folders of an earlier run into run_dir/previous-<time>/; never delete them."""
    present = [run_dir / n for n in names if (run_dir / n).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, suffix = run_dir / f"previous-{stamp}", 1
    while target.exists():  # moved aside twice within a second
        suffix += 1
        target = run_dir / f"previous-{stamp}-{suffix}"
    target.mkdir()
    for path in present:
        path.rename(target / path.name)
    log.info("moved the earlier run's %s to %s", ", ".join(p.name for p in present), target)
    return target
