"""Stacked (Bi)LSTM with CTC loss: the architecture, its loss and error rates (step mechanics: asr.model.steps),
and the same layers run step by step over a stream (CTCModel.step: the stream and the exports' `step`)."""

from __future__ import annotations

from dataclasses import asdict

import keras
import numpy as np
import tensorflow as tf

from asr.compat import BuildFromShapes
from asr.data.features import stacked_frames
from asr.data.options import MASK_FIELDS, AugmentOptions
from asr.decoding.ctc import greedy_sparse, text_table
from asr.model.metrics import ErrorRate, words_sparse
from asr.model.options import ModelOptions
from asr.model.steps import StepModel


def labels_to_sparse(labels: tf.Tensor) -> tf.SparseTensor:
    """Dense labels [B, L] padded with -1 -> int32 SparseTensor [B, (L)]."""
    indices = tf.where(labels >= 0)
    return tf.SparseTensor(indices, tf.gather_nd(labels, indices), tf.shape(labels, out_type=tf.int64))


def sequence_mask(lengths: tf.Tensor, features: tf.Tensor) -> tf.Tensor:
    """True for real frames, False for padding: [B, T] from lengths [B] and features [B, T, F]."""
    return tf.sequence_mask(lengths, maxlen=tf.shape(features)[1])


