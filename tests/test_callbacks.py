"""The training callbacks, epoch by epoch on a tiny model (no data, no fit)."""

import functools
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions
from asr.training import checkpoint
from asr.training.callbacks import TrainingDiverged, training_callbacks
from asr.training.optimizers import build_optimizer
from asr.training.options import OptimizerOptions, TrainerOptions
from asr.training.state import EpochRecord, RunState


@functools.cache
def _tiny_model() -> CTCModel:
    """One tiny built model for every test (each compiles it with its own optimizer)."""
    model = CTCModel(4, "ab ", ModelOptions(num_layers=1, units=4))
    model.build_for()
    return model


class Run:
    """The callbacks of a run over a tiny model, driven by hand."""

    def __init__(self, tmp_path: Path, trainer: TrainerOptions, optimizer: OptimizerOptions) -> None:
        self.model = _tiny_model()
        self.model.compile(optimizer=build_optimizer(optimizer, 10, 10, clip=False), clipnorm=optimizer.clipnorm)
        self.model.stop_training = False
        self.state = RunState()
        self.callbacks = training_callbacks(self.state, tmp_path, trainer, optimizer, [0.1] * 10, None)
        for callback in self.callbacks:
            callback.set_model(self.model)
            callback.on_train_begin()

    def epoch(self, epoch: int, val_ler: float, loss: float = 1.0) -> None:
        logs = {"loss": loss, "ler": 0.5, "wer": 0.5, "val_loss": loss, "val_ler": val_ler, "val_wer": 0.5}
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch)
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def end(self) -> None:
        for callback in self.callbacks:
            callback.on_train_end()


@pytest.fixture
def no_plots(monkeypatch):
    """learning_curves.png left undrawn (a redraw costs a quarter of a second) in tests that do not read it."""
    from asr.training import callbacks

    monkeypatch.setattr(callbacks, "learning_curves", lambda records, path: None)


def test_reduce_on_plateau_and_early_stopping_follow_the_validation_ler(tmp_path):
    optimizer = OptimizerOptions(lr=0.01, schedule="plateau", plateau_factor=0.5, plateau_patience=2, min_lr=0.003)
    run = Run(tmp_path, TrainerOptions(patience=4, keep_best=True), optimizer)
    lrs = []
    for epoch, ler in enumerate([0.9, 0.5, 0.6, 0.5, 0.7, 0.4, 0.6, 0.6, 0.6, 0.6]):
        if run.model.stop_training:
            break
        run.epoch(epoch, ler)
        lrs.append(round(float(run.model.optimizer.learning_rate.numpy()), 6))
    # flat for 2 epochs -> halved (after epochs 4 and 8); never below min_lr; a new best resets the count
    assert lrs == [0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.003, 0.003, 0.003][: len(lrs)]
    assert len(lrs) == 10 and run.state.stopped  # epochs 7-10 without a lower LER: patience 4
    assert run.state.best_epoch() == (6, 0.4) and run.state.epoch == 10
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["val_ler"] for line in lines][-1] == 0.6 and len(lines) == 10
    assert (tmp_path / "checkpoints" / "epoch-0010.npz").is_file()
    # the checkpoint's state holds the saved epoch's time: a resumed run rewrites that line of metrics.jsonl
    saved = checkpoint.latest(tmp_path).state
    assert saved.records[-1].epoch_seconds > 0 and saved.train_seconds >= saved.records[-1].epoch_seconds
    assert saved.records[-1].end_of_epoch_seconds is not None
    run.end()
    assert (tmp_path / "learning_curves.png").is_file()  # a run of seconds draws its curves once, at the end


def test_a_target_ler_stops_the_run_and_without_it_nothing_stops(tmp_path, no_plots):
    run = Run(tmp_path, TrainerOptions(stop_at_val_ler=0.0), OptimizerOptions())
    run.epoch(0, 0.1)
    assert not run.model.stop_training
    run.epoch(1, 0.0)
    assert run.model.stop_training and run.state.stopped
    (tmp_path / "other").mkdir()
    run = Run(tmp_path / "other", TrainerOptions(), OptimizerOptions())
    for epoch in range(8):
        run.epoch(epoch, 0.5)  # flat for 7 epochs: no patience set, so no stop
    assert not run.model.stop_training


