"""The Keras optimizer and learning-rate schedule of a run."""

from __future__ import annotations

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
    """The configured Keras optimizer over `steps_per_epoch` x `epochs` steps; clip=False leaves
    optimizer.clipnorm to the model (CTCModel.compile clips after the all-reduce over replicas)."""
    lr = learning_rate(options, steps_per_epoch * epochs)
    clip = {"clipnorm": options.clipnorm} if options.clipnorm and clip else {}
    if options.name == Optimizer.sgd:
        return keras.optimizers.SGD(lr, momentum=options.momentum, **clip)
    if options.name == Optimizer.adamw:
        return keras.optimizers.AdamW(lr, weight_decay=options.weight_decay, **clip)
    return keras.optimizers.Adam(lr, **clip)
