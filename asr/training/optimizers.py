"""The Keras optimizer and learning-rate schedule of a run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import keras

from asr.training.options import Optimizer, OptimizerOptions, Schedule


def learning_rate(
    options: OptimizerOptions, total_steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Constant (also the start of reduce-on-plateau), or linear warm-up from 0 over `warmup_ratio` of the
    `total_steps` optimizer steps, then cosine decay to 0 at the last step."""
    if options.schedule != Schedule.cosine:
        return options.lr
    warmup = int(options.warmup_ratio * total_steps)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(options.lr, decay_steps=total_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(total_steps - warmup, 1), warmup_target=options.lr, warmup_steps=warmup
    )


def build_optimizer(
    options: OptimizerOptions, steps_per_epoch: int, epochs: int, clip: bool = True
) -> keras.optimizers.Optimizer:
    """The configured Keras optimizer over `steps_per_epoch` x `epochs` steps, with a moving average of the
    weights when optimizer.ema_momentum is set; clip=False leaves optimizer.clipnorm to the model
    (CTCModel.compile clips after the all-reduce over replicas)."""
    lr = learning_rate(options, steps_per_epoch * epochs)
    extra = {"clipnorm": options.clipnorm} if options.clipnorm and clip else {}
    if options.ema_momentum is not None:
        extra.update(use_ema=True, ema_momentum=options.ema_momentum)
    if options.name == Optimizer.sgd:
        return keras.optimizers.SGD(lr, momentum=options.momentum, **extra)
    if options.name == Optimizer.adamw:
        return keras.optimizers.AdamW(lr, weight_decay=options.weight_decay, **extra)
    return keras.optimizers.Adam(lr, **extra)


def uses_average(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether the optimizer (or the one inside a loss-scale optimizer) keeps a moving average of the weights."""
    return bool(getattr(getattr(optimizer, "inner_optimizer", optimizer), "use_ema", False))


@contextmanager
def averaged_weights(model: keras.Model) -> Iterator[None]:
    """Inside the block the model holds its optimizer's moving averages of the weights (a no-op without
    them); its own weights are back afterwards."""
    if model.optimizer is None or not uses_average(model.optimizer):
        yield
        return
    variables = model.trainable_variables
    own = [keras.ops.convert_to_numpy(v) for v in variables]
    model.optimizer.finalize_variable_values(variables)  # copies each average into its variable
    try:
        yield
    finally:
        for variable, value in zip(variables, own, strict=True):
            variable.assign(value)