def test_keep_best_holds_the_weights_of_the_best_epoch(tmp_path, no_plots):
    run = Run(tmp_path, TrainerOptions(keep_best=True), OptimizerOptions())
    run.epoch(0, 0.5)
    best = [w.copy() for w in run.model.get_weights()]
    run.model.set_weights([w + 1.0 for w in best])
    run.epoch(1, 0.7)  # worse: the copy stays the one of epoch 1
    assert all((a == b).all() for a, b in zip(run.state.best_weights, best, strict=True))
    later = [w + 2.0 for w in best]
    run.model.set_weights(later)
    run.epoch(2, 0.3)  # better: the copy is now the one of epoch 3
    run.model.set_weights([w + 3.0 for w in best])
    run.epoch(3, 0.4)
    assert all((a == b).all() for a, b in zip(run.state.best_weights, later, strict=True))


def test_with_a_moving_average_validation_and_the_best_epoch_use_the_averaged_weights(tmp_path, no_plots):
    run = Run(tmp_path, TrainerOptions(keep_best=True), OptimizerOptions(lr=0.1, ema_momentum=0.5))
    assert any(isinstance(c, keras.callbacks.SwapEMAWeights) for c in run.callbacks)  # around validation
    variables = run.model.trainable_variables
    optimizer = run.model.optimizer
    for _ in range(2):  # two steps: the average lies between the two weights
        optimizer.apply([keras.ops.ones_like(v) for v in variables], variables)
    own = run.model.get_weights()
    averages = [keras.ops.convert_to_numpy(a) for a in optimizer._model_variables_moving_average]
    run.epoch(0, 0.5)
    kept = dict(zip([id(v) for v in run.model.weights], run.state.best_weights, strict=True))
    for variable, average in zip(variables, averages, strict=True):
        np.testing.assert_array_equal(kept[id(variable)], average)
        assert not np.array_equal(kept[id(variable)], keras.ops.convert_to_numpy(variable))
    for a, b in zip(run.model.get_weights(), own, strict=True):  # training goes on from its own weights
        np.testing.assert_array_equal(a, b)
    assert not any(
        isinstance(c, keras.callbacks.SwapEMAWeights)
        for c in Run(tmp_path, TrainerOptions(), OptimizerOptions()).callbacks
    )


def test_a_nan_loss_stops_the_run_with_a_clear_error(tmp_path, no_plots):
    run = Run(tmp_path, TrainerOptions(), OptimizerOptions())
    run.epoch(0, 0.9)
    with pytest.raises(TrainingDiverged, match="epoch 2: the training loss is nan; lower optimizer.lr"):
        run.epoch(1, 0.9, loss=float("nan"))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_the_learning_curves_are_redrawn_on_a_cadence_and_at_the_end(tmp_path, monkeypatch):
    from asr.training import callbacks

    drawn = []
    monkeypatch.setattr(callbacks, "learning_curves", lambda records, path: drawn.append(len(records)))
    run = Run(tmp_path, TrainerOptions(), OptimizerOptions())
    # perf_counter at the start, at each epoch end and at each redraw
    clock = iter([0.0, 10.0, 31.0, 31.0, 40.0, 50.0])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock, 50.0))
    plot = next(c for c in run.callbacks if isinstance(c, callbacks.PlotCurves))
    plot.on_train_begin()
    for epoch in range(4):
        plot.state.records.append(EpochRecord(epoch=epoch + 1, loss=1.0, ler=0.5, wer=0.5))
        plot.on_epoch_end(epoch)
    plot.on_train_end()
    assert drawn == [2, 4]  # 30 s into training, then the last epoch at the end


def test_tensorboard_samples_are_decoded_on_a_cadence_and_after_the_last_epoch(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from asr.training import callbacks

    decoded = []

    def samples():
        decoded.append(len(state.records))
        return [{"ref": "one", "hyp": "one"}]

    state = RunState()
    recorder = callbacks.RecordEpoch(state, tmp_path, [0.0] * 4)
    board = callbacks.TensorBoardLog(recorder, tmp_path, samples, every_seconds=30.0)
    # perf_counter at the start, at each epoch end and at each write
    clock = iter([0.0, 10.0, 31.0, 31.0, 40.0, 50.0])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock, 50.0))
    board.on_train_begin()
    for epoch in range(4):
        state.records.append(EpochRecord(epoch + 1, 1.0, 0.5, 0.9, val_loss=1.0, val_ler=0.4, val_wer=0.9, lr=0.1))
        board.on_epoch_end(epoch)
    board.on_train_end()
    assert decoded == [2, 4]  # 30 s into training, then the last epoch at the end
    events = EventAccumulator(str(tmp_path / "tb" / "train"))
    events.Reload()
    assert [e.step for e in events.Tensors("ler")] == [1, 2, 3, 4]  # every epoch's scalars


