"""Stacked (Bi)LSTM with CTC loss: a keras.Model whose train/test steps compute CTC and error rates."""

from __future__ import annotations

from dataclasses import asdict, fields

import keras
import numpy as np
import tensorflow as tf

from asr.compat import BuildFromShapes, step_outputs
from asr.data.features import stacked_frames
from asr.data.options import MASK_FIELDS, AugmentOptions
from asr.model.decoding import greedy_sparse, text_table
from asr.model.metrics import ErrorRate, words_sparse
from asr.model.options import ModelOptions

MODEL_FIELDS = tuple(f.name for f in fields(ModelOptions))


def labels_to_sparse(labels: tf.Tensor) -> tf.SparseTensor:
    """Dense labels [B, L] padded with -1 -> int32 SparseTensor [B, (L)]."""
    indices = tf.where(labels >= 0)
    return tf.SparseTensor(indices, tf.gather_nd(labels, indices), tf.shape(labels, out_type=tf.int64))


def sequence_mask(lengths: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
    """True for real frames, False for padding: [B, T] from lengths [B] and features [B, T, F]."""
    return tf.sequence_mask(lengths, maxlen=tf.shape(features)[1])


@keras.saving.register_keras_serializable(package="asr")
class CTCModel(BuildFromShapes, keras.Model):
    """Features [B, T, F] + lengths [B] -> logits [B, T', len(characters) + 1]; the blank is the last class.

    T' = ceil(T / stride): with stride > 1 consecutive frames are stacked (or, with a convolutional front-end, its
    first layer moves by `stride` frames), so the LSTMs run fewer steps.

    Batches come as ({"features": zero-padded [B, T, F], "lengths": [B]}, labels [B, L] padded with -1);
    the mask and the sparse labels are built inside the step.

    Under a tf.distribute strategy each replica gets a piece of the global batch (pieces may differ in size):
    the loss is the mean over the global batch, gradients are all-reduced before the finite check and the
    clipping, so every replica skips or applies alike, and the step reports metrics summed over replicas.
    """

    def __init__(
        self,
        num_features: int,
        characters: str,
        options: ModelOptions | None = None,
        augment: AugmentOptions | None = None,
        seed: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_features = num_features
        self.characters = characters
        self.options = options = options or ModelOptions()
        self.augment = augment or AugmentOptions()
        self.stride = options.stride
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)  # SpecAugment's draws
        self.blank_index = len(characters)
        self.convs = [
            keras.layers.Conv1D(
                options.conv_channels,
                options.conv_kernel,
                strides=options.stride if i == 0 else 1,
                activation="relu",
                name=f"conv_{i}",
            )
            for i in range(options.conv_layers)
        ]
        self.rnns = []
        for i in range(options.num_layers):
            lstm = keras.layers.LSTM(options.units, return_sequences=True, name=f"lstm_{i}")
            self.rnns.append(keras.layers.Bidirectional(lstm, name=f"bilstm_{i}") if options.bidirectional else lstm)
        self.dropouts = [keras.layers.Dropout(options.dropout, name=f"dropout_{i}") for i in range(options.num_layers)]
        # [B, T', units] -> [B, T', units]: step t weighs the top outputs of steps t .. t + lookahead, unit by unit;
        # it starts as the identity (weight 1 on step t, 0 on the others: the model without look-ahead), since random
        # weights mixing the steps measured to stall the first epochs of training (docs/deployment.md)
        self.lookahead = None
        if options.lookahead:
            start = np.zeros((options.lookahead + 1, 1, 1), np.float32)
            start[0] = 1.0
            self.lookahead = keras.layers.DepthwiseConv1D(
                options.lookahead + 1,
                use_bias=False,
                depthwise_initializer=keras.initializers.Constant(start),
                name="lookahead",
            )
        init = (
            keras.initializers.TruncatedNormal(stddev=options.logits_init_stddev)
            if options.logits_init_stddev
            else "glorot_uniform"
        )
        # float32 logits whatever the dtype policy: the CTC loss (a log-sum-exp over long paths) stays float32
        self.logits = keras.layers.Dense(len(characters) + 1, kernel_initializer=init, dtype="float32", name="logits")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ler = ErrorRate(name="ler")
        self.wer = ErrorRate(name="wer")
        self.skipped = keras.metrics.Sum(name="skipped_batches")  # training batches with a non-finite loss or gradient
        self._words_table = text_table(characters)
        self.clipnorm: float | None = None  # set by compile
        self.frozen_layers = 0  # set by freeze_lowest
        self.trainable_share: tf.Variable | None = None  # 0.0 while the frozen layers are held, 1.0 after
        self.intermediate_weight = 0.0  # set by intermediate_ctc
        self.intermediate_layer = 0

    def intermediate_ctc(self, weight: float, layer: int | None = None) -> None:
        """Train with an auxiliary CTC loss on the output of LSTM layer `layer` (1-based; None: the middle one,
        (num_layers + 1) // 2) through the same output layer: loss = (1 - weight) CTC(top) + weight CTC(layer)
        (intermediate CTC, Lee & Watanabe 2021). Inference and validation use the top layer alone."""
        if not 0.0 <= weight < 1.0:
            raise ValueError(f"trainer.intermediate_ctc must be in [0, 1), got {weight}")
        layers = len(self.rnns)
        layer = (layers + 1) // 2 if layer is None else layer
        if weight and not 1 <= layer < layers:
            raise ValueError(
                f"trainer.intermediate_ctc_layer must name a layer below the top one (1 to {layers - 1}), got {layer}"
            )
        self.intermediate_weight = float(weight)
        self.intermediate_layer = layer if weight else 0

    def freeze_lowest(self, layers: int) -> None:
        """Hold the lowest `layers` LSTM layers (and a convolutional front-end below them) fixed while
        `trainable_share` is 0: their gradients are zeroed before the optimizer sees them (Adam then leaves them,
        and its moments, as they are). Call before the first training step, under the model's strategy."""
        self.frozen_layers = layers
        if layers and self.trainable_share is None:
            self.trainable_share = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="trainable_share")

    def frozen_variables(self) -> list:
        """The variables freeze_lowest holds."""
        if not self.frozen_layers:
            return []
        return [v for layer in [*self.convs, *self.rnns[: self.frozen_layers]] for v in layer.trainable_variables]

    def compile(self, optimizer, clipnorm: float | None = None, **kwargs) -> None:
        """Keras compile; `clipnorm` clips each gradient tensor's norm after the all-reduce over replicas (the
        optimizer's own clipnorm would clip each replica's partial gradient)."""
        if getattr(optimizer, "clipnorm", None):
            raise ValueError("pass clipnorm to CTCModel.compile, not to the optimizer (it would clip per replica)")
        self.clipnorm = clipnorm
        super().compile(optimizer=optimizer, **kwargs)

    def get_config(self) -> dict:
        return {
            "num_features": self.num_features,
            "characters": self.characters,
            "seed": self.seed,
            "options": asdict(self.options),
            "augment": {name: getattr(self.augment, name) for name in MASK_FIELDS},
        }

    @classmethod
    def from_config(cls, config: dict) -> CTCModel:
        """The model of a get_config() dict, or of the flat dict that bundles before options were grouped hold
        (num_layers, units, ..., time_masks, ... side by side)."""
        config = dict(config)
        flat = {name: config.pop(name) for name in [*MODEL_FIELDS, *MASK_FIELDS] if name in config}
        options = config.pop("options", None) or {k: v for k, v in flat.items() if k in MODEL_FIELDS}
        augment = config.pop("augment", None) or {k: v for k, v in flat.items() if k in MASK_FIELDS}
        return cls(options=ModelOptions(**options), augment=AugmentOptions(**augment), **config)

    def output_lengths(self, lengths: tf.Tensor) -> tf.Tensor:
        """Logit frames per utterance: ceil(lengths / stride)."""
        return stacked_frames(tf.cast(lengths, tf.int32), self.stride)

    def stack_frames(self, features: tf.Tensor) -> tf.Tensor:
        """[B, T, F] -> [B, ceil(T / stride), F * stride]: each output step sees `stride` frames, side by side."""
        if self.stride == 1:
            return features
        frames = tf.shape(features)[1]
        padded = tf.pad(features, [[0, 0], [0, (-frames) % self.stride], [0, 0]])
        return tf.reshape(padded, [tf.shape(features)[0], -1, self.num_features * self.stride])

    def convolve(self, features: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
        """[B, T, F] -> [B, ceil(T / stride), conv_channels] through the convolutional front-end. Each output step
        sees a window centred on its `stride` frames; frames and steps past an utterance's end are zeroed before every
        layer, so an utterance gives the same output alone as in a padded batch, whatever the padding holds (lengths
        None: every frame is real)."""
        x = features
        if lengths is not None:
            lengths = tf.cast(lengths, tf.int32)
            x *= tf.cast(sequence_mask(lengths, features), features.dtype)[:, :, None]
        for conv in self.convs:
            step, kernel = conv.strides[0], conv.kernel_size[0]
            frames = tf.shape(x)[1]
            left = (kernel - step) // 2
            right = (stacked_frames(frames, step) - 1) * step + kernel - left - frames  # ceil(frames / step) outputs
            x = conv(tf.pad(x, [[0, 0], [left, right], [0, 0]]))
            if lengths is not None:
                lengths = stacked_frames(lengths, step)
                x *= tf.cast(sequence_mask(lengths, x), x.dtype)[:, :, None]
        return x

    def _masks(self, count: int, max_width: int, extent: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
        """[B, size] float, 0 inside `count` random bands of width <= max_width within [0, extent) per row."""
        keep = tf.ones([tf.shape(extent)[0], size])
        positions = tf.range(size, dtype=tf.float32)[None, :]
        for _ in range(count):
            width = tf.floor(keras.random.uniform(tf.shape(extent), 0.0, max_width + 1.0, seed=self.seed_generator))
            room = tf.maximum(tf.cast(extent, tf.float32) - width, 0.0)
            start = tf.floor(keras.random.uniform(tf.shape(extent), seed=self.seed_generator) * (room + 1.0))
            inside = (positions >= start[:, None]) & (positions < (start + width)[:, None])
            keep *= 1.0 - tf.cast(inside, tf.float32)
        return keep

    def spec_augment(self, features: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """Zero random time and feature bands of each utterance [B, T, F] (0 is the normalized mean)."""
        shape = tf.shape(features)
        masks = self.augment
        if masks.time_masks and masks.time_mask_width:
            features *= self._masks(masks.time_masks, masks.time_mask_width, lengths, shape[1])[:, :, None]
        if masks.freq_masks and masks.freq_mask_width:
            width = tf.fill([shape[0]], shape[2])
            features *= self._masks(masks.freq_masks, masks.freq_mask_width, width, shape[2])[:, None, :]
        return features

    def call(self, inputs: dict, training: bool = False) -> tf.Tensor:
        return self.head(self.encode(inputs, training)[-1], inputs.get("lengths"))  # [B, T', C]

    def head(self, top: tf.Tensor, lengths: tf.Tensor | None) -> tf.Tensor:
        """The top LSTM layer's output [B, T', units (x2)] -> logits [B, T', C], through the look-ahead if any
        (the steps past an utterance's end count as zeros, so an utterance gives the same logits in any batch;
        lengths None: every step is real)."""
        if self.lookahead is not None:
            k = self.options.lookahead
            if lengths is not None:
                top *= tf.cast(sequence_mask(self.output_lengths(lengths), top), top.dtype)[:, :, None]
            top = self.lookahead(tf.pad(top, [[0, 0], [0, k], [0, 0]]))
        return self.logits(top)

    def encode(self, inputs: dict, training: bool = False) -> list[tf.Tensor]:
        """The output of every LSTM layer (after its dropout), lowest first: each [B, T', units (x2)]. Without
        inputs["lengths"] every frame is real (no mask: the graph a TFLite file of one utterance holds)."""
        lengths = inputs.get("lengths")
        if self.convs:
            x = self.convolve(inputs["features"], lengths)  # [B, T', conv_channels]
        else:
            x = inputs["features"]
            if lengths is not None and self.stride > 1:  # a step that ends an utterance stacks zeros after it
                x *= tf.cast(sequence_mask(lengths, x), x.dtype)[:, :, None]
            x = self.stack_frames(x)  # [B, T', F * stride]
        mask = None if lengths is None else sequence_mask(self.output_lengths(lengths), x)  # [B, T']
        outputs = []
        for rnn, dropout in zip(self.rnns, self.dropouts, strict=True):
            x = dropout(rnn(x, mask=mask, training=training), training=training)  # [B, T', units (x2)]
            outputs.append(x)
        return outputs

    def training_loss(self, inputs: dict, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(loss to minimize, the top layer's CTC loss, its logits [B, T', C]) of a training batch: with
        intermediate CTC the loss also counts the CTC loss of the chosen lower layer's output."""
        if not self.intermediate_weight:
            logits = self(inputs, training=True)
            loss = self.global_mean(self.per_example_loss(labels, logits, inputs["lengths"]))
            return loss, loss, logits
        outputs = self.encode(inputs, training=True)
        logits = self.head(outputs[-1], inputs["lengths"])
        lower = self.logits(outputs[self.intermediate_layer - 1])  # the shared output layer on a lower layer
        loss = self.global_mean(self.per_example_loss(labels, logits, inputs["lengths"]))
        inner = self.global_mean(self.per_example_loss(labels, lower, inputs["lengths"]))
        weight = self.intermediate_weight
        return (1.0 - weight) * loss + weight * inner, loss, logits

    def build_for(self) -> None:
        """Create the weights from the layer shapes, in the order a first call creates them (needed before
        load_weights; no forward pass, which would cost most of a second)."""
        width = self.num_features * self.stride  # what each recurrent step sees: [B, T', F * stride]
        with keras.name_scope(self.name, caller=self):  # the variable paths a call gives them
            if self.convs:
                width = self.num_features
                for conv in self.convs:
                    conv.build((None, None, width))
                    width = self.options.conv_channels
            for rnn, dropout in zip(self.rnns, self.dropouts, strict=True):
                rnn.build((None, None, width))
                width = self.options.units * (2 if self.options.bidirectional else 1)
                dropout.build((None, None, width))
            if self.lookahead is not None:
                self.lookahead.build((None, None, width))
            self.logits.build((None, None, width))
        self.built = True

    def per_example_loss(self, labels: tf.Tensor, logits: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """CTC negative log-likelihood per utterance [B] on sparse labels; `lengths` are input frame counts."""
        return tf.nn.ctc_loss(
            labels=labels_to_sparse(tf.cast(labels, tf.int32)),
            logits=logits,
            label_length=None,
            logit_length=self.output_lengths(lengths),
            logits_time_major=False,
            blank_index=self.blank_index,
        )

    def update_error_rates(self, labels: tf.Tensor, logits: tf.Tensor, lengths: tf.Tensor) -> None:
        """Greedy-decode the batch and add its character and word edit distances to the metrics."""
        hypothesis = greedy_sparse(logits, self.output_lengths(lengths), self.blank_index)  # int64 [B, (L)]
        truth = labels_to_sparse(tf.cast(labels, tf.int64))
        self.ler.update_state(hypothesis, truth)
        self.wer.update_state(words_sparse(hypothesis, self._words_table), words_sparse(truth, self._words_table))

    def train_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        augmented = {**x, "features": self.spec_augment(x["features"], x["lengths"])}
        # Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer: the loss is scaled before the
        # gradients (float16 activations would underflow), and the optimizer unscales them, skips a step whose
        # scaled gradients overflow and lowers its scale.
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        with tf.GradientTape() as tape:
            objective, loss, logits = self.training_loss(augmented, labels)  # `loss`: the top layer's, as validated
            target = self.optimizer.scale_loss(objective) if scaled else objective
        gradients = tape.gradient(target, self.trainable_variables)
        if self.frozen_layers:
            held = {id(v) for v in self.frozen_variables()}
            gradients = [
                g * tf.cast(self.trainable_share, g.dtype) if id(v) in held else g
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
            tf.cond(finite, lambda: self._learn(gradients, loss, labels, logits, x["lengths"]), tf.no_op)
        else:
            # the optimizer all-reduces what it is given again: each replica passes its share of the sum
            shares = [g / replicas for g in gradients]
            if scaled:  # the LossScaleOptimizer decides on finite gradients itself (and must see the others)
                self.optimizer.apply(shares, self.trainable_variables)
            else:
                self._apply_on_every_replica(shares, finite)
            tf.cond(finite, lambda: self._update_metrics(loss, labels, logits, x["lengths"]), tf.no_op)
        self.skipped.update_state((1.0 - tf.cast(finite, tf.float32)) / replicas)
        return self.step_results(self.metrics)

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

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, lambda: apply(gradients), tf.no_op)
            return

        def cross_replica(strategy, gradients, finite):
            first = strategy.experimental_local_results(finite)[0]  # the same on every replica

            def everywhere() -> tf.Operation:
                strategy.extended.call_for_each_replica(apply, args=(gradients,))
                return tf.no_op()

            tf.cond(first, everywhere, tf.no_op)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(gradients, finite))

    def _learn(self, gradients: list, loss, labels, logits, lengths) -> tf.Operation:
        """The finite branch of train_step: apply the gradients, add the batch to the metrics."""
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._update_metrics(loss, labels, logits, lengths)

    def test_step(self, data):
        x, labels, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=False)
        loss = self.global_mean(self.per_example_loss(labels, logits, x["lengths"]))
        self._update_metrics(loss, labels, logits, x["lengths"])
        return self.step_results([m for m in self.metrics if m is not self.skipped])

    def _update_metrics(self, loss, labels, logits, lengths) -> tf.Operation:
        """Add a batch's loss and error rates to the epoch's metrics."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        self.loss_tracker.update_state(loss * replicas)  # summed over replicas and divided by their count: the mean
        self.update_error_rates(labels, logits, lengths)
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
        return [self.loss_tracker, self.ler, self.wer, self.skipped]
