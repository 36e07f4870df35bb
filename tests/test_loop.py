from asr.training.loop import set_determinism


def test_determinism_can_be_traded_for_speed_within_one_process():
    from asr import compat

    set_determinism(0, True)
    assert compat.op_determinism_enabled()
    set_determinism(0, False)  # the next job of a multirun, with trainer.deterministic=false
    assert not compat.op_determinism_enabled()
    set_determinism(0, True)
    assert compat.op_determinism_enabled()
