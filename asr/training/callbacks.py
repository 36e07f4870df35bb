"""Keras callbacks of a training run, one job each, sharing one RunState. RecordEpoch makes each epoch's
EpochRecord (whichever callback asks for it first: the others read it from RecordEpoch.record, in any order);
WriteMetrics, which times the epoch's callbacks, comes last (`training_callbacks`)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import keras
import tensorflow as tf

from asr.errors import UserError
from asr.training import checkpoint
from asr.training.optimizers import averaged_weights
from asr.training.options import OptimizerOptions, Schedule, TrainerOptions
from asr.training.plots import learning_curves
from asr.training.state import EpochRecord, RunState

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "learning_curves.png"
TB_DIR = "tb"
# The metrics Keras reports per epoch that go into metrics.jsonl (validation ones only with a valid split).
LOGGED_METRICS = ("loss", "ler", "wer", "val_loss", "val_ler", "val_wer", "skipped_batches")
# learning_curves.png is redrawn at most this often (and at the end): a redraw costs ~0.5 s on a 2-core CPU,
# which is more than a whole epoch of the small presets.
PLOT_EVERY_SECONDS = 30.0
# TensorBoard's decoded validation samples (a forward pass and a decoding, ~30 ms) are written, and its files
# flushed, at most this often and at the end; the scalars go in every epoch.
TB_EVERY_SECONDS = 30.0


class TrainingDiverged(UserError, FloatingPointError):
    """The training loss became NaN or infinite, or too many batches in a row were skipped for it."""


class Interrupted(KeyboardInterrupt):
    """Training stopped at a signal (SIGINT, SIGTERM); the message says what was kept and how to resume. A
    KeyboardInterrupt, so a multirun stops as well instead of going on with its next job."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """SIGINT and SIGTERM, noted instead of stopping the process while `catching()` (a second one stops it at
    once); StopOnSignal ends training after the batch during which the first came."""

    def __init__(self) -> None:
        self.caught: list[int] = []  # the signal numbers noted, in order

    @contextlib.contextmanager
    def catching(self) -> Iterator[StopSignals]:
        """Note the signals while inside; the handlers before are restored on the way out."""
        if threading.current_thread() is not threading.main_thread():  # signals reach only the main thread
            yield self
            return
        before = {s: signal.signal(s, self._note) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in before.items():
                signal.signal(s, handler)

    def _note(self, signum: int, frame) -> None:
        if self.caught:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}")
        self.caught.append(signum)
        log.warning("%s received: stopping after this batch", signal.Signals(signum).name)


class StopOnSignal(keras.callbacks.Callback):
    """End training after the batch during which SIGINT or SIGTERM arrived, keeping the last epoch's checkpoint:
    raises Interrupted (no partial epoch is recorded, no validation is run)."""

    def __init__(self, run_dir: Path, signals: StopSignals) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.signals = signals
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if not self.signals.caught:
            return
        signum = self.signals.caught[0]
        name = signal.Signals(signum).name
        saved = checkpoint.latest_epoch(self.run_dir)
        kept = (
            f"the checkpoint of epoch {saved} in {self.run_dir / checkpoint.CHECKPOINT_DIR} is kept"
            if saved
            else "no checkpoint had been written yet"
        )
        raise Interrupted(
            f"{name}: training stopped in epoch {self._epoch + 1} after batch {batch + 1}; {kept}. Run the same "
            f"command again to resume (the resumed run ends with the numbers of an uninterrupted one)",
            signum,
        )


class SkippedBatches(keras.callbacks.Callback):
    """Name the utterances of each training batch that was skipped for a non-finite loss or gradient; stop the
    run when more than `limit` batches in a row were skipped."""

    def __init__(self, batch_keys: Callable[[int, int], list[str]] | None, limit: int | None) -> None:
        super().__init__()
        self.batch_keys = batch_keys
        self.limit = limit
        self._epoch = 0
        self._seen = 0.0  # skipped batches so far this epoch
        self.in_a_row = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch, self._seen = epoch, 0.0

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        skipped = float((logs or {}).get("skipped_batches", self._seen))
        if skipped <= self._seen:
            self.in_a_row = 0
            return
        self._seen = skipped
        self.in_a_row += 1
        keys = self.batch_keys(self._epoch, batch) if self.batch_keys else []
        log.warning(
            "epoch %d, batch %d skipped: its loss or gradients are not finite (utterances: %s)",
            self._epoch + 1,
            batch + 1,
            ", ".join(keys) or "unknown",
        )
        if self.limit is not None and self.in_a_row > self.limit:
            raise TrainingDiverged(
                f"epoch {self._epoch + 1}: {self.in_a_row} batches in a row had a non-finite loss or gradients "
                f"(more than trainer.max_skipped_in_a_row={self.limit}); lower optimizer.lr, keep "
                f"optimizer.clipnorm set, and check the utterances named in the log"
            )


class RecordEpoch(keras.callbacks.Callback):
    """Make each epoch's EpochRecord (metrics, learning rate, padding share) and append it to the state, once,
    for whichever callback asks first; stop the run on a NaN or infinite loss. WriteMetrics adds the epoch's
    time and writes the line."""

    def __init__(self, state: RunState, run_dir: Path, padding_shares: Sequence[float]) -> None:
        super().__init__()
        self.state = state
        self.run_dir = run_dir
        self.padding_shares = padding_shares
        self.ended = 0.0  # perf_counter when the epoch's training and validation were done

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        log.info("epoch %d: padding share %.3f (padded frames / real frames)", epoch + 1, self.padding_shares[epoch])

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.record(epoch, logs)

    def record(self, epoch: int, logs: dict | None) -> EpochRecord:
        """The record of `epoch` (0-based, as Keras counts) made from its logs, the first time it is asked for."""
        if self.state.records and self.state.records[-1].epoch == epoch + 1:
            return self.state.records[-1]
        self.ended = time.perf_counter()
        logs = logs or {}
        record = EpochRecord(
            epoch=epoch + 1,
            **{k: float(logs[k]) for k in LOGGED_METRICS if k in logs},
            lr=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            padding_share=round(self.padding_shares[epoch], 4),
        )
        if not math.isfinite(record.loss):
            raise TrainingDiverged(
                f"epoch {epoch + 1}: the training loss is {record.loss}; lower optimizer.lr or set "
                f"optimizer.clipnorm (the last good checkpoint is in {self.run_dir / checkpoint.CHECKPOINT_DIR})"
            )
        self.state.records.append(record)
        self.state.epoch = epoch + 1
        return record


class WriteMetrics(keras.callbacks.Callback):
    """The last callback of an epoch: its wall time (from the end of the previous epoch's callbacks, or the start
    of fit, to the end of its own, so the epochs sum to train_seconds) and the part of it spent in the callbacks
    after `first` began (end_of_epoch_seconds: checkpoint, plot, TensorBoard...) into the record, the training
    time into the state; then the record as a line of metrics.jsonl."""

    def __init__(self, state: RunState, run_dir: Path, recorder: RecordEpoch) -> None:
        super().__init__()
        self.state = state
        self.run_dir = run_dir
        self.recorder = recorder
        self._mark = 0.0  # perf_counter at the end of the previous epoch (or the start of fit)
        self._fit_started = 0.0
        self._seconds_before = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._mark = self._fit_started = time.perf_counter()
        self._seconds_before = self.state.train_seconds  # a resumed run's earlier training time

    def stamp(self) -> float:
        """The epoch's time so far into its record and the training time into the state; returns the time."""
        now = time.perf_counter()
        record = self.state.records[-1]
        record.epoch_seconds = round(now - self._mark, 4)
        record.end_of_epoch_seconds = round(now - self.recorder.ended, 4)
        self.state.train_seconds = self._seconds_before + now - self._fit_started
        return now

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        record = self.recorder.record(epoch, logs)
        self._mark = self.stamp()
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_json()) + "\n")


