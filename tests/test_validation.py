import numpy as np
import pytest
from conftest import sine, write_wav

from asr.data.batching import epoch_plans, ragged_batches
from asr.data.datasets import Utterance
from asr.data.features import FeatureOptions
from asr.data.text import Vocabulary
from asr.data.validation import ctc_min_frames, prepare_all


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
    checked = prepare_all(items, options, vocab)
    examples, rejected = checked.examples, checked.rejected
    assert [e.text for e in examples] == ["hi"]
    kinds = {r.key: r.kind for r in rejected}
    reasons = {r.key: r.reason for r in rejected}
    assert kinds[str(short)] == "ctc_infeasible" and "CTC needs 5" in reasons[str(short)]
    assert kinds[str(broken)] == "unreadable_audio" and "not a readable audio file" in reasons[str(broken)]
    assert [r.kind for r in rejected if r.key == str(good)] == ["empty_transcript", "unknown_characters"]
    assert "characters outside the vocabulary: '6' in 'route 66'" in rejected[1].reason
    # frame stacking shrinks the output steps: 1 s = 99 frames -> 33 steps at stride 3
    rejected = prepare_all([Utterance(good, "a" * 20)], options, vocab, stride=3).rejected
    assert "33 output steps" in rejected[0].reason


def test_speed_variants_are_drawn_per_epoch(tmp_path):
    wav = write_wav(tmp_path / "a.wav", 8000, sine(8000, seconds=1.0))
    examples = prepare_all(
        [Utterance(wav, "a")], FeatureOptions(sample_rate=8000), Vocabulary(), speeds=[1.0, 0.8, 1.25]
    ).examples
    (example,) = examples
    assert [len(f) for f in (example.features, *example.variants)] == [99, 124, 79]  # slower -> longer

    def first_lengths(plans):
        return {b[0].row_lengths().numpy()[0] for b in ragged_batches(examples, plans)}

    assert first_lengths(epoch_plans(examples, 1, seed=0, epochs=30)) == {99, 124, 79}
    assert first_lengths(epoch_plans(examples, 1, seed=None)) == {99}
