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
