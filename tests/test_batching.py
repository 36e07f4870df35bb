import json

import numpy as np
import pytest
import tensorflow as tf

from asr.data.batching import batch_plan, epoch_plans, make_dataset, padding_share, ragged_batches
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
