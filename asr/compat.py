"""Private TensorFlow and Hydra internals the project relies on, in one place.

Each has a test in tests/test_compat.py that fails loudly when an upgrade moves it; nothing here falls
back silently. TensorFlow is imported only when a function needs it.
"""

from __future__ import annotations

from typing import Any

CUSTOM_GRADIENT_PREFIX = "CustomGradient-"


def op_determinism_enabled() -> bool:
    """Whether TensorFlow's op determinism is on (TF exports the switch-on, not the query)."""
    from tensorflow.python.framework import config as tf_config

    return tf_config.is_op_determinism_enabled()


def disable_op_determinism() -> None:
    """Turn op determinism off again (TF exports only enable_op_determinism)."""
    from tensorflow.python.framework import config as tf_config

    tf_config.disable_op_determinism()


def _gradient_registry() -> dict:
    """TensorFlow's process-global table of gradient functions, by name."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    if not isinstance(registry, dict):
        raise RuntimeError(
            "tensorflow.python.framework.ops._gradient_registry._registry is gone in this TensorFlow; "
            "asr.compat.forget_custom_gradients must be adapted, or every training job leaks its graphs"
        )
    return registry


def custom_gradient_names() -> set[str]:
    """Names of the gradient functions that tf.custom_gradient registered so far."""
    return {name for name in _gradient_registry() if name.startswith(CUSTOM_GRADIENT_PREFIX)}


def forget_custom_gradients(known: set[str]) -> int:
    """Drop the custom gradients registered since `known` was taken; returns how many.

    Every trace of tf.nn.ctc_loss registers a "CustomGradient-<n>" entry in a process-global registry, and
    that entry holds the traced step's whole graph forever (tensorflow/tensorflow#27492, #97697), so a
    multirun of N jobs in one process grew by ~50 MB per job even after keras.backend.clear_session().
    Once a job's model is gone, nothing can use its entries.
    """
    registry = _gradient_registry()
    new = [name for name in registry if name.startswith(CUSTOM_GRADIENT_PREFIX) and name not in known]
    for name in new:
        del registry[name]
    return len(new)


def job_exception(job_return: Any) -> BaseException:
    """The exception of a failed Hydra job (JobReturn keeps it in `_return_value`; the public `return_value`
    re-raises it and writes to stderr)."""
    error = job_return._return_value
    if not isinstance(error, BaseException):
        raise RuntimeError(f"hydra's JobReturn._return_value no longer holds the job's exception: {error!r}")
    return error


# keras-team/keras#20585 (open; unchanged in keras 3.15.1): Keras's fit under a tf.distribute strategy builds the
# model from its first batch, all-reducing that batch across replicas (`TensorFlowTrainer._maybe_symbolic_build`):
# that fails for MultiWorkerMirroredStrategy, and for replicas whose batches pad to different lengths. The
# model below builds from its layer shapes instead. The second failing spot, `reduce_per_replica`'s
# reduce over axis 0 of scalar step outputs under multi-worker, is met by `step_outputs`.
KERAS_SYMBOLIC_BUILD = "_maybe_symbolic_build"


class BuildFromShapes:
    """Mixin for a keras.Model subclass with a `build_for()` that creates its weights from layer shapes:
    replaces Keras's build from the first (all-reduced) batch of a distributed fit."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None) -> None:  # overrides TensorFlowTrainer's
        self.build_variables()

    def build_variables(self) -> None:
        """Create the model's and (once compiled) the optimizer's variables under the model's strategy, from
        shapes alone (what fit, train_on_batch and a checkpoint restore need first)."""
        with self.distribute_strategy.scope():
            if not self.built:
                self.build_for()
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)


def keras_symbolic_build_hook() -> Any:
    """The Keras method BuildFromShapes overrides (RuntimeError when an upgrade removed or renamed it)."""
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    hook = TensorFlowTrainer.__dict__.get(KERAS_SYMBOLIC_BUILD)
    if hook is None:
        raise RuntimeError(
            f"keras.src.backend.tensorflow.trainer.TensorFlowTrainer.{KERAS_SYMBOLIC_BUILD} is gone in this Keras; "
            f"asr.compat.BuildFromShapes overrides nothing now: check keras-team/keras#20585 and adapt it"
        )
    return hook


def step_outputs(results: dict, strategy: Any) -> dict:
    """A train/test step's metric values as Keras can reduce them under `strategy`: rank-1 under
    MultiWorkerMirroredStrategy (its reduce over axis 0 fails on scalars, keras-team/keras#20585)."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in results.items()}
    return results


def frozen_function(function: Any) -> Any:
    """A concrete tf.function with its variables folded in as constants (TFLite's converter reads variables as
    resource reads that its interpreter cannot serve): TensorFlow's convert_variables_to_constants_v2."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(function)


def strategy_supports_no_merge_call() -> bool:
    """Whether the current tf.distribute strategy lets a replica apply gradients inside a condition without a
    merge_call (TensorFlow exports this only under tf.__internal__)."""
    import tensorflow as tf

    return bool(tf.__internal__.distribute.strategy_supports_no_merge_call())
