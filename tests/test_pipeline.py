import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import sine, write_wav

from asr.data.batching import (
    Example,
    batch_plan,
    ctc_min_frames,
    epoch_plans,
    make_dataset,
    padding_share,
    prepare_all,
    ragged_batches,
)
from asr.data.datasets import Utterance
from asr.data.features import FeatureOptions
from asr.data.text import Vocabulary


@pytest.mark.parametrize(
    ("labels", "frames"),
    [([], 0), ([1], 1), ([1, 2, 3], 3), ([1, 1], 3), ([1, 1, 1], 5), ([1, 2, 2, 3, 3], 7)],
)
def test_ctc_min_frames_counts_repeats(labels, frames):
    assert ctc_min_frames(np.array(labels, dtype=np.int32)) == frames


def test_ctc_infeasible_and_bad_files_are_rejected_not_raised(tmp_path):
    vocab, options = Vocabulary(), FeatureOptions(sample_rate=8000)
    good = write_wav(tmp_path / "good.wav", 8000, sine(8000, seconds=1.0))
    short = write_wav(tmp_path / "short.wav", 8000, sine(8000, seconds=0.05))  # 4 frames
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"junk")
    items = [Utterance(good, "hi"), Utterance(short, "aaa"), Utterance(broken, "x"), Utterance(good, "?!")]
    items.append(Utterance(good, "route 66"))
    examples, rejected, _ = prepare_all(items, options, vocab)
    assert [e.text for e in examples] == ["hi"]
    kinds = {r.key: r.kind for r in rejected}
    reasons = {r.key: r.reason for r in rejected}
    assert kinds[str(short)] == "ctc_infeasible" and "CTC needs 5" in reasons[str(short)]
    assert kinds[str(broken)] == "unreadable_audio" and "not a readable WAV file" in reasons[str(broken)]
    assert [r.kind for r in rejected if r.key == str(good)] == ["empty_transcript", "unknown_characters"]
    assert "characters outside the vocabulary: '6' in 'route 66'" in rejected[1].reason
    # frame stacking shrinks the output steps: 1 s = 99 frames -> 33 steps at stride 3
    _, rejected, _ = prepare_all([Utterance(good, "a" * 20)], options, vocab, stride=3)
    assert "33 output steps" in rejected[0].reason


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


def test_speed_variants_are_drawn_per_epoch(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 8000, sine(8000, seconds=1.0))
    examples, _, _ = prepare_all(
        [Utterance(wav, "a")], FeatureOptions(sample_rate=8000), Vocabulary(), speeds=[1.0, 0.8, 1.25]
    )
    (example,) = examples
    assert [len(f) for f in (example.features, *example.variants)] == [99, 124, 79]  # slower -> longer

    def first_lengths(plans):
        return {b[0].row_lengths().numpy()[0] for b in ragged_batches(examples, plans)}

    assert first_lengths(epoch_plans(examples, 1, seed=0, epochs=30)) == {99, 124, 79}
    assert first_lengths(epoch_plans(examples, 1, seed=None)) == {99}
