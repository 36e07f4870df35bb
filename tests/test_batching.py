import json

import numpy as np
import pytest
import tensorflow as tf

from asr.data.batching import (
    batch_plan,
    epoch_plans,
    make_dataset,
    padding_share,
    ragged_batches,
    split_to_count,
)
from asr.data.validation import Example


def test_batch_plan_covers_everything_once_and_buckets_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 500, size=1000)
    for plan_rng in (np.random.default_rng(1), None):
        plan = batch_plan(lengths, 16, plan_rng)
        assert sorted(np.concatenate(plan).tolist()) == list(range(1000))
    bucketed = batch_plan(lengths, 16, np.random.default_rng(1), bucketing=True)
    plain = batch_plan(lengths, 16, np.random.default_rng(1), bucketing=False)

    assert padding_share(lengths, bucketed) < padding_share(lengths, plain) / 5
    assert padding_share([3, 3, 1], [np.array([0, 1]), np.array([2])]) == 0.0
    assert padding_share([3, 1], [np.array([0, 1])]) == 0.5


def _examples(n=10, features=3):
    rng = np.random.default_rng(0)
    return [
        Example(
            f"u{i}", "ab", rng.normal(size=(5 + i, features)).astype(np.float32), np.arange(1 + i % 3, dtype=np.int32)
        )
        for i in range(n)
    ]


def test_ragged_batches_and_model_inputs():
    examples = _examples()
    features, labels = next(iter(ragged_batches(examples, epoch_plans(examples, 4, seed=None))))
    assert isinstance(features, tf.RaggedTensor) and isinstance(labels, tf.RaggedTensor)
    assert features.shape.as_list() == [4, None, 3]
    assert features.row_lengths().numpy().tolist() == [5, 6, 7, 8]
    inputs, dense_labels = next(iter(make_dataset(examples, epoch_plans(examples, 4, seed=None))))
    assert inputs["lengths"].numpy().tolist() == [5, 6, 7, 8]
    assert inputs["features"].shape == (4, 8, 3)
    np.testing.assert_array_equal(inputs["features"][0, 5:].numpy(), 0.0)  # zero padding after the end
    np.testing.assert_array_equal(inputs["features"][0, :5].numpy(), examples[0].features)
    assert dense_labels.numpy().tolist()[:2] == [[0, -1, -1], [0, 1, -1]]


def test_epochs_reshuffle_reproducibly_from_the_seed():
    examples = _examples(40)
    plans = epoch_plans(examples, 4, seed=3, epochs=2)
    assert [len(p.batches) for p in plans] == [10, 10]
    finite = ragged_batches(examples, plans)
    assert int(finite.cardinality()) == 20 and len(list(finite)) == 20

    def lengths(dataset):
        return [b[0].row_lengths().numpy().tolist() for b in dataset]

    def epochs(seed):
        batches = lengths(ragged_batches(examples, epoch_plans(examples, 4, seed=seed, epochs=2)))
        return [batches[:10], batches[10:]]

    a, b = epochs(7), epochs(7)
    assert a == b
    assert a[0] != a[1]  # a new order each epoch
    assert epochs(8) != a
    # a run resumed at epoch 2 sees exactly the second epoch of an uninterrupted run
    assert lengths(ragged_batches(examples, epoch_plans(examples, 4, seed=7, epochs=2)[1:])) == a[1]
    with pytest.raises(ValueError, match="exactly one epoch"):
        epoch_plans(examples, 4, seed=None, epochs=2)
    assert json.dumps(sorted(sum(a[0], []))) == json.dumps(list(range(5, 45)))


def test_split_weights_set_each_splits_utterances_per_epoch():
    examples = _examples(50)
    groups = np.array([0] * 40 + [1] * 10)  # a large corpus and a small one
    plans = epoch_plans(examples, 4, seed=3, epochs=3, groups=groups, weights=(0.25, 2.5))
    played = [np.concatenate(p.batches) for p in plans]
    for members in played:
        counts = np.bincount(members, minlength=50)
        assert counts[:40].sum() == 10 and counts[:40].max() == 1  # a quarter, drawn without replacement
        assert counts[40:].sum() == 25 and set(counts[40:]) <= {2, 3}  # every one twice, half of them thrice
    assert len({tuple(np.sort(m[m < 40])) for m in played}) == 3  # another draw each epoch
    assert [len(p.batches) for p in plans] == [9, 9, 9]
    again = epoch_plans(examples, 4, seed=3, epochs=3, groups=groups, weights=(0.25, 2.5))
    pairs = [(a, b) for p, q in zip(plans, again, strict=True) for a, b in zip(p.batches, q.batches, strict=True)]
    assert all(np.array_equal(a, b) for a, b in pairs)
    unweighted = epoch_plans(examples, 4, seed=3, epochs=1)[0]  # no weights: every utterance once
    assert sorted(np.concatenate(unweighted.batches).tolist()) == list(range(50))


