from dataclasses import replace

from asr.config import compose
from asr.training.loop import config_sha256, hashed_settings, set_determinism


def test_settings_that_do_not_change_the_numbers_do_not_block_a_resume():
    a = compose([])
    b = replace(
        a,
        trainer=replace(a.trainer, resume="never", verbose=0, threads=1, samples=3),
        data=replace(a.data, workers=4, cache=False, storage="memory"),
        lm=replace(a.lm, order=6, alphas=(0.1,)),  # the language model comes after training
    )
    assert config_sha256(a) == config_sha256(b)
    assert config_sha256(a) != config_sha256(replace(a, optimizer=replace(a.optimizer, lr=a.optimizer.lr * 2)))
    assert config_sha256(a) != config_sha256(replace(a, seed=1))


def test_determinism_can_be_traded_for_speed_within_one_process():
    from asr import compat

    set_determinism(0, True)
    assert compat.op_determinism_enabled()
    set_determinism(0, False)  # the next job of a multirun, with trainer.deterministic=false
    assert not compat.op_determinism_enabled()
    set_determinism(0, True)
    assert compat.op_determinism_enabled()


def test_runs_made_before_a_setting_was_added_still_resume():
    a = compose([])
    trimmed = replace(a, data=replace(a.data, trim_silence=True))
    assert "trim_silence" not in hashed_settings(a)["data"]  # at its default: as before the key existed
    assert hashed_settings(trimmed)["data"]["trim_silence"] is True
    assert config_sha256(trimmed) != config_sha256(a)
    averaged = replace(a, optimizer=replace(a.optimizer, ema_momentum=0.99))
    assert "ema_momentum" not in hashed_settings(a)["optimizer"]
    assert hashed_settings(averaged)["optimizer"]["ema_momentum"] == 0.99
    assert config_sha256(averaged) != config_sha256(a)
    for group, key in (("data", "train_weights"), ("trainer", "init_from"), ("trainer", "freeze_layers")):
        assert key not in hashed_settings(a)[group]
    weighted = replace(a, data=replace(a.data, train=("a.jsonl", "b.jsonl"), train_weights=(1.0, 2.0)))
    assert hashed_settings(weighted)["data"]["train_weights"] == [1.0, 2.0]
    assert config_sha256(weighted) != config_sha256(replace(weighted, data=replace(weighted.data, train_weights=())))
