"""Each private TensorFlow/Hydra internal in asr.compat still exists and does what the project relies on."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra.core.utils import JobReturn, JobStatus

from asr import compat
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions


def _train_step() -> None:
    """One traced training step of a fresh tiny model."""
    model = CTCModel(4, "ab ", ModelOptions(num_layers=1, units=4))
    model.compile(optimizer=keras.optimizers.Adam())
    features = {"features": np.zeros((2, 6, 4), np.float32), "lengths": np.array([6, 4], np.int32)}
    model.train_on_batch(features, np.array([[0, 1], [1, -1]], np.int32))


def test_a_traced_custom_gradient_is_registered_and_forgetting_drops_it():
    @tf.custom_gradient
    def double(x):
        return 2 * x, lambda dy: 2 * dy

    known = compat.custom_gradient_names()
    tf.function(double).get_concrete_function(tf.TensorSpec([2]))
    new = compat.custom_gradient_names() - known
    assert len(new) == 1, "tf.custom_gradient no longer registers its gradient where asr.compat looks"
    assert compat.forget_custom_gradients(known) == 1
    assert compat.custom_gradient_names() == known


@pytest.mark.slow  # traces a whole CTC training step (about 5 s)
def test_a_traced_training_step_registers_custom_gradients_and_forgetting_drops_them():
    known = compat.custom_gradient_names()
    _train_step()
    new = compat.custom_gradient_names() - known
    assert new, "a training step no longer registers custom gradients: the clean-up in train() may be dropped"
    assert compat.forget_custom_gradients(known) == len(new)
    assert compat.custom_gradient_names() == known


@pytest.mark.slow
def test_two_training_jobs_in_one_process_leave_no_custom_gradients_behind(tmp_path):
    from asr.config import compose
    from asr.training.loop import train

    options = compose(["trainer.epochs=1", "model.num_layers=1", "model.units=8", "augment=none", "trainer.verbose=0"])
    before = compat.custom_gradient_names()
    for job in range(2):
        train(options, tmp_path / str(job))
        assert compat.custom_gradient_names() == before


def test_op_determinism_can_be_read_and_switched_off():
    was = compat.op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    assert compat.op_determinism_enabled()
    compat.disable_op_determinism()
    assert not compat.op_determinism_enabled()
    if was:
        tf.config.experimental.enable_op_determinism()


def test_a_failed_hydra_job_keeps_its_exception():
    error = ValueError("model.units must be >= 1")
    job = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert compat.job_exception(job) is error
    with pytest.raises(RuntimeError, match="no longer holds the job's exception"):
        compat.job_exception(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))


def test_the_keras_hook_that_build_from_shapes_overrides_still_exists():
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    hook = compat.keras_symbolic_build_hook()  # RuntimeError naming keras#20585 when an upgrade drops it
    assert hook is TensorFlowTrainer.__dict__["_maybe_symbolic_build"]
    assert list(inspect.signature(hook).parameters) == ["self", "iterator", "data_batch"]
    assert CTCModel._maybe_symbolic_build is compat.BuildFromShapes._maybe_symbolic_build  # the override wins


def test_build_from_shapes_creates_model_and_optimizer_variables_without_data():
    model = CTCModel(4, "ab ", ModelOptions(num_layers=1, units=4))
    model.compile(optimizer=keras.optimizers.Adam())
    model._maybe_symbolic_build(iterator=None)
    assert model.built and model.optimizer.built and len(model.optimizer.variables) > 2


def test_the_strategy_merge_call_query_answers_outside_and_inside_a_mirrored_strategy():
    import tensorflow as tf

    from asr.compat import strategy_supports_no_merge_call

    assert strategy_supports_no_merge_call() is True  # no strategy: plain replica context
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        assert isinstance(strategy_supports_no_merge_call(), bool)  # the tf.__internal__ path train_step takes