def test_skipped_batches_are_named_and_too_many_in_a_row_stop_the_run(caplog):
    from asr.training.callbacks import SkippedBatches

    callback = SkippedBatches(lambda epoch, batch: [f"e{epoch}b{batch}.wav"], limit=2)
    callback.on_epoch_begin(0)
    for batch, skipped in enumerate([0.0, 1.0, 1.0, 2.0, 3.0]):  # the epoch's running count, as Keras logs it
        callback.on_train_batch_end(batch, {"skipped_batches": skipped})
    assert "epoch 1, batch 2 skipped" in caplog.text and "utterances: e0b1.wav" in caplog.text
    assert callback.in_a_row == 2  # batch 3 trained, batches 4 and 5 skipped
    with pytest.raises(TrainingDiverged, match="3 batches in a row had a non-finite loss or gradients"):
        callback.on_train_batch_end(5, {"skipped_batches": 4.0})


def test_a_signal_ends_training_after_the_batch_with_the_way_to_resume(tmp_path):
    import os
    import signal

    from asr.training.callbacks import Interrupted, StopOnSignal, StopSignals

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-0003.npz").write_bytes(b"")  # the newest on disk (a cadence skipped 4)
    signals = StopSignals()
    callback = StopOnSignal(tmp_path, signals)
    callback.on_epoch_begin(4)
    with signals.catching():
        callback.on_train_batch_end(0)  # nothing caught: goes on
        os.kill(os.getpid(), signal.SIGTERM)  # noted by the handler, the process lives on
        with pytest.raises(
            Interrupted,
            match="SIGTERM: training stopped in epoch 5 after batch 2; the checkpoint "
            "of epoch 3 in .* is kept. Run the same command again to resume",
        ) as stopped:
            callback.on_train_batch_end(1)
    assert stopped.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler before is back


def test_checkpoints_follow_their_cadence_and_the_last_epoch_always_gets_one(tmp_path, monkeypatch, no_plots):
    from asr.training import callbacks

    saved = []
    monkeypatch.setattr(
        callbacks.checkpoint, "save", lambda run_dir, model, state, keep: saved.append((state.epoch, keep))
    )
    run = Run(
        tmp_path, TrainerOptions(epochs=7, checkpoint_every_epochs=3, checkpoint_every_seconds=0), OptimizerOptions()
    )
    for epoch in range(7):
        run.epoch(epoch, 0.5)
    assert saved == [(3, 0), (6, 0), (7, 0)]
    saved.clear()
    run = Run(tmp_path / "b", TrainerOptions(epochs=7, checkpoint_every_seconds=3600), OptimizerOptions())
    for epoch in range(7):
        run.epoch(epoch, 0.5)
    assert saved == [(7, 0)]  # within the hour only the last epoch is saved
    saved.clear()
    trainer = TrainerOptions(epochs=7, checkpoint_every_seconds=3600, average_last=3)
    run = Run(tmp_path / "c", trainer, OptimizerOptions())
    for epoch in range(7):
        run.epoch(epoch, 0.5)
    # trainer.average_last: every epoch saved (an early stop may end the run at any), the last 3 kept
    assert saved == [(epoch, 3) for epoch in range(1, 8)]


def test_epoch_seconds_run_from_the_end_of_the_previous_epoch_and_add_up_to_train_seconds(tmp_path, monkeypatch):
    from asr.training import callbacks

    # fit starts; epoch 1's validation ends, its callbacks end; epoch 2's validation ends, its callbacks end
    clock = iter([100.0, 103.25, 103.5, 109.0, 110.0])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(callbacks, "learning_curves", lambda records, path: None)
    monkeypatch.setattr(callbacks.checkpoint, "save", lambda run_dir, model, state, keep: None)
    state = RunState()
    record = callbacks.RecordEpoch(state, tmp_path, [0.1] * 2)
    write = callbacks.WriteMetrics(state, tmp_path, record)
    for callback in (record, write):
        callback.set_model(_tiny_model())
    write.on_train_begin()
    for epoch in range(2):
        record.on_epoch_end(epoch, {"loss": 1.0, "ler": 0.5, "wer": 0.5})
        write.on_epoch_end(epoch)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch_seconds"] for line in lines] == [3.5, 6.5] and state.train_seconds == 10.0
    assert [line["end_of_epoch_seconds"] for line in lines] == [0.25, 1.0]  # the callbacks' share of each epoch
