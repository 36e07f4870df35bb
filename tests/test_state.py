import numpy as np

from asr.training.state import EpochRecord, RunState, best_epoch, epochs_without_improvement


def _record(epoch: int, ler: float, loss: float, val_ler: float | None = None, val_loss: float | None = None):
    return EpochRecord(epoch=epoch, loss=loss, ler=ler, wer=0.5, val_loss=val_loss, val_ler=val_ler)


def test_best_epoch_breaks_ler_ties_by_loss_and_patience_counts_from_the_lowest_ler():
    records = [_record(1, 0.2, 3.0, 0.1, 2.0), _record(2, 0.1, 2.0, 0.1, 1.5), _record(3, 0.1, 1.0, 0.2, 1.0)]
    assert best_epoch(records) == (2, 0.1)
    assert epochs_without_improvement(records) == 2
    assert best_epoch([_record(1, 0.3, 1.0)]) == (1, 0.3)  # no validation split: the training LER


def test_an_epoch_record_is_a_metrics_line_without_the_figures_not_measured():
    record = _record(2, 0.1, 2.0)
    record.epoch_seconds = 1.5
    line = record.to_json()
    assert list(line) == ["epoch", "loss", "ler", "wer", "skipped_batches", "lr", "padding_share", "epoch_seconds"]
    assert EpochRecord.from_json({**line, "from_a_later_version": 1}) == record


def test_state_round_trips_through_json_without_the_weights():
    settings = {"seed": 0, "model": {"units": 8}}
    state = RunState("abc", settings, 3, [_record(1, 0.2, 3.0)], True, 1, 2.5, [np.ones(2)])
    data = state.to_json()
    assert data == {
        "config_sha256": "abc",
        "settings": settings,
        "epoch": 3,
        "records": [
            {"epoch": 1, "loss": 3.0, "ler": 0.2, "wer": 0.5, "skipped_batches": 0.0, "lr": 0.0, "padding_share": 0.0}
        ],
        "stopped": True,
        "plateau_wait": 1,
        "train_seconds": 2.5,
    }
    again = RunState.from_json({**data, "from_a_later_version": 1}, [np.zeros(2)])
    assert again.to_json() == data and again.best_weights[0].tolist() == [0.0, 0.0]
    old = RunState.from_json({k: v for k, v in data.items() if k != "settings"})  # a checkpoint before settings
    assert old.settings is None and old.records == state.records
