"""`asr-bench train`: seconds per epoch of the seed article's naive way (asr.bench.naive, in a process of its own)
against asr-train's pipeline with the preset's settings, on the same training utterances, LSTM stack, batch size
and optimizer; feature extraction speed (asr.bench.features); and the machine's float32 matmul rate measured in
the same run (asr.bench.machine), against the training's FLOP rate. Every figure is wall-clock."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from asr.bench.common import (
    FLOP_PER_MULTIPLY_ADD,
    LSTM_GATES,
    TRAINING_FLOP_FACTOR,
    WARMUP_EPOCHS,
    audio_seconds,
    epoch_figures,
    epoch_timer,
    in_child,
    peak_rss_mb,
    refuse_conv_front_end,
    stack_forward_flop_per_frame,
)
from asr.bench.features import bench_features
from asr.bench.machine import bench_machine
from asr.bench.naive import NAIVE_NUMCEP, train_naive
from asr.system import usable_cpus

if TYPE_CHECKING:
    from asr.data.preparation import PreparedData
    from asr.training.options import RunOptions

log = logging.getLogger(__name__)


def _prepare_limited(options: RunOptions, limit: int | None, fraction: float = 1.0) -> tuple[PreparedData, list]:
    """The prepared data of asr-train (prepare_data) and the training split's utterances; with `limit`, the first
    `limit` utterances of the training and validation splits (no test split); with `fraction`, the first
    `fraction` of the training split (above 1: the whole split repeated, then a part of it again)."""
    from asr.data.preparation import load_data, prepare_data

    splits = load_data(options.data)
    if limit is not None:
        splits = {"train": splits["train"][:limit], "valid": splits["valid"][:limit], "test": []}
    if fraction != 1.0:
        train = splits["train"]
        count = round(len(train) * fraction)
        splits = {**splits, "train": [train[i % len(train)] for i in range(count)], "test": []}
    prepared = prepare_data(options.data, options.features, options.model.stride, options.augment, splits)
    return prepared, splits["train"]


def train_ours(options: RunOptions, epochs: int, limit: int | None, fraction: float = 1.0) -> dict:
    """asr-train's pipeline with the preset's settings: prepared (cached) features, length-bucketed ragged
    batches, CTCModel, the preset's optimizer, fit with validation each epoch; wall seconds per epoch and what
    the other measurements need (the training utterances, the model's shape). Op determinism, which the preset
    may switch on, is left as it was before."""
    import keras

    from asr import compat

    determinism = compat.op_determinism_enabled()
    try:
        return _train_ours(options, epochs, limit, fraction)
    finally:
        keras.backend.clear_session()
        if determinism != compat.op_determinism_enabled():
            if determinism:
                import tensorflow as tf

                tf.config.experimental.enable_op_determinism()
            else:
                compat.disable_op_determinism()


def _train_ours(options: RunOptions, epochs: int, limit: int | None, fraction: float) -> dict:
    """The body of `train_ours`."""
    import keras

    from asr.data.batching import epoch_plans, make_dataset
    from asr.data.features import stacked_frames
    from asr.model.ctc import CTCModel
    from asr.training.loop import set_determinism, set_threads
    from asr.training.optimizers import build_optimizer

    trainer = options.trainer
    keras.backend.clear_session()
    set_threads(trainer.threads)
    set_determinism(options.seed, trainer.deterministic)
    prepared, utterances = _prepare_limited(options, limit, fraction)
    train, valid = prepared.examples["train"], prepared.examples.get("valid", [])
    vocab = prepared.vocab
    model = CTCModel(options.features.num_features, vocab.characters, options.model, options.augment, options.seed)
    plans = epoch_plans(train, trainer.batch_size, options.seed, trainer.bucketing, epochs, trainer.batch_frames)
    steps = len(plans[0].batches)
    model.compile(
        optimizer=build_optimizer(options.optimizer, steps, trainer.epochs, clip=False),
        clipnorm=options.optimizer.clipnorm,
    )
    valid_plan = epoch_plans(valid, trainer.batch_size, None, batch_frames=trainer.batch_frames) if valid else None
    valid_data = make_dataset(valid, valid_plan) if valid else None
    timer = epoch_timer()
    model.fit(
        make_dataset(train, plans),
        validation_data=valid_data,
        epochs=epochs,
        steps_per_epoch=steps,
        callbacks=[timer],
        shuffle=False,
        verbose=0,
    )
    stride = options.model.stride
    frames = [  # LSTM steps of the real frames of each epoch's drawn speed variants
        int(
            sum(
                stacked_frames(len((e.features, *e.variants)[k]), stride)
                for e, k in zip(train, plan.variant, strict=True)
            )
        )
        for plan in plans
    ]
    by_key = {u.key: u for u in utterances}
    items = [(str(by_key[e.key].audio), by_key[e.key].start, by_key[e.key].end, e.labels.tolist()) for e in train]
    return {
        "epoch_seconds": timer.epochs,
        "validation_seconds": timer.validation,
        "padding_shares": [plan.padding_share for plan in plans],
        "lstm_steps_per_epoch": frames,
        "valid_lstm_steps": int(sum(stacked_frames(len(e.features), stride) for e in valid)),
        "valid_utterances": len(valid),
        "steps_per_epoch": steps,
        "input_width": options.features.num_features * stride,
        "classes": len(vocab.characters) + 1,
        "items": items,
        "storage": prepared.report.storage,
        "feature_bytes": prepared.report.feature_bytes,
        "peak_rss_mb": peak_rss_mb(),
    }


def bench_train(overrides: Sequence[str], epochs: int, naive_epochs: int, limit: int | None = None) -> dict:
    """Seconds per epoch of asr-train's pipeline (first, in this process) and of the naive padded Keras one (in
    a spawned process of its own, so that each peak memory is its own) on the same training utterances, model
    shape and optimizer; feature extraction speed; the machine's matmul rate and the share of it the training
    reaches (flops_utilization)."""
    from asr.config import compose

    options = compose(overrides)
    refuse_conv_front_end(options.model.conv_layers)
    started, began = time.perf_counter(), datetime.now().astimezone()
    log.info("asr-train's pipeline: %d epochs", epochs)
    ours = train_ours(options, epochs, limit)  # the first phase here: this process's peak memory is its peak
    items = ours.pop("items")
    log.info("the naive pipeline: %d epochs in a process of its own", naive_epochs)
    naive = in_child(train_naive, options, items, ours["classes"], naive_epochs)
    seconds = audio_seconds(items)
    log.info("feature extraction")
    features = bench_features(options, items)
    shape = options.model
    forward, widths = stack_forward_flop_per_frame(
        ours["input_width"], shape.units, shape.num_layers, shape.bidirectional, ours["classes"]
    )
    naive_forward, _ = stack_forward_flop_per_frame(
        NAIVE_NUMCEP, shape.units, shape.num_layers, shape.bidirectional, ours["classes"]
    )
    log.info("matmul rates")
    hardware = bench_machine(options.trainer.batch_size, widths, shape.units, shape.bidirectional)

    ours_epochs = epoch_figures(ours["epoch_seconds"])
    train_only = [e - v for e, v in zip(ours["epoch_seconds"], ours["validation_seconds"], strict=True)]
    ours_train = epoch_figures(train_only)
    naive_epochs_fig = epoch_figures(naive["epoch_seconds"])
    steps = statistics.mean(ours["lstm_steps_per_epoch"][WARMUP_EPOCHS:])
    training_flop = TRAINING_FLOP_FACTOR * forward * steps
    naive_flop = TRAINING_FLOP_FACTOR * naive_forward * naive["frames"]
    training_gflops = training_flop / ours_train["median"] / 1e9
    return {
        "benchmark": "train",
        "preset": options.name,
        "overrides": list(overrides),
        "date": began.isoformat(timespec="seconds"),  # when the measurements began
        "wall_seconds": round(time.perf_counter() - started, 1),
        "cpus": usable_cpus(),
        "epochs": {"ours": epochs, "naive": naive_epochs, "warmup": WARMUP_EPOCHS},
        "data": {
            "train_utterances": len(items),
            "train_audio_seconds": round(seconds, 2),
            "valid_utterances": ours["valid_utterances"],
            "limit": limit,
        },
        "naive": {
            "what": (
                f"{NAIVE_NUMCEP} MFCC computed once, every utterance padded to the longest (Masking), in-memory "
                "arrays into fit(batch_size, shuffle=True), dense-label CTC, no validation"
            ),
            "epoch_seconds": naive_epochs_fig,
            "epoch_seconds_each": [round(s, 3) for s in naive["epoch_seconds"]],
            "audio_seconds_per_second": round(seconds / naive_epochs_fig["median"], 1),
            "padding_share": round(naive["padding_share"], 4),
            "padded_shape": naive["padded_shape"],
            "feature_seconds": round(naive["feature_seconds"], 3),
            "peak_rss_mb": round(naive["peak_rss_mb"], 1),
        },
        "ours": {
            "what": (
                "asr-train's data path and model (cached features, the preset's speeds and masks, bucketed ragged "
                "batches, CTCModel, the preset's optimizer), fit with validation each epoch; no checkpoints, "
                "TensorBoard or metric files"
            ),
            "epoch_seconds": ours_epochs,
            "epoch_seconds_each": [round(s, 3) for s in ours["epoch_seconds"]],
            "train_seconds_without_validation": ours_train,
            "validation_seconds": epoch_figures(ours["validation_seconds"]),
            "audio_seconds_per_second": round(seconds / ours_epochs["median"], 1),
            "padding_share": round(statistics.mean(ours["padding_shares"][WARMUP_EPOCHS:]), 4),
            "steps_per_epoch": ours["steps_per_epoch"],
            "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        },
        "peak_rss": (
            "ru_maxrss, TensorFlow included: ours, of this process after its phase, the first it runs; naive, of "
            "its own spawned process"
        ),
        "train_speedup": round(naive_epochs_fig["median"] / ours_epochs["median"], 2),
        "train_speedup_without_validation": round(naive_epochs_fig["median"] / ours_train["median"], 2),
        "features": features,
        "machine": hardware,
        "model": {
            "num_layers": shape.num_layers,
            "units": shape.units,
            "bidirectional": shape.bidirectional,
            "stride": shape.stride,
            "batch_size": options.trainer.batch_size,
            "optimizer": options.optimizer.name.value,
            "layer_input_widths": widths,
            "forward_flop_per_lstm_step": forward,
            "lstm_steps_per_epoch": round(steps),
            "training_gflop_per_epoch": round(training_flop / 1e9, 3),
            "training_gflops": round(training_gflops, 3),
            "flop_count": (
                f"gate products {FLOP_PER_MULTIPLY_ADD} x {LSTM_GATES} x units x (input + units) per layer and "
                f"direction, plus the output layer, per real LSTM step; training = {TRAINING_FLOP_FACTOR} x forward;"
                " training_gflops over the epoch's median time without validation"
            ),
            "naive_training_gflop_per_epoch": round(naive_flop / 1e9, 3),
            "naive_training_gflops_real_frames": round(naive_flop / naive_epochs_fig["median"] / 1e9, 3),
            # Masking skips no arithmetic: the naive LSTMs compute every padded frame too
            "naive_training_gflops_with_padding": round(
                naive_flop * (1 + naive["padding_share"]) / naive_epochs_fig["median"] / 1e9, 3
            ),
        },
        "flops_utilization": round(training_gflops / hardware["matmul_gflops_2048"], 4),
    }


def train_table(result: dict) -> str:
    """A few lines of `bench_train`'s result for the console."""
    naive, ours = result["naive"], result["ours"]
    rows = [
        ("seconds per epoch (median)", "epoch_seconds", "median", "{:.2f}"),
        ("  min", "epoch_seconds", "min", "{:.2f}"),
        ("  max", "epoch_seconds", "max", "{:.2f}"),
        ("audio seconds per second", "audio_seconds_per_second", None, "{:.1f}"),
        ("padding share", "padding_share", None, "{:.1%}"),
        ("peak RSS (MB)", "peak_rss_mb", None, "{:.0f}"),
    ]
    lines = [f"{'':28}{'naive':>12}{'ours':>12}"]
    for label, key, sub, form in rows:
        values = [side[key][sub] if sub else side[key] for side in (naive, ours)]
        lines.append(f"{label:28}" + "".join(f"{form.format(v):>12}" for v in values))
    features, hardware, model = result["features"], result["machine"], result["model"]
    lines += [
        f"train_speedup {result['train_speedup']:.2f}x "
        f"(without ours' validation {result['train_speedup_without_validation']:.2f}x)",
        f"features: {features['audio_seconds_per_second_cached']:.0f} audio s/s cached, "
        f"{features['audio_seconds_per_second_cold']:.0f} computed",
        f"matmul: {hardware['matmul_gflops_2048']:.1f} GFLOP/s at 2048^3, {hardware['matmul_gflops_lstm_step']:.1f} "
        f"at the LSTM step shapes; training {model['training_gflops']:.2f} GFLOP/s = "
        f"{result['flops_utilization']:.1%} of the 2048^3 figure",
    ]
    return "\n".join(lines)
