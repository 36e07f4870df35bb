import numpy as np
import pytest
import soundfile

from asr.inference.chunking import FRAME_SECONDS, pieces, speech_frames, split_points


def _flags(pattern: str) -> np.ndarray:
    """'#' speech, '.' pause, one character per frame."""
    return np.array([c == "#" for c in pattern])


@pytest.mark.parametrize(
    ("pattern", "max_frames", "spans"),
    [
        ("####", 10, [(0, 4)]),  # short enough: one piece
        ("..####........####..", 12, [(0, 9), (11, 20)]),  # cut in a pause, the next from just before speech
        ("####.#####....####", 12, [(0, 11), (11, 18)]),  # no pause of 10 frames (0.3 s): the longest
        ("############", 5, [(0, 5), (5, 10), (10, 12)]),  # no pause: cut at the longest length
        ("...........##", 12, [(8, 13)]),  # leading silence is skipped (3 frames of lead kept)
        (".....", 2, [(0, 2), (2, 4), (4, 5)]),  # nothing detected as speech: all of it, in pieces
    ],
)
def test_pieces_end_in_pauses_and_never_exceed_the_limit(pattern, max_frames, spans):
    found = split_points(_flags(pattern), max_frames, lead=3, min_pause=10)
    assert found == spans
    assert all(0 < b - a <= max_frames for a, b in found)


def test_a_long_pause_wins_over_a_later_short_one():
    pattern = "#####" + "." * 12 + "####" + ".." + "####"  # 27 frames, limit 25
    (first, _), *_ = [split_points(_flags(pattern), 25, lead=3, min_pause=10)]
    assert first == (0, 11)  # the middle of the 12-frame pause, not the 2-frame gap


def test_a_recording_with_three_tones_is_cut_between_them(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    voice = 0.4 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2  # 1 s, voice-like pitch
    silence = np.zeros(rate // 2)
    audio = np.concatenate([silence, voice, silence, voice, silence, voice, silence]).astype(np.float32)
    soundfile.write(tmp_path / "long.flac", audio, rate)
    assert len(speech_frames(tmp_path / "long.flac")) == int(len(audio) / rate / FRAME_SECONDS)
    found = pieces(tmp_path / "long.flac", max_seconds=1.6)
    assert len(found) == 3
    for piece, onset in zip(found, (0.5, 2.0, 3.5), strict=True):
        assert piece.end - piece.start <= 1.6
        assert onset - 0.25 <= piece.start <= onset and piece.end >= onset + 0.9  # the whole tone inside
