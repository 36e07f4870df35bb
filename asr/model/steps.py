"""The mechanics of a training and a validation step, apart from any architecture: replicas, loss scaling, the
finite check, gradient clipping, held (frozen) variables, metrics summed over replicas.

A subclass (asr.model.ctc.CTCModel) defines the layers, the forward pass and these hooks:
`training_loss(inputs, labels) -> (objective, loss, outputs)`, `validation_loss(inputs, labels) -> (loss, outputs)`,
`augmented(inputs)` (training-time input augmentation), `update_error_rates(labels, outputs, inputs)`,
`error_metrics` and `frozen_variables()`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from asr import compat
from asr.compat import step_outputs


class StepModel(keras.Model):
    """A keras.Model whose train/test steps minimize the subclass's loss under any tf.distribute strategy.

    Under a strategy each replica gets a piece of the global batch (pieces may differ in size): the loss is the
    mean over the global batch, gradients are all-reduced before the finite check and the clipping, so every
    replica skips or applies alike, and the step reports metrics summed over replicas.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.skipped = keras.metrics.Sum(name="skipped_batches")  # training batches with a non-finite loss or gradient
        self.clipnorm: float | None = None  # set by compile
        self.trainable_share: tf.Variable | None = None  # scales the held variables' gradients (0.0: held fixed)

    # -- hooks of the architecture ------------------------------------------------------------------------------

    @property
    def error_metrics(self) -> list[keras.metrics.Metric]:
        """The metrics update_error_rates feeds (between the loss and the skipped-batch count in `metrics`)."""
        return []

    def augmented(self, inputs: dict) -> dict:
        """The inputs of a training batch after augmentation (none here)."""
        return inputs

    def training_loss(self, inputs: dict, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(objective to minimize, the loss reported, the outputs) of a training batch."""
        raise NotImplementedError

    def validation_loss(self, inputs: dict, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(loss, outputs) of a validation batch."""
        raise NotImplementedError

    def update_error_rates(self, labels: tf.Tensor, outputs: tf.Tensor, inputs: dict) -> None:
        """Add a batch to error_metrics (nothing here)."""

    def frozen_variables(self) -> list:
        """The variables whose gradients trainable_share scales (none here)."""
        return []

    # -- the mechanics ------------------------------------------------------------------------------------------

    def compile(self, optimizer, clipnorm: float | None = None, **kwargs) -> None:
        """Keras compile; `clipnorm` clips each gradient tensor's norm after the all-reduce over replicas (the
        optimizer's own clipnorm would clip each replica's partial gradient)."""
        if getattr(optimizer, "clipnorm", None):
            raise ValueError("pass clipnorm to the model's compile, not to the optimizer (it would clip per replica)")
        self.clipnorm = clipnorm
        super().compile(optimizer=optimizer, **kwargs)

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        # Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer: the loss is scaled before the
        # gradients (float16 activations would underflow), and the optimizer unscales them, skips a step whose
        # scaled gradients overflow and lowers its scale.
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            objective, loss, outputs = self.training_loss(self.augmented(x), labels)
            target = self.optimizer.scale_loss(objective) if scaled else objective
        gradients = tape.gradient(target, self.trainable_variables)
        held = {id(v) for v in self.frozen_variables()}
        if held:
            share = self.trainable_share
            gradients = [
                g * tf.cast(share, g.dtype) if id(v) in held else g
                for g, v in zip(gradients, self.trainable_variables, strict=True)
            ]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        total = objective
        if replicas > 1:  # the global batch's loss and gradients, on every replica
            total, *gradients = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, [objective, *gradients]
            )
        # A batch whose loss or gradients are not finite is skipped (counted, never applied): NaN or inf never
        # reaches the weights or the optimizer's moments. Decided on all-reduced values: the same everywhere.
        finite = tf.reduce_all([tf.math.is_finite(total)] + [tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        if self.clipnorm:  # the norm of the unscaled gradient
            limit = self.clipnorm * self.optimizer.dynamic_scale if scaled else self.clipnorm
            gradients = [tf.clip_by_norm(g, limit) for g in gradients]
        if replicas == 1 and not scaled:
            tf.cond(finite, lambda: self._learn(gradients, loss, labels, outputs, x), tf.no_op)
        else:
            # the optimizer all-reduces what it is given again: each replica passes its share of the sum
            shares = [g / replicas for g in gradients]
            if scaled:  # the LossScaleOptimizer decides on finite gradients itself (and must see the others)
                self.optimizer.apply(shares, self.trainable_variables)
            else:
                self._apply_on_every_replica(shares, finite)
            tf.cond(finite, lambda: self._update_metrics(loss, labels, outputs, x), tf.no_op)
        self.skipped.update_state((1.0 - tf.cast(finite, tf.float32)) / replicas)
        return self.step_results(self.metrics)

    def test_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, outputs = self.validation_loss(x, labels)
        self._update_metrics(loss, labels, outputs, x)
        return self.step_results([m for m in self.metrics if m is not self.skipped])

    def global_mean(self, per_example: tf.Tensor) -> tf.Tensor:
        """This replica's share of the mean over the global batch (summed over replicas it is the mean)."""
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync == 1:
            return tf.nn.compute_average_loss(per_example)
        # float: the collective all-reduce of multi-worker strategies has no place for an int32 (host) tensor
        size = tf.cast(tf.size(per_example), per_example.dtype)
        size = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, size)
        return tf.nn.compute_average_loss(per_example, global_batch_size=tf.cast(size, tf.int64))

    def _apply_on_every_replica(self, gradients: list, finite: tf.Tensor) -> None:
        """Apply `gradients` on all replicas or none: the optimizer synchronizes replicas, which a strategy
        allows inside a condition only in cross-replica context (or where it needs no merge_call)."""

        def apply(gradients: list) -> tf.Operation:
            self.optimizer.apply(gradients, self.trainable_variables)
            return tf.no_op()

        if compat.strategy_supports_no_merge_call():
            tf.cond(finite, lambda: apply(gradients), tf.no_op)
            return

        def cross_replica(strategy, gradients, finite):
            first = strategy.experimental_local_results(finite)[0]  # the same on every replica

            def everywhere() -> tf.Operation:
                strategy.extended.call_for_each_replica(apply, args=(gradients,))
                return tf.no_op()

            tf.cond(first, everywhere, tf.no_op)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(gradients, finite))

    def _learn(self, gradients: list, loss, labels, outputs, inputs) -> tf.Operation:
        """The finite branch of train_step: apply the gradients, add the batch to the metrics."""
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._update_metrics(loss, labels, outputs, inputs)

    def _update_metrics(self, loss, labels, outputs, inputs) -> tf.Operation:
        """Add a batch's loss and error rates to the epoch's metrics."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(loss * replicas)  # summed over replicas and divided by their count: the mean
        self.update_error_rates(labels, outputs, inputs)
        return tf.no_op()

    def step_results(self, metrics: list) -> dict:
        """The metrics' values so far, over every replica (each replica's variables hold its own part)."""
        strategy = tf.distribute.get_strategy()
        if strategy.num_replicas_in_sync == 1:
            return {m.name: m.result() for m in metrics}
        # tf.identity: a variable's value has no device of its own, which the collective all-reduce needs
        states = [[tf.identity(v.value) for v in m.variables] for m in metrics]
        summed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, states)
        results = {}
        for metric, values in zip(metrics, summed, strict=True):
            # Mean and ErrorRate: (total, count) and (errors, length); Sum: (value,)
            results[metric.name] = values[0] if len(values) == 1 else tf.math.divide_no_nan(values[0], values[1])
        return step_outputs(results, strategy)

    @property
    def metrics(self) -> list:
        return [self.loss_tracker, *self.error_metrics, self.skipped]
