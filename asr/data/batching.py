"""From examples to tf.data batches: per-epoch batch plans (length-bucketed, seeded) and ragged batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from asr.data.extraction import StoredFeatures
from asr.data.validation import Example

# Batches are formed inside pools of this many batches' worth of shuffled utterances, sorted by length:
# close lengths in a batch (little padding), yet a different mix every epoch.
POOL_BATCHES = 32
# Batches made ahead of the training step: gathering a batch is cheap, two hide it behind the step.
PREFETCH_BATCHES = 2


def batch_plan(
    lengths: Sequence[int],
    batch_size: int,
    rng: np.random.Generator | None,
    bucketing: bool = True,
    batch_frames: int | None = None,
) -> list[np.ndarray]:
    """Index batches covering every item exactly once: `batch_size` items each, or with `batch_frames` as
    many as fit in that many padded frames (items x the longest's frames; a longer item alone).

    With an rng: shuffled, then (bucketing) sorted by length within pools, and the batch order shuffled.
    Without: in length order (bucketing) or in the given order.
    """
    if batch_size < 1:
        raise ValueError(f"trainer.batch_size must be >= 1, got {batch_size}")
    if batch_frames is not None and batch_frames < 1:
        raise ValueError(f"trainer.batch_frames must be >= 1 or null, got {batch_frames}")
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    per_batch = batch_size
    if batch_frames is not None:  # the typical count: budget / median length
        per_batch = max(1, batch_frames // max(int(np.median(lengths)) if len(lengths) else 1, 1))
    pool = per_batch * POOL_BATCHES if rng is not None else len(order) or 1
    batches = []
    for begin in range(0, len(order), pool):
        group = order[begin : begin + pool]
        if bucketing:
            group = group[np.argsort(lengths[group], kind="stable")]
        if batch_frames is None:
            batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
        else:
            batches += _cut_by_frames(group, lengths, batch_frames)
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _cut_by_frames(order: np.ndarray, lengths: np.ndarray, budget: int) -> list[np.ndarray]:
    """`order` cut into consecutive batches whose items x longest item stay within `budget` frames."""
    batches, begin, longest = [], 0, 0
    for i, item in enumerate(order):
        longest = max(longest, int(lengths[item]))
        if i > begin and (i + 1 - begin) * longest > budget:
            batches.append(order[begin:i])
            begin, longest = i, int(lengths[item])
    if len(order):
        batches.append(order[begin:])
    return batches


def join_small(plan: list[np.ndarray], min_items: int) -> list[np.ndarray]:
    """`plan` with each batch of fewer than `min_items` items joined to the batch after it (the last to the one
    before): under a strategy of N replicas every batch must give each replica at least one utterance."""
    plan = list(plan)
    i = 0
    while i < len(plan) and len(plan) > 1:
        if len(plan[i]) >= min_items:
            i += 1
            continue
        other = i + 1 if i + 1 < len(plan) else i - 1
        low, high = sorted((i, other))
        plan[low : high + 1] = [np.concatenate([plan[low], plan[high]])]
        i = low
    return plan


def split_to_count(plan: list[np.ndarray], lengths: np.ndarray, count: int, min_items: int = 1) -> list[np.ndarray]:
    """`plan` with its costliest batches (items x longest) halved in place until it has `count` batches (no
    half smaller than `min_items`)."""
    plan = list(plan)
    while len(plan) < count:
        costs = [len(b) * lengths[b].max() if len(b) >= 2 * min_items else -1 for b in plan]
        widest = int(np.argmax(costs))  # the first of equals: deterministic
        if costs[widest] < 0:
            raise ValueError(f"cannot make {count} batches of {sum(len(b) for b in plan)} items")
        batch = plan[widest]
        plan[widest : widest + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
    return plan


def padding_share(lengths: Sequence[int], plan: Sequence[np.ndarray]) -> float:
    """Padded frames / real frames when the batches of `plan` are padded to their longest item."""
    lengths = np.asarray(lengths)
    padded = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in plan)
    return float(padded / max(sum(int(lengths[b].sum()) for b in plan), 1))


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch feeds the model: which examples form each batch, and which variant of each."""

    batches: list[np.ndarray]  # example indices, one array per batch
    variant: np.ndarray  # [N] 0 = the features, k = variants[k - 1]
    padding_share: float
    lengths: np.ndarray | None = None  # [N] frames of the variant each example plays this epoch


def weighted_members(groups: np.ndarray, weights: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """The example indices one epoch plays when group g (groups[i]: example i's) contributes round(weights[g] x
    its size) of them: every example floor(weight) times, plus the rest drawn without replacement."""
    members = []
    for group, weight in enumerate(weights):
        mine = np.flatnonzero(groups == group)
        whole, rest = divmod(round(weight * len(mine)), len(mine)) if len(mine) else (0, 0)
        members += [np.tile(mine, whole), np.sort(rng.choice(mine, rest, replace=False))]
    return np.concatenate(members).astype(np.int64) if members else np.zeros(0, np.int64)


def epoch_plan(
    examples: Sequence[Example],
    batch_size: int,
    seed: int | None,
    epoch: int,
    bucketing: bool,
    batch_frames: int | None = None,
    min_items: int = 1,
    groups: np.ndarray | None = None,
    weights: Sequence[float] = (),
) -> EpochPlan:
    """The batches of epoch `epoch` (0-based), a function of (seed, epoch) only; fixed order without a seed.
    Batches hold at least `min_items` utterances where the split has that many (see join_small). With
    `weights` (and a seed) the epoch plays each group of examples (`groups`: a group index per example) as
    weighted_members draws it; without, every example once."""
    if seed is None:
        variant = np.zeros(len(examples), np.int64)
        rng = None
    else:
        rng = np.random.default_rng([seed, epoch])
        variant = np.array([rng.integers(len(e.variants) + 1) if e.variants else 0 for e in examples], np.int64)
    lengths = np.array([len((e.features, *e.variants)[k]) for e, k in zip(examples, variant, strict=True)], np.int64)
    if weights and rng is not None:
        members = weighted_members(np.asarray(groups), weights, rng)
        plan = [members[b] for b in batch_plan(lengths[members], batch_size, rng, bucketing, batch_frames)]
    else:
        plan = batch_plan(lengths, batch_size, rng, bucketing, batch_frames)
    if min_items > 1:
        plan = join_small(plan, min_items)
    return EpochPlan(plan, variant, padding_share(lengths, plan), lengths)


def epoch_plans(
    examples: Sequence[Example],
    batch_size: int,
    seed: int | None,
    bucketing: bool = True,
    epochs: int = 1,
    batch_frames: int | None = None,
    min_items: int = 1,
    groups: np.ndarray | None = None,
    weights: Sequence[float] = (),
) -> list[EpochPlan]:
    """The plans of epochs 0 .. epochs - 1; without a seed, the one fixed-order epoch (`groups` and `weights`:
    see epoch_plan).

    With `batch_frames` the epochs' batch counts differ; Keras fits a fixed count of steps per epoch, so every
    epoch gets the largest count, the others by halving their costliest batches (see split_to_count).
    """
    if seed is None and epochs != 1:
        raise ValueError("a fixed-order (unseeded) dataset has exactly one epoch")
    plans = [
        epoch_plan(examples, batch_size, seed, epoch, bucketing, batch_frames, min_items, groups, weights)
        for epoch in range(epochs)
    ]
    count = max(len(p.batches) for p in plans)
    for i, p in enumerate(plans):
        if len(p.batches) < count:
            batches = split_to_count(p.batches, p.lengths, count, min_items)
            plans[i] = EpochPlan(batches, p.variant, padding_share(p.lengths, batches), p.lengths)
    return plans


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


def stored_batches(examples: Sequence[Example], plans: Sequence[EpochPlan]) -> tf.data.Dataset:
    """The batches of `plans` as model inputs (see to_model_inputs), read from the feature cache batch by
    batch: only the batches in flight are in memory, whatever the corpus size. Same values as
    ragged_batches + to_model_inputs on the same examples held in memory."""
    if not examples:
        raise ValueError("no examples to batch (every utterance of the split was rejected?)")
    members = [batch for plan in plans for batch in plan.batches]
    variants = [plan.variant for plan in plans for _ in plan.batches]
    num_features = examples[0].features.shape[1]

    def load(index: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Batch `index` -> zero-padded features [B, T, F], lengths [B], labels [B, L] padded with -1."""
        batch, variant = members[index], variants[index]
        sources = [(examples[i].features, *examples[i].variants)[k] for i, k in zip(batch, variant[batch], strict=True)]
        lengths = np.array([len(f) for f in sources], np.int32)
        features = np.zeros((len(batch), lengths.max(), num_features), np.float32)
        for row, source in enumerate(sources):
            if isinstance(source, StoredFeatures):
                source.read_into(features[row, : lengths[row]])
            else:
                features[row, : lengths[row]] = source
        labels = [examples[i].labels for i in batch]
        dense = np.full((len(batch), max(len(t) for t in labels)), -1, np.int32)
        for row, label in enumerate(labels):
            dense[row, : len(label)] = label
        return features, lengths, dense

    def as_inputs(index: tf.Tensor) -> tuple[dict, tf.Tensor]:
        features, lengths, labels = tf.numpy_function(load, [index], [tf.float32, tf.int32, tf.int32], stateful=False)
        features.set_shape([None, None, num_features])
        lengths.set_shape([None])
        labels.set_shape([None, None])
        return {"features": features, "lengths": lengths}, labels

    return tf.data.Dataset.range(len(members)).map(as_inputs)


def is_stored(examples: Sequence[Example]) -> bool:
    """Whether the examples' features are left in the feature cache (data.storage)."""
    return bool(examples) and isinstance(examples[0].features, StoredFeatures)


def make_dataset(examples: Sequence[Example], plans: Sequence[EpochPlan]) -> tf.data.Dataset:
    """Model-ready batches (see to_model_inputs) of `plans`, prefetched; read from the feature cache batch by
    batch when the examples are stored there."""
    if is_stored(examples):
        return stored_batches(examples, plans).prefetch(PREFETCH_BATCHES)
    return ragged_batches(examples, plans).map(to_model_inputs).prefetch(PREFETCH_BATCHES)
