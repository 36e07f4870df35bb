import numpy as np
import pytest
import soundfile

from asr.data.activity import (
    FRAME_SECONDS,
    edge_silence,
    file_activity,
    sample_evenly,
    signal_activity,
    silence_margins,
)

RATE = 16000


def voice(seconds: float) -> np.ndarray:
    """A voice-like tone (220 Hz, its loudness moving at 3 Hz) that the detector takes for speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    """Digital silence."""
    return np.zeros(int(seconds * RATE), np.float32)


def test_digital_silence_is_never_speech_and_the_silence_around_speech_is_measured():
    signal = np.concatenate([silence(0.3), voice(1.0), silence(0.6)])
    activity = signal_activity(signal, RATE)
    assert len(activity.speech) == int(len(signal) / RATE / FRAME_SECONDS)
    assert not activity.voiced[-18:].any()  # the zeros after the tone, whatever the detector's hangover says
    lead, trail = edge_silence(activity)
    assert lead == pytest.approx(0.3, abs=0.04) and trail == pytest.approx(0.6, abs=0.2)
    assert edge_silence(signal_activity(silence(1.0), RATE)) is None


def test_a_file_read_in_blocks_gives_what_its_samples_give(tmp_path):
    signal = np.concatenate([silence(0.5), voice(1.0), silence(0.5)])
    soundfile.write(tmp_path / "a.flac", signal, RATE)
    read = file_activity(tmp_path / "a.flac", block_seconds=0.37)  # blocks that end inside frames
    whole = signal_activity(soundfile.read(tmp_path / "a.flac", dtype="float32")[0], RATE)
    np.testing.assert_array_equal(read.speech, whole.speech)
    np.testing.assert_allclose(read.energy, whole.energy, atol=1e-6)


def test_the_margins_are_the_medians_of_the_utterances():
    signals = [(np.concatenate([silence(lead), voice(0.8), silence(0.2)]), RATE) for lead in (0.1, 0.4, 0.7)]
    lead, trail = silence_margins([*signals, (silence(1.0), RATE)])  # one without speech does not count
    assert lead == pytest.approx(0.4, abs=0.04) and trail <= 0.2
    assert silence_margins([(silence(1.0), RATE)]) is None


def test_utterances_are_sampled_evenly():
    assert sample_evenly(5, 10) == [0, 1, 2, 3, 4]
    assert sample_evenly(1000, 5) == [0, 250, 500, 749, 999]
