"""From examples to tf.data batches: per-epoch batch plans (length-bucketed, seeded) and ragged batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from asr.data.validation import Example

# Batches are formed inside pools of this many batches' worth of shuffled utterances, sorted by length:
# close lengths in a batch (little padding), yet a different mix every epoch.
POOL_BATCHES = 32
# Batches made ahead of the training step: gathering a batch is cheap, two hide it behind the step.
PREFETCH_BATCHES = 2


def batch_plan(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None, bucketing: bool = True
) -> list[np.ndarray]:
    """Index batches covering every item exactly once.

    With an rng: shuffled, then (bucketing) sorted by length within pools, and the batch order shuffled.
    Without: in length order (bucketing) or in the given order.
    """
    if batch_size < 1:
        raise ValueError(f"trainer.batch_size must be >= 1, got {batch_size}")
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    pool = batch_size * POOL_BATCHES if rng is not None else len(order) or 1
    batches = []
    for begin in range(0, len(order), pool):
        chunk = order[begin : begin + pool]
        if bucketing:
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def padding_share(lengths: Sequence[int], plan: Sequence[np.ndarray]) -> float:
    """Padded frames / real frames when the batches of `plan` are padded to their longest item."""
    lengths = np.asarray(lengths)
    padded = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in plan)
    return float(padded / max(lengths.sum(), 1))


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch feeds the model: which examples form each batch, and which variant of each."""

    batches: list[np.ndarray]  # example indices, one array per batch
    variant: np.ndarray  # [N] 0 = the features, k = variants[k - 1]
    padding_share: float


def epoch_plan(
    examples: Sequence[Example], batch_size: int, seed: int | None, epoch: int, bucketing: bool
) -> EpochPlan:
    """The batches of epoch `epoch` (0-based), a function of (seed, epoch) only; fixed order without a seed."""
    if seed is None:
        variant = np.zeros(len(examples), np.int64)
        rng = None
    else:
        rng = np.random.default_rng([seed, epoch])
        variant = np.array([rng.integers(len(e.variants) + 1) if e.variants else 0 for e in examples], np.int64)
    lengths = [len((e.features, *e.variants)[k]) for e, k in zip(examples, variant, strict=True)]
    plan = batch_plan(lengths, batch_size, rng, bucketing)
    return EpochPlan(plan, variant, padding_share(lengths, plan))


def epoch_plans(
    examples: Sequence[Example], batch_size: int, seed: int | None, bucketing: bool = True, epochs: int = 1
) -> list[EpochPlan]:
    """The plans of epochs 0 .. epochs - 1; without a seed, the one fixed-order epoch."""
    if seed is None and epochs != 1:
        raise ValueError("a fixed-order (unseeded) dataset has exactly one epoch")
    return [epoch_plan(examples, batch_size, seed, epoch, bucketing) for epoch in range(epochs)]


def _flatten(arrays: Sequence[np.ndarray]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Arrays -> (all rows concatenated, start row of each, row count of each), as tensors."""
    counts = np.array([len(a) for a in arrays], np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return tf.constant(np.concatenate(arrays)), tf.constant(starts), tf.constant(counts)


def ragged_batches(examples: Sequence[Example], plans: Sequence[EpochPlan]) -> tf.data.Dataset:
    """Dataset of (features ragged [B, (T), F], labels ragged [B, (L)]): the batches of `plans`, epoch after
    epoch. A run resumed at epoch e passes plans[e:] and sees exactly the batches an uninterrupted run would.
    Pure tf.data ops (gathers from one tensor of all features), no Python generator: nothing has to be torn
    down when Keras `fit` ends.
    """
    if not examples:
        raise ValueError("no examples to batch (every utterance of the split was rejected?)")
    if not plans:
        raise ValueError("no epochs to batch")
    # Every feature array: the examples' own first, then all variants, in example order.
    arrays = [e.features for e in examples] + [v for e in examples for v in e.variants]
    # id of example i's variant k (k >= 1) = variant_base[i] + k
    variant_base = np.cumsum([len(examples)] + [len(e.variants) for e in examples])[:-1] - 1
    feature_rows, feature_starts, feature_counts = _flatten(arrays)
    label_rows, label_starts, label_counts = _flatten([e.labels for e in examples])

    sources, members, sizes = [], [], []  # per batch: feature array ids, example ids
    for plan in plans:
        for batch in plan.batches:
            k = plan.variant[batch]
            sources.append(np.where(k == 0, batch, variant_base[batch] + k))
            members.append(batch)
            sizes.append(len(batch))
    sizes = np.array(sizes, np.int64)
    slices = (
        tf.RaggedTensor.from_row_lengths(np.concatenate(sources).astype(np.int64), sizes),
        tf.RaggedTensor.from_row_lengths(np.concatenate(members).astype(np.int64), sizes),
    )

    def gather(source: tf.Tensor, member: tf.Tensor) -> tuple[tf.RaggedTensor, tf.RaggedTensor]:
        """Batch of ids -> ragged features and labels."""
        begin = tf.gather(feature_starts, source)
        features = tf.gather(feature_rows, tf.ragged.range(begin, begin + tf.gather(feature_counts, source)))
        begin = tf.gather(label_starts, member)
        labels = tf.gather(label_rows, tf.ragged.range(begin, begin + tf.gather(label_counts, member)))
        return features, labels

    return tf.data.Dataset.from_tensor_slices(slices).map(gather)


def to_model_inputs(features: tf.RaggedTensor, labels: tf.RaggedTensor) -> tuple[dict, tf.Tensor]:
    """Ragged batch -> ({"features": zero-padded [B, T, F], "lengths": [B]}, labels [B, L] padded with -1).

    Dense values plus lengths are what Keras `fit` accepts under every tf.distribute strategy.
    """
    inputs = {"features": features.to_tensor(0.0), "lengths": tf.cast(features.row_lengths(), tf.int32)}
    return inputs, labels.to_tensor(-1)


def make_dataset(examples: Sequence[Example], plans: Sequence[EpochPlan]) -> tf.data.Dataset:
    """Model-ready batches (see to_model_inputs) of `plans`, prefetched."""
    return ragged_batches(examples, plans).map(to_model_inputs).prefetch(PREFETCH_BATCHES)
