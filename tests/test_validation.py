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


def _levels(tmp_path, name: str, samples: np.ndarray, rate: int = 8000):
    """A WAV of float samples, as 16-bit PCM."""
    return write_wav(tmp_path / f"{name}.wav", rate, (np.clip(samples, -1, 1) * 32767).astype(np.int16))


def test_silence_is_rejected_and_quiet_speech_is_kept(tmp_path):
    vocab, options = Vocabulary(), FeatureOptions(sample_rate=8000)
    quiet = _levels(tmp_path, "quiet", sine(8000, 1.0, amplitude=10 ** (-40 / 20)))  # peak -40 dBFS: like FSDD's
    zeros = _levels(tmp_path, "zeros", np.zeros(8000))
    hiss = _levels(tmp_path, "hiss", sine(8000, 1.0, amplitude=10 ** (-55 / 20)))  # peak -55 dBFS
    checked = prepare_all([Utterance(p, "one") for p in (quiet, zeros, hiss)], options, vocab)
    assert [e.key for e in checked.examples] == [str(quiet)]
    reasons = {r.key: (r.kind, r.reason) for r in checked.rejected}
    assert reasons[str(zeros)] == ("silent_audio", "digital silence (every sample is 0)")
    kind, reason = reasons[str(hiss)]
    assert kind == "silent_audio" and reason.startswith("near-silence (peak -55.0 dBFS") and "-50 dBFS" in reason


def test_clipping_and_an_odd_speaking_rate_are_warnings_and_the_files_are_used(tmp_path):
    vocab, options = Vocabulary(), FeatureOptions(sample_rate=8000)
    clipped = _levels(tmp_path, "clipped", np.clip(3 * sine(8000, 1.0), -1, 1))  # a third of the samples at full scale
    clean = _levels(tmp_path, "clean", sine(8000, 1.0))
    long = _levels(tmp_path, "long", sine(8000, 3.0))
    items = [Utterance(clipped, "one"), Utterance(long, "a"), Utterance(clean, "one two three four five six seven")]
    checked = prepare_all(items, options, vocab)
    assert len(checked.examples) == 3 and not checked.rejected
    found = [(w.key, w.kind) for w in checked.warnings]
    assert found == [(str(clipped), "clipping"), (str(long), "speaking_rate"), (str(clean), "speaking_rate")]
    assert "of the samples are clipped" in checked.warnings[0].reason
    assert "1 characters in 3.00 s (0.3 per second, outside 1-30)" in checked.warnings[1].reason
    assert "33 characters in 1.00 s (32.8 per second, outside 1-30)" in checked.warnings[2].reason


def test_conversions_are_counted_not_named(tmp_path):
    import soundfile

    vocab, options = Vocabulary(), FeatureOptions(sample_rate=8000)
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.stack([sine(16000, 1.0)] * 2, axis=1), 16000, subtype="FLOAT")
    plain = _levels(tmp_path, "plain", sine(8000, 1.0))
    checked = prepare_all([Utterance(stereo, "one"), Utterance(plain, "one")], options, vocab)
    assert len(checked.examples) == 2 and not checked.warnings
    assert checked.converted == {"channels": 1, "sample_rate": 1, "sample_format": 1}


@pytest.mark.parametrize(
    ("mode", "texts", "rejected", "warned"),
    [
        ("skip", ["one", "one 2"], ["unknown_characters"], []),
        ("drop", ["one", "one 2"], [], ["unknown_characters"]),
        ("drop", ["9"], ["empty_transcript"], []),  # nothing left after dropping
    ],
)
def test_unknown_characters_are_skipped_or_dropped_as_configured(tmp_path, mode, texts, rejected, warned):
    from asr.data.options import UnknownCharacters

    wav = _levels(tmp_path, "a", sine(8000, 1.0))
    checked = prepare_all(
        [Utterance(wav, t) for t in texts],
        FeatureOptions(sample_rate=8000),
        Vocabulary(),
        unknown=UnknownCharacters(mode),
    )
    assert [r.kind for r in checked.rejected] == rejected and [w.kind for w in checked.warnings] == warned
    if mode == "drop" and warned:
        assert [e.text for e in checked.examples] == ["one", "one"]
        assert (
            "characters outside the vocabulary: '2' in 'one 2': dropped, trained on 'one'" in checked.warnings[0].reason
        )


def test_unknown_characters_raise_names_the_utterance_and_the_characters(tmp_path):
    from asr.data.options import UnknownCharacters
    from asr.data.validation import UnknownCharactersError

    wav = _levels(tmp_path, "a", sine(8000, 1.0))
    with pytest.raises(
        UnknownCharactersError,
        match=r"a\.wav: characters outside the vocabulary: '2' in 'one 2' "
        r"\(data\.unknown_characters=raise",
    ):
        prepare_all(
            [Utterance(wav, "one 2")],
            FeatureOptions(sample_rate=8000),
            Vocabulary(),
            unknown=UnknownCharacters["raise"],
        )
