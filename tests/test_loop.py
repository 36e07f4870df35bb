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


@pytest.mark.slow
def test_fit_leaves_the_best_epochs_weights_in_the_model_when_a_later_epoch_is_worse(tmp_path, monkeypatch):
    import numpy as np

    from asr.config import compose
    from asr.training.loop import fit, setup_run

    options = compose(["experiment=ldc93s1", "trainer.epochs=3", "trainer.keep_best=true", "trainer.verbose=0"])
    run = setup_run(options, tmp_path)
    model, trained = run.model, []

    def epochs_of_training(*args, callbacks, initial_epoch, epochs, **kwargs):  # what Keras's fit calls
        model.build_variables()
        for callback in callbacks:
            callback.set_model(model)
            callback.on_train_begin()
        for epoch, ler in zip(range(initial_epoch, epochs), [0.5, 0.2, 0.4], strict=True):
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
    assert run.state.best_epoch() == (2, 0.2)
    for now, best in zip(model.get_weights(), trained[1], strict=True):  # epoch 2's, not epoch 3's
        np.testing.assert_array_equal(now, best)