def run_cells(cells: list[keras.layers.LSTMCell], x: tf.Tensor, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Stacked Keras LSTM cells (the lowest first) over a sequence x [B, S, in] (S >= 0) from the states
    [layers, 2, B, units] (h and c of each) -> the top cell's outputs [B, S, units] and the states after the last
    step (the given ones when S = 0); one loop over the steps runs every layer."""

    def one(carry: tuple, z: tf.Tensor) -> tuple:
        found = []
        for cell, (h, c) in zip(cells, carry, strict=True):
            z, (h, c) = cell(z, [h, c], training=False)  # an LSTM cell's output is its new h
            found.append((h, c))
        return tuple(found)

    start = tuple((states[i, 0], states[i, 1]) for i in range(len(cells)))
    per_step = tf.scan(one, tf.transpose(x, [1, 0, 2]), initializer=start)  # (hs, cs) [S, B, units] per layer
    last = [
        tf.stack([tf.concat([h[None], hs], 0)[-1], tf.concat([c[None], cs], 0)[-1]])
        for (h, c), (hs, cs) in zip(start, per_step, strict=True)
    ]
    return tf.transpose(per_step[-1][0], [1, 0, 2]), tf.stack(last)


class _Traced:
    """Holds a model's traced step function outside Keras's and TensorFlow's tracking (it is no part of the model's
    state, and a SavedModel of the model must not save it twice)."""

    def __init__(self) -> None:
        self.function: tf.types.experimental.PolymorphicFunction | None = None


@keras.saving.register_keras_serializable(package="asr")
class CTCModel(BuildFromShapes, StepModel):
    """Features [B, T, F] + lengths [B] -> logits [B, T', len(characters) + 1]; the blank is the last class.

    T' = ceil(T / stride): with stride > 1 consecutive frames are stacked (or, with a convolutional front-end, its
    first layer moves by `stride` frames), so the LSTMs run fewer steps.

    Batches come as ({"features": zero-padded [B, T, F], "lengths": [B]}, labels [B, L] padded with -1);
    the mask and the sparse labels are built inside the step.
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
        self.ler = ErrorRate(name="ler")
        self.wer = ErrorRate(name="wer")
        self._words_table = text_table(characters)
        self.frozen_layers = 0  # set by freeze_lowest; trainable_share is 0.0 while they are held, 1.0 after
        self.intermediate_weight = 0.0  # set by intermediate_ctc
        self.intermediate_layer = 0
        self._traced_step = _Traced()  # step_function(), traced on first use

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
        """The model of a get_config() dict (ValueError for another shape)."""
        config = dict(config)
        if not isinstance(config.get("options"), dict) or not isinstance(config.get("augment"), dict):
            raise ValueError(
                "the model field lacks its options and augment groups (a bundle in the flat layout retired in "
                "2026-12): nest them as docs/upgrading.md shows, or retrain"
            )
        options, augment = ModelOptions(**config.pop("options")), AugmentOptions(**config.pop("augment"))
        return cls(options=options, augment=augment, **config)

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

    def convolve(self, features: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """[B, T, F] -> [B, ceil(T / stride), conv_channels] through the convolutional front-end. Each output step
        sees a window centred on its `stride` frames; frames and steps past an utterance's end are zeroed before every
        layer, so an utterance gives the same output alone as in a padded batch, whatever the padding holds."""
        x = features * tf.cast(sequence_mask(lengths, features), features.dtype)[:, :, None]
        for conv in self.convs:
            step, kernel = conv.strides[0], conv.kernel_size[0]
            frames = tf.shape(x)[1]
            left = (kernel - step) // 2
            right = (stacked_frames(frames, step) - 1) * step + kernel - left - frames  # ceil(frames / step) outputs
            x = conv(tf.pad(x, [[0, 0], [left, right], [0, 0]]))
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
        return self.head(self.encode(inputs, training)[-1], inputs["lengths"])  # [B, T', C]

    def head(self, top: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
        """The top LSTM layer's output [B, T', units (x2)] -> logits [B, T', C], through the look-ahead if any
        (the steps past an utterance's end count as zeros, so an utterance gives the same logits in any batch)."""
        if self.lookahead is not None:
            k = self.options.lookahead
            top *= tf.cast(sequence_mask(self.output_lengths(lengths), top), top.dtype)[:, :, None]
            top = self.lookahead(tf.pad(top, [[0, 0], [0, k], [0, 0]]))
        return self.logits(top)

    def check_steps(self) -> None:
        """ValueError unless the model runs step by step (step()): unidirectional LSTMs read the input left to right,
        and there is no convolutional front-end (its window reaches past a step)."""
        if self.options.bidirectional:
            raise ValueError("a bidirectional model cannot run step by step: its backward LSTMs start at the end")
        if self.convs:
            raise ValueError("a model with a convolutional front-end (model.conv_layers) does not run step by step")

    def step(
        self, steps: tf.Tensor, states: tf.Tensor, tail: tf.Tensor | None = None, final: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, ...]:
        """A stretch of a stream through the model's own layers at inference: stacked steps [B, S, F * stride]
        (S >= 0; stack_frames' output, the last step zero-padded) and the LSTM states [layers, 2, B, units] (h and c
        of each layer; zeros at the stream's start) -> (logits [B, S, C], the new states). A stream fed stretch by
        stretch gets the logits that call() gives for all of it (to float rounding).

        With model.lookahead = k it takes and returns `tail` besides, [B, k, units]: the top LSTM outputs of the
        last k steps (zeros at the stream's start), and takes `final` (a float32 scalar, 1.0 on the stream's last
        stretch, else 0.0). Each stretch's logits are then those of the k steps before its own: a stream's first k
        rows come before its start (drop them), and the stretch with final = 1.0 adds the rows of its last k steps
        (the steps past the end count as zeros, as in head())."""
        self.check_steps()
        x, states = run_cells([rnn.cell for rnn in self.rnns], steps, states)  # dropout is the identity at inference
        if self.lookahead is None:
            return self.logits(x), states
        k = self.options.lookahead
        # the top outputs after the tail, k zero steps past the end on the last stretch, and one zero step more so
        # that the look-ahead's window always fits (its output row is dropped)
        padding = tf.zeros([tf.shape(x)[0], tf.cast(final, tf.int32) * k + 1, x.shape[-1]], x.dtype)
        rows = tf.concat([tf.cast(tail, x.dtype), x, padding], axis=1)  # [B, k + S (+ k) + 1, units]
        ready = tf.shape(rows)[1] - k - 1  # rows whose k steps ahead are all there
        return self.logits(self.lookahead(rows)[:, :ready]), states, rows[:, ready : ready + k]

    def step_function(self) -> tf.types.experimental.PolymorphicFunction:
        """step() of one stream as a tf.function, traced once per model: steps [S, F * stride] and states
        [layers, 2, units] -> (logits [S, C], states); with a look-ahead also tail [k, units] and final [] in, and
        tail out. The `step` of the SavedModel and of `asr-export --tflite --stream` (their input names), and what
        the recognizer's streams run."""
        if self._traced_step.function is not None:
            return self._traced_step.function
        self.check_steps()
        width, units, k = self.num_features * self.stride, self.options.units, self.options.lookahead
        signature = [
            tf.TensorSpec([None, width], tf.float32, name="steps"),
            tf.TensorSpec([len(self.rnns), 2, units], tf.float32, name="states"),
        ]
        if not k:

            @tf.function(input_signature=signature)
            def step(steps: tf.Tensor, states: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                logits, states = self.step(steps[None], states[:, :, None])
                return logits[0], states[:, :, 0]

            self._traced_step.function = step
            step.get_concrete_function()  # traced now (about a second), not at a stream's first audio
            return step

        @tf.function(
            input_signature=[
                *signature,
                tf.TensorSpec([k, units], tf.float32, name="tail"),
                tf.TensorSpec([], tf.float32, name="final"),
            ]
        )
        def step_ahead(
            steps: tf.Tensor, states: tf.Tensor, tail: tf.Tensor, final: tf.Tensor
        ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            logits, states, tail = self.step(steps[None], states[:, :, None], tail[None], final)
            return logits[0], states[:, :, 0], tail[0]

        self._traced_step.function = step_ahead
        step_ahead.get_concrete_function()
        return step_ahead

    def encode(self, inputs: dict, training: bool = False) -> list[tf.Tensor]:
        """The output of every LSTM layer (after its dropout), lowest first: each [B, T', units (x2)]."""
        lengths = tf.cast(inputs["lengths"], tf.int32)
        if self.convs:
            x = self.convolve(inputs["features"], lengths)  # [B, T', conv_channels]
        else:
            x = inputs["features"]
            if self.stride > 1:  # a step that ends an utterance stacks zeros after it, whatever the padding holds
                x *= tf.cast(sequence_mask(lengths, x), x.dtype)[:, :, None]
            x = self.stack_frames(x)  # [B, T', F * stride]
        mask = sequence_mask(self.output_lengths(lengths), x)  # [B, T']
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

    @property
    def error_metrics(self) -> list[keras.metrics.Metric]:
        return [self.ler, self.wer]

    def augmented(self, inputs: dict) -> dict:
        """SpecAugment masks on a training batch's features."""
        return {**inputs, "features": self.spec_augment(inputs["features"], inputs["lengths"])}

    def validation_loss(self, inputs: dict, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(mean CTC loss, logits [B, T', C]) of a validation batch."""
        logits = self(inputs, training=False)
        return self.global_mean(self.per_example_loss(labels, logits, inputs["lengths"])), logits

    def update_error_rates(self, labels: tf.Tensor, logits: tf.Tensor, inputs: dict) -> None:
        """Greedy-decode the batch and add its character and word edit distances to the metrics."""
        lengths = self.output_lengths(inputs["lengths"])
        hypothesis = greedy_sparse(logits, lengths, self.blank_index)  # int64 [B, (L)]
        truth = labels_to_sparse(tf.cast(labels, tf.int64))
        self.ler.update_state(hypothesis, truth)
        self.wer.update_state(words_sparse(hypothesis, self._words_table), words_sparse(truth, self._words_table))