class KeepBest(keras.callbacks.Callback):
    """Hold a copy of the weights of the best epoch so far (lowest validation LER) in the state: the moving
    averages where the optimizer keeps them."""

    def __init__(self, state: RunState, recorder: RecordEpoch) -> None:
        super().__init__()
        self.state = state
        self.recorder = recorder

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.recorder.record(epoch, logs)
        if self.state.best_epoch()[0] == epoch + 1:
            with averaged_weights(self.model):  # the weights that were validated
                self.state.best_weights = self.model.get_weights()


class ReduceOnPlateau(keras.callbacks.Callback):
    """Multiply the learning rate by `plateau_factor` after `plateau_patience` epochs without a lower
    validation LER (not below `min_lr`)."""

    def __init__(self, state: RunState, recorder: RecordEpoch, options: OptimizerOptions) -> None:
        super().__init__()
        self.state = state
        self.recorder = recorder
        self.options = options

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        record = self.recorder.record(epoch, logs)
        if self.state.epochs_without_improvement() == 0:
            self.state.plateau_wait = 0
            return
        self.state.plateau_wait += 1
        if self.state.plateau_wait >= self.options.plateau_patience:
            old = record.lr
            lr = max(old * self.options.plateau_factor, self.options.min_lr)
            if lr < old:
                self.model.optimizer.learning_rate = lr
                log.info("epoch %d: validation LER flat, learning rate %.3g -> %.3g", epoch + 1, old, lr)
            self.state.plateau_wait = 0


