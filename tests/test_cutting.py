import numpy as np
import pytest
import soundfile

from asr.inference.cutting import pieces, split_points


def _flags(pattern: str) -> np.ndarray:
    """'#' speech, '.' pause, one character per frame."""
    return np.array([c == "#" for c in pattern])


@pytest.mark.parametrize(
    ("pattern", "max_frames", "spans"),
    [
        ("####", 10, [(0, 4)]),  # short enough: one piece
        ("..####........####..", 12, [(1, 7), (13, 19)]),  # one piece per stretch, a frame of margin each side
        ("..####..####..", 12, [(1, 13)]),  # a pause under min_pause (3 frames) is inside a stretch
        ("..####...####.", 12, [(1, 7), (8, 14)]),  # margins meet in the middle of a pause
        ("#.....####.......", 12, [(0, 11)]),  # a stretch under min_speech (2 frames) joins its neighbour
        ("############", 5, [(0, 5), (5, 10), (10, 12)]),  # no pause: cut at the limit without energies
        (".....", 2, [(0, 2), (2, 4), (4, 5)]),  # nothing detected as speech: all of it, in pieces
    ],
)
def test_one_piece_per_stretch_of_speech_never_longer_than_the_limit(pattern, max_frames, spans):
    found = split_points(_flags(pattern), max_frames, min_pause=3, margins=(1, 1), min_speech=2)
    assert found == spans
    assert all(0 < b - a <= max_frames for a, b in found)


def test_a_stretch_over_the_limit_is_cut_at_its_quietest_frame():
    speech = _flags("#" * 20)
    energy = np.full(20, -20.0)
    energy[13] = -45.0  # within the second half of the first 16 frames
    energy[3] = -60.0  # quieter, but it would leave a piece of 4 frames
    assert split_points(speech, 16, energy, margins=(0, 0)) == [(0, 14), (14, 20)]


def test_margins_take_the_recordings_silence_but_no_digital_silence():
    speech = _flags("......####......")
    energy = np.full(16, -50.0)  # room noise around the speech
    energy[:4] = -100.0  # digital silence before the noise
    assert split_points(speech, 16, energy, margins=(4, 3), min_pause=3) == [(4, 13)]


def test_a_recording_with_three_tones_is_cut_between_them_with_the_margins_asked(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    voice = 0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2  # 1 s, voice-like pitch
    quiet = 0.00015 * np.random.default_rng(0).standard_normal(rate // 2)  # -76 dBFS: a quiet room
    audio = np.concatenate([quiet, voice, quiet, voice, quiet, voice, quiet]).astype(np.float32)
    soundfile.write(tmp_path / "long.flac", audio, rate)
    found = pieces(tmp_path / "long.flac", max_seconds=1.6, margins=(0.1, 0.1))
    assert len(found) == 3
    for piece, onset in zip(found, (0.5, 2.0, 3.5), strict=True):
        assert piece.end - piece.start <= 1.6
        assert onset - 0.25 <= piece.start <= onset and piece.end >= onset + 0.9  # the whole tone inside
    # no pause as long as 0.6 s: one stretch, over the limit, cut at its quietest frames: in the pauses
    joined = pieces(tmp_path / "long.flac", max_seconds=1.6, min_pause=0.6)
    assert all(p.end - p.start <= 1.6 for p in joined)
    assert all(1.5 <= a.end <= 2.0 or 3.0 <= a.end <= 3.5 for a in joined[:2])
    assert len(pieces(tmp_path / "long.flac", max_seconds=5.0, min_pause=0.6)) == 1  # no pause as long as that


def test_an_utterance_whose_silence_was_digital_keeps_it_and_spliced_digital_silence_is_left_out():
    # speech (-15 dBFS) right against digital silence (-100): the utterance's own silence, kept as its margins
    energy = np.array([-100.0] * 6 + [-15.0] * 4 + [-100.0] * 6)
    assert split_points(_flags("......####......"), 16, energy, margins=(3, 3), min_pause=3) == [(3, 13)]
    # room noise (-45 dBFS) that the detector took for speech before and after it: that is its silence, and the
    # digital silence beyond was spliced in
    energy = np.array([-100.0] * 3 + [-45.0] * 3 + [-15.0] * 4 + [-45.0] * 3 + [-100.0] * 3)
    assert split_points(_flags("...##########..."), 16, energy, margins=(3, 3), min_pause=3) == [(3, 13)]
