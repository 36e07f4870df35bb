import pytest

from asr.training.loop import set_determinism


def test_determinism_can_be_traded_for_speed_within_one_process():
    from asr import compat

    set_determinism(0, True)
    assert compat.op_determinism_enabled()
    set_determinism(0, False)  # the next job of a multirun, with trainer.deterministic=false
    assert not compat.op_determinism_enabled()
    set_determinism(0, True)
    assert compat.op_determinism_enabled()


def _fitted_by_hand(tmp_path, monkeypatch, overrides: list[str], lers: list[float]) -> tuple:
    """A run of experiment=ldc93s1 (with `overrides`) set up and fitted by a stand-in for Keras's fit: each epoch
    adds 1 to every float weight and reports the next of `lers` as its training and validation LER to the
    callbacks. Returns the run and each epoch's weights."""
    from asr.config import compose
    from asr.training.loop import fit, setup_run

    run = setup_run(compose(["experiment=ldc93s1", "trainer.verbose=0", *overrides]), tmp_path)
    model, trained = run.model, []

    def epochs_of_training(*args, callbacks, initial_epoch, epochs, **kwargs):
        model.build_variables()
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
        for epoch, ler in zip(range(initial_epoch, epochs), lers, strict=True):
            model.set_weights([w + 1.0 if w.dtype.kind == "f" else w for w in model.get_weights()])
            trained.append(model.get_weights())
            logs = {"loss": 1.0, "ler": ler, "wer": 0.5, "val_loss": 1.0, "val_ler": ler, "val_wer": 0.5}
            for callback in callbacks:
                callback.on_epoch_begin(epoch)
            for callback in callbacks:
                callback.on_epoch_end(epoch, logs)
        for callback in callbacks:
            callback.on_train_end()

    monkeypatch.setattr(model, "fit", epochs_of_training)
    fit(run)
    return run, trained


@pytest.mark.slow
def test_fit_leaves_the_best_epochs_weights_in_the_model_when_a_later_epoch_is_worse(tmp_path, monkeypatch):
    import numpy as np

    run, trained = _fitted_by_hand(
        tmp_path, monkeypatch, ["trainer.epochs=3", "trainer.keep_best=true"], [0.5, 0.2, 0.4]
    )
    model = run.model
    assert run.state.best_epoch() == (2, 0.2)
    for now, best in zip(model.get_weights(), trained[1], strict=True):  # epoch 2's, not epoch 3's
        np.testing.assert_array_equal(now, best)


@pytest.mark.slow
def test_average_last_keeps_the_mean_of_the_last_epochs_only_where_it_validates_better(tmp_path, monkeypatch):
    import numpy as np

    from asr.training import loop
    from asr.training.loop import average_checkpoints

    run, trained = _fitted_by_hand(tmp_path, monkeypatch, ["trainer.epochs=3", "trainer.average_last=2"], [0.5] * 3)
    model = run.model
    lers = iter([0.4, 0.3])  # the held (last) weights, then the average
    monkeypatch.setattr(loop, "evaluate", lambda *args: {"ler": next(lers)})
    found = average_checkpoints(run)
    assert found == {"epochs": [2, 3], "val_ler": 0.3, "held_val_ler": 0.4, "kept": "averaged"}
    for now, two, three in zip(model.get_weights(), trained[1], trained[2], strict=True):
        if now.dtype.kind == "f":
            np.testing.assert_allclose(now, (two + three) / 2, rtol=1e-6)

    lers = iter([0.3, 0.35])  # the average validates worse: the held weights stay
    held = model.get_weights()
    assert average_checkpoints(run)["kept"] == "held"
    for now, before in zip(model.get_weights(), held, strict=True):
        np.testing.assert_array_equal(now, before)