class EarlyStop(keras.callbacks.Callback):
    """Stop at a target validation LER (`stop_at_val_ler`), or after `patience` epochs without a lower one."""

    def __init__(
        self, state: RunState, recorder: RecordEpoch, stop_at_val_ler: float | None, patience: int | None
    ) -> None:
        super().__init__()
        self.state = state
        self.recorder = recorder
        self.stop_at_val_ler = stop_at_val_ler
        self.patience = patience

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        ler = self.recorder.record(epoch, logs).validated_ler
        if self.stop_at_val_ler is not None and ler <= self.stop_at_val_ler:
            log.info("epoch %d: validation LER %.4f <= %.4f, stopping", epoch + 1, ler, self.stop_at_val_ler)
            self.state.stopped = True
        waited = self.state.epochs_without_improvement()
        if self.patience is not None and waited >= self.patience:
            log.info("epoch %d: no lower validation LER for %d epochs, stopping", epoch + 1, waited)
            self.state.stopped = True
        self.model.stop_training = self.state.stopped


class TensorBoardLog(keras.callbacks.Callback):
    """Scalars per split (tb/train, tb/validation) every epoch, and a few decoded validation samples as text
    at most every `every_seconds` of training and after the last epoch (a run of seconds decodes them once)."""

    def __init__(
        self,
        recorder: RecordEpoch,
        run_dir: Path,
        samples: Callable[[], list[dict]] | None,
        every_seconds: float = TB_EVERY_SECONDS,
    ) -> None:
        super().__init__()
        self.recorder = recorder
        self._epoch = 0  # the last epoch logged (1-based)
        self.folder = run_dir / TB_DIR
        self.samples = samples
        self.every_seconds = every_seconds
        self.writers: dict[str, tf.summary.SummaryWriter] = {}
        self._writes: dict[str, Callable] = {}  # split -> traced scalar writer
        self._written = -math.inf  # perf_counter of the last samples and flush
        self._pending = False  # epochs logged since then

    def on_train_begin(self, logs=None) -> None:
        self._written = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if not self.writers:
            self.writers = {s: tf.summary.create_file_writer(str(self.folder / s)) for s in ("train", "validation")}
        record = self.recorder.record(epoch, logs)
        self._epoch = record.epoch
        train = {key: getattr(record, key) for key in ("loss", "ler", "wer", "lr", "padding_share")}
        self._scalars("train", train)
        validation = {k: getattr(record, f"val_{k}") for k in ("loss", "ler", "wer") if record.val_ler is not None}
        if validation:
            self._scalars("validation", validation)
        self._pending = True
        if time.perf_counter() - self._written >= self.every_seconds:
            self._write_samples()

    def _scalars(self, split: str, values: dict[str, float]) -> None:
        """An epoch's scalars into a split's writer, through one traced function per split (an eager
        tf.summary.scalar per value costs more than a small preset's whole epoch work)."""
        if split not in self._writes:
            writer, keys = self.writers[split], tuple(values)

            @tf.function
            def write(step: tf.Tensor, numbers: tf.Tensor) -> None:
                with writer.as_default(step=step):
                    for i, key in enumerate(keys):
                        tf.summary.scalar(key, numbers[i])

            self._writes[split] = write
        step = tf.constant(self._epoch, tf.int64)
        self._writes[split](step, tf.constant(list(values.values()), tf.float32))

    def _write_samples(self) -> None:
        """The decoded samples at the last logged epoch, and every file flushed."""
        if self.samples is not None:
            lines = [
                f"{'==' if s['ref'] == s['hyp'] else '!='} ref: `{s['ref']}`  hyp: `{s['hyp']}`" for s in self.samples()
            ]
            with self.writers["validation"].as_default(step=self._epoch):
                tf.summary.text("samples", "\n\n".join(lines))
        for writer in self.writers.values():
            writer.flush()
        self._written, self._pending = time.perf_counter(), False

    def on_train_end(self, logs=None) -> None:
        if self._pending:
            self._write_samples()
        for writer in self.writers.values():
            writer.close()