def test_frame_budget_batches_stay_within_the_budget_and_every_epoch_has_as_many():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(100, 2000, size=300), [5000]])  # 1-20 s sentences, one too long
    plan = batch_plan(lengths, 1, np.random.default_rng(1), batch_frames=8000)
    assert sorted(np.concatenate(plan).tolist()) == list(range(301))
    costs = [len(b) * lengths[b].max() for b in plan]
    assert max(c for b, c in zip(plan, costs, strict=True) if len(b) > 1) <= 8000
    assert [len(b) for b in plan if lengths[b].max() > 8000 // 2] == [1] * sum(lengths > 4000)
    assert {len(b) for b in plan} != {1}  # short ones share a batch
    assert padding_share(lengths, plan) < 0.15
    # a halved plan keeps every item, in the same order, and reaches the count asked
    halved = split_to_count(plan, lengths, len(plan) + 5)
    assert len(halved) == len(plan) + 5 and np.array_equal(np.concatenate(halved), np.concatenate(plan))

    examples = [
        Example(f"u{i}", "ab", np.zeros((n, 2), np.float32), np.arange(2, dtype=np.int32))
        for i, n in enumerate(lengths)
    ]
    plans = epoch_plans(examples, 1, seed=4, epochs=6, batch_frames=8000)
    assert len({len(p.batches) for p in plans}) == 1  # Keras fits a fixed count of steps per epoch
    again = epoch_plans(examples, 1, seed=4, epochs=6, batch_frames=8000)
    assert all(
        all(np.array_equal(a, b) for a, b in zip(p.batches, q.batches, strict=True))
        for p, q in zip(plans, again, strict=True)
    )  # a resumed run rebuilds exactly the same batches
    assert len(epoch_plans(examples, 1, seed=None, batch_frames=8000)[0].batches) < len(plans[0].batches) + 5


def test_batches_read_from_the_cache_equal_batches_held_in_memory(tmp_path):
    from dataclasses import replace

    from asr.data.extraction import StoredFeatures

    examples = _examples(12)
    stored = []
    for i, e in enumerate(examples):
        path = tmp_path / f"{i}.npy"
        np.save(path, e.features)
        variant = tmp_path / f"{i}v.npy"
        np.save(variant, e.features[:-1] * 2)
        stored.append(
            replace(
                e,
                features=StoredFeatures.of(path),
                variants=(StoredFeatures.of(variant),),
            )
        )
        examples[i] = replace(e, variants=(e.features[:-1] * 2,))
    cmvn = (np.array([0.5, -1.0, 0.0], np.float32), np.array([2.0, 0.5, 1.0], np.float32))
    normalized = [
        replace(
            e, features=(e.features - cmvn[0]) / cmvn[1], variants=tuple((v - cmvn[0]) / cmvn[1] for v in e.variants)
        )
        for e in examples
    ]
    stored_normalized = [
        replace(e, features=replace(e.features, cmvn=cmvn), variants=tuple(replace(v, cmvn=cmvn) for v in e.variants))
        for e in stored
    ]
    for memory, disk in ((examples, stored), (normalized, stored_normalized)):
        plans = epoch_plans(memory, 4, seed=2, epochs=2)
        a, b = list(make_dataset(memory, plans)), list(make_dataset(disk, plans))
        assert len(a) == len(b) == 6
        for (inputs_a, labels_a), (inputs_b, labels_b) in zip(a, b, strict=True):
            np.testing.assert_array_equal(inputs_a["features"].numpy(), inputs_b["features"].numpy())
            np.testing.assert_array_equal(inputs_a["lengths"].numpy(), inputs_b["lengths"].numpy())
            np.testing.assert_array_equal(labels_a.numpy(), labels_b.numpy())
        assert inputs_b["features"].dtype == tf.float32 and labels_b.dtype == tf.int32
