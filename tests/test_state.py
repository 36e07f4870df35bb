import numpy as np

from asr.training.state import RunState, best_epoch, epochs_without_improvement


def test_best_epoch_breaks_ler_ties_by_loss_and_patience_counts_from_the_lowest_ler():
    records = [
        {"epoch": 1, "ler": 0.2, "loss": 3.0, "val_ler": 0.1, "val_loss": 2.0},
        {"epoch": 2, "ler": 0.1, "loss": 2.0, "val_ler": 0.1, "val_loss": 1.5},
        {"epoch": 3, "ler": 0.1, "loss": 1.0, "val_ler": 0.2, "val_loss": 1.0},
    ]
    assert best_epoch(records) == (2, 0.1)
    assert epochs_without_improvement(records) == 2
    assert best_epoch([{"epoch": 1, "ler": 0.3, "loss": 1.0}]) == (1, 0.3)  # no validation split


def test_state_round_trips_through_json_without_the_weights():
    state = RunState("abc", 3, [{"epoch": 1}], True, 1, 2.5, [np.ones(2)])
    data = state.to_json()
    assert data == {
        "config_sha256": "abc",
        "epoch": 3,
        "records": [{"epoch": 1}],
        "stopped": True,
        "plateau_wait": 1,
        "train_seconds": 2.5,
    }
    again = RunState.from_json({**data, "from_a_later_version": 1}, [np.zeros(2)])
    assert again.to_json() == data and again.best_weights[0].tolist() == [0.0, 0.0]
