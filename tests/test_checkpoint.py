import json

import keras
import numpy as np
import pytest

from asr import files
from asr.data.options import AugmentOptions
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions
from asr.training import checkpoint
from asr.training.state import EpochRecord, RunState


def _model(seed: int = 0, units: int = 8) -> CTCModel:
    keras.utils.set_random_seed(seed)
    options = ModelOptions(num_layers=1, units=units, dropout=0.1)
    model = CTCModel(5, "ab ", options, AugmentOptions(time_masks=1, time_mask_width=2), seed=seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.build_for()
    model.optimizer.build(model.trainable_variables)
    return model


def _record(epoch: int) -> EpochRecord:
    return EpochRecord(epoch=epoch, loss=1.0, ler=0.5, wer=0.5)


def _values(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in variables]


def test_save_restore_round_trips_every_variable_and_keeps_the_newest_two(tmp_path):
    model = _model(seed=1)
    model.optimizer.iterations.assign(7)
    model.seed_generator.next()  # augmentation RNG state moves on during training
    best = [w + 1.0 for w in model.get_weights()]
    for epoch in (1, 2, 3):
        checkpoint.save(tmp_path, model, RunState("abc", None, epoch, [_record(epoch)], best_weights=best))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0002.npz", "epoch-0003.npz"]

    found = checkpoint.latest(tmp_path)
    assert (found.state.epoch, found.state.records, found.state.config_sha256) == (3, [_record(3)], "abc")
    fresh = _model(seed=2)
    assert not np.array_equal(_values(fresh.variables)[1], _values(model.variables)[1])
    checkpoint.restore(fresh, found)
    for a, b in zip(_values(fresh.variables), _values(model.variables), strict=True):
        np.testing.assert_array_equal(a, b)  # weights and random-generator states
    for a, b in zip(_values(fresh.optimizer.variables), _values(model.optimizer.variables), strict=True):
        np.testing.assert_array_equal(a, b)  # step count, moments, learning rate
    assert int(fresh.optimizer.iterations.numpy()) == 7
    np.testing.assert_array_equal(found.state.best_weights[0], best[0])


def test_a_damaged_or_half_written_checkpoint_is_never_trusted(tmp_path):
    model = _model()
    checkpoint.save(tmp_path, model, RunState(epoch=1))
    checkpoint.save(tmp_path, model, RunState(epoch=2))
    directory = tmp_path / "checkpoints"
    # a kill during a save leaves only a temporary file: not a checkpoint
    (directory / ".epoch-0003.npz.123.tmp").write_bytes(b"half")
    assert checkpoint.latest(tmp_path).state.epoch == 2
    # a damaged newest file (bad disk, manual edit): resume falls back to the one before it
    (directory / "epoch-0002.npz").write_bytes(b"not a checkpoint")
    assert checkpoint.latest(tmp_path).state.epoch == 1
    assert checkpoint.latest(tmp_path / "nothing") is None


def test_restore_refuses_a_checkpoint_of_another_model(tmp_path):
    checkpoint.save(tmp_path, _model(units=8), RunState(epoch=1))
    with pytest.raises(checkpoint.CheckpointError, match="different model.*trainer.resume=never"):
        checkpoint.restore(_model(units=16), checkpoint.latest(tmp_path))


def test_move_aside_keeps_everything(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("old\n")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch-0001.npz").write_bytes(b"x")
    (tmp_path / "train.log").write_text("log")
    moved = checkpoint.move_aside(tmp_path, ["metrics.jsonl", "checkpoints", "result.json"])
    assert moved.name.startswith("previous-")
    assert (moved / "metrics.jsonl").read_text() == "old\n"
    assert (moved / "checkpoints" / "epoch-0001.npz").read_bytes() == b"x"
    assert not (tmp_path / "metrics.jsonl").exists() and (tmp_path / "train.log").exists()
    (tmp_path / "metrics.jsonl").write_text("newer\n")
    again = checkpoint.move_aside(tmp_path, ["metrics.jsonl"])
    assert again != moved and (again / "metrics.jsonl").read_text() == "newer\n"
    assert checkpoint.move_aside(tmp_path, ["metrics.jsonl"]) is None


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "result.json"
    files.atomic_write_text(path, json.dumps({"a": 1}))

    def fail(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind


def test_a_full_disk_fails_clearly_and_leaves_the_earlier_checkpoints_readable(tmp_path, monkeypatch):
    import errno

    from asr.errors import user_message

    model = _model()
    for epoch in (1, 2):
        checkpoint.save(tmp_path, model, RunState("abc", None, epoch, [_record(e) for e in range(1, epoch + 1)]))

    def full(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.np, "savez", full)
    with pytest.raises(OSError) as failed:
        checkpoint.save(tmp_path, model, RunState("abc", None, 3, [_record(e) for e in (1, 2, 3)]))
    message = user_message(failed.value)
    assert message.startswith(
        f"cannot write {tmp_path / 'checkpoints' / 'epoch-0003.npz'}: no space left on the device"
    )
    assert "files written before are intact" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch-0001.npz", "epoch-0002.npz"]
    assert checkpoint.latest(tmp_path).state.epoch == 2  # the resume point is still there and readable


def test_a_checkpoint_holding_pickled_objects_is_never_unpickled(tmp_path):
    model = _model()
    path = checkpoint.save(tmp_path, model, RunState("abc", None, 1, [_record(1)]))
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["model_0"] = np.array([{"payload": "would run code when unpickled"}], dtype=object)
    np.savez(path, **arrays)  # needs pickle to load
    assert checkpoint.latest(tmp_path) is None  # refused as unreadable, not loaded


def test_the_moving_averages_of_the_weights_are_saved_and_restored(tmp_path):
    models = []
    for seed in (1, 2):
        model = _model(seed=seed)
        model.compile(optimizer=keras.optimizers.Adam(0.01, use_ema=True, ema_momentum=0.9))
        model.optimizer.build(model.trainable_variables)
        models.append(model)
    model, fresh = models
    model.optimizer.apply([keras.ops.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    averages = _values(model.optimizer._model_variables_moving_average)
    checkpoint.save(tmp_path, model, RunState(epoch=1))
    checkpoint.restore(fresh, checkpoint.latest(tmp_path))
    for a, b in zip(_values(fresh.optimizer._model_variables_moving_average), averages, strict=True):
        np.testing.assert_array_equal(a, b)


def test_averaged_weights_are_the_mean_of_the_named_epochs_and_keep_is_honoured(tmp_path):
    model = _model(seed=3)
    base = model.get_weights()
    for epoch in (1, 2, 3, 4):
        model.set_weights([w + epoch if w.dtype.kind == "f" else w for w in base])
        model.seed_generator.next()
        checkpoint.save(tmp_path, model, RunState(epoch=epoch), keep=3)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-0002.npz",
        "epoch-0003.npz",
        "epoch-0004.npz",
    ]
    averaged = checkpoint.averaged_weights(tmp_path, [2, 3, 4])
    floats = [i for i, v in enumerate(model.variables) if "float" in str(v.dtype)]
    first = floats[0]
    np.testing.assert_allclose(averaged[first], _values(model.variables)[first] - 1.0, rtol=1e-6)  # (2+3+4)/3 = 4-1
    others = [i for i in range(len(averaged)) if i not in floats]
    assert others, "the model has a random-generator state"
    for i in others:  # not averaged: the last epoch's
        np.testing.assert_array_equal(averaged[i], _values(model.variables)[i])
    with pytest.raises(checkpoint.CheckpointError, match=r"no checkpoint of epoch\(s\) \[1\].*average_last"):
        checkpoint.averaged_weights(tmp_path, [1, 2])