class PlotCurves(keras.callbacks.Callback):
    """Redraw learning_curves.png (loss and LER per epoch) at most every `every_seconds` of training, and when
    training ends (a redraw costs a quarter to half a second: a run of a few seconds draws it once)."""

    def __init__(self, state: RunState, run_dir: Path, every_seconds: float = PLOT_EVERY_SECONDS) -> None:
        super().__init__()
        self.state = state
        self.path = run_dir / CURVES_FILE
        self.every_seconds = every_seconds
        self._drawn = -math.inf  # perf_counter of the last redraw (or of the start of training)
        self._drawn_epochs = 0

    def on_train_begin(self, logs=None) -> None:
        self._drawn = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if time.perf_counter() - self._drawn >= self.every_seconds:
            self._draw()

    def on_train_end(self, logs=None) -> None:
        if self._drawn_epochs != len(self.state.records):
            self._draw()

    def _draw(self) -> None:
        learning_curves(self.state.records, self.path)
        self._drawn, self._drawn_epochs = time.perf_counter(), len(self.state.records)


class SaveCheckpoint(keras.callbacks.Callback):
    """Save the checkpoint that a resumed run continues from (model, optimizer, state): at the end of an epoch
    once `every_epochs` epochs and `every_seconds` seconds have passed since the last one, and at the last epoch
    (the last of `epochs`, or an early stop). A killed run goes back at most that far."""

    def __init__(
        self,
        state: RunState,
        run_dir: Path,
        epochs: int,
        every_epochs: int,
        every_seconds: float,
        before_save: Callable[[], None] | None = None,
        average_last: int = 0,
    ) -> None:
        super().__init__()
        self.state = state
        self.run_dir = run_dir
        # trainer.average_last: every epoch saved (an early stop may end the run at any of them), the last ones kept
        self.average_last = average_last
        self.before_save = before_save  # WriteMetrics.stamp: the saved state holds the epoch's time
        self.epochs = epochs
        self.every_epochs = every_epochs
        self.every_seconds = every_seconds
        self._saved_epoch = 0
        self._saved_at = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._saved_epoch, self._saved_at = self.state.epoch, time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        due = epoch + 1 - self._saved_epoch >= self.every_epochs
        due = due and time.perf_counter() - self._saved_at >= self.every_seconds
        if due or self.average_last or epoch + 1 >= self.epochs or self.model.stop_training:
            if self.before_save is not None:
                self.before_save()
            checkpoint.save(self.run_dir, self.model, self.state, keep=self.average_last)
            self._saved_epoch, self._saved_at = epoch + 1, time.perf_counter()


class FreezeLayers(keras.callbacks.Callback):
    """Holds the model's frozen layers (CTCModel.freeze_lowest) fixed in the first `epochs` epochs and lets them
    learn after; a resumed run picks up where the epoch count says."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        held = epoch < self.epochs
        self.model.trainable_share.assign(0.0 if held else 1.0)
        if epoch == self.epochs and epoch:
            log.info("epoch %d: the lowest %d LSTM layers learn from now on", epoch + 1, self.model.frozen_layers)


def training_callbacks(
    state: RunState,
    run_dir: Path,
    trainer: TrainerOptions,
    optimizer: OptimizerOptions,
    padding_shares: Sequence[float],
    samples: Callable[[], list[dict]] | None,
    batch_keys: Callable[[int, int], list[str]] | None = None,
    signals: StopSignals | None = None,
) -> list[keras.callbacks.Callback]:
    """The callbacks of a run. Each reads the epoch's record from RecordEpoch, whatever their order; what the
    checkpoint saves (best weights, learning rate, stop) is decided before SaveCheckpoint, and WriteMetrics, which
    times the epoch's callbacks, is last. `batch_keys(epoch, batch)` names a training batch's utterances."""
    recorder = RecordEpoch(state, run_dir, padding_shares)
    callbacks: list[keras.callbacks.Callback] = [recorder]
    if optimizer.ema_momentum is not None:  # validation on the averaged weights
        callbacks.append(keras.callbacks.SwapEMAWeights())
    if trainer.freeze_layers and trainer.freeze_epochs:
        callbacks.append(FreezeLayers(trainer.freeze_epochs))
    callbacks.append(SkippedBatches(batch_keys, trainer.max_skipped_in_a_row))
    if signals is not None:
        callbacks.append(StopOnSignal(run_dir, signals))
    if trainer.keep_best:
        callbacks.append(KeepBest(state, recorder))
    if optimizer.schedule == Schedule.plateau:
        callbacks.append(ReduceOnPlateau(state, recorder, optimizer))
    write = WriteMetrics(state, run_dir, recorder)
    every_epochs, every_seconds = trainer.checkpoint_every_epochs, trainer.checkpoint_every_seconds
    return [
        *callbacks,
        EarlyStop(state, recorder, trainer.stop_at_val_ler, trainer.patience),
        TensorBoardLog(recorder, run_dir, samples),
        PlotCurves(state, run_dir),
        SaveCheckpoint(state, run_dir, trainer.epochs, every_epochs, every_seconds, write.stamp, trainer.average_last),
        write,
    ]
