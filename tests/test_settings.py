from dataclasses import replace

from asr.config import compose
from asr.training.settings import differences, legacy_sha256, run_settings, settings_sha256


def test_settings_that_do_not_change_the_numbers_do_not_block_a_resume():
    a = compose([])
    b = replace(
        a,
        trainer=replace(a.trainer, resume="never", verbose=0, threads=1, samples=3),
        data=replace(a.data, workers=4, cache=False, storage="memory"),
        lm=replace(a.lm, order=6, alphas=(0.1,)),  # the language model comes after training
    )
    assert run_settings(a) == run_settings(b) and differences(run_settings(a), run_settings(b)) == []
    faster = replace(a, optimizer=replace(a.optimizer, lr=a.optimizer.lr * 2))
    assert differences(run_settings(a), run_settings(faster)) == [
        f"optimizer.lr: {a.optimizer.lr} -> {a.optimizer.lr * 2}"
    ]
    assert differences(run_settings(a), run_settings(replace(a, seed=1))) == ["seed: 0 -> 1"]
    assert settings_sha256(run_settings(a)) != settings_sha256(run_settings(replace(a, seed=1)))


def test_a_setting_added_after_a_run_was_made_matches_at_its_default_only():
    a = compose([])
    saved = run_settings(a)
    del saved["model"]["lookahead"], saved["data"]["trim_silence"]  # a run made before the two existed
    assert differences(saved, run_settings(a)) == []
    trimmed = replace(a, data=replace(a.data, trim_silence=True))
    assert differences(saved, run_settings(trimmed)) == ["data.trim_silence: False -> True"]


def test_a_checkpoint_without_settings_is_matched_by_the_hash_it_holds():
    a = compose([])
    settings = run_settings(a)
    before = {group: dict(v) if isinstance(v, dict) else v for group, v in settings.items()}
    for group, key in (("data", "trim_silence"), ("optimizer", "ema_momentum"), ("model", "lookahead")):
        before[group].pop(key)  # what those checkpoints hashed: the settings they knew, or had at their defaults
    for group, key in (("data", "train_weights"), ("trainer", "init_from"), ("trainer", "freeze_layers")):
        before[group].pop(key)
    for key in ("freeze_epochs", "init_cmvn", "intermediate_ctc", "intermediate_ctc_layer"):
        before["trainer"].pop(key)
    assert legacy_sha256(settings) == settings_sha256(before)
    trimmed = run_settings(replace(a, data=replace(a.data, trim_silence=True)))
    assert legacy_sha256(trimmed) != legacy_sha256(settings)
