import warnings

import numpy as np
import pytest
from conftest import sine

from asr.data.features import (
    STD_FLOOR,
    FeatureOptions,
    apply_global_stats,
    compute_mfcc,
    extract,
    global_stats,
    normalize_utterance,
)


def test_shapes_and_frame_count():
    options = FeatureOptions(sample_rate=16000)
    feats = compute_mfcc(sine(16000, seconds=1.0), options)
    # python_speech_features: 1 + ceil((N - frame) / step) frames
    assert feats.shape == (1 + int(np.ceil((16000 - 400) / 160)), 13)
    assert feats.dtype == np.float32
    with_deltas = compute_mfcc(sine(16000, seconds=1.0), FeatureOptions(sample_rate=16000, deltas=2))
    assert with_deltas.shape == (feats.shape[0], 39)
    np.testing.assert_allclose(with_deltas[:, :13], feats, rtol=1e-5)


def test_nfft_follows_the_rate():
    assert FeatureOptions(sample_rate=8000).fft_size == 256
    assert FeatureOptions(sample_rate=16000).fft_size == 512
    assert FeatureOptions(sample_rate=44100).fft_size == 2048
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python_speech_features warns when it truncates frames
        compute_mfcc(sine(44100, seconds=0.2), FeatureOptions(sample_rate=44100))
    with pytest.raises(ValueError, match="nfft=512 is shorter than one frame"):
        FeatureOptions(sample_rate=44100, nfft=512)


def test_options_are_validated():
    with pytest.raises(ValueError, match="normalize"):
        FeatureOptions(normalize="global-ish")
    with pytest.raises(ValueError, match="deltas"):
        FeatureOptions(deltas=3)


def test_per_coefficient_normalization():
    rng = np.random.default_rng(0)
    feats = rng.normal(5.0, 3.0, size=(50, 4)) * np.array([1, 10, 100, 1000])
    out = normalize_utterance(feats, "utterance")
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, atol=1e-5)


def test_scalar_normalization_like_the_seed_article():
    feats = np.arange(12, dtype=np.float64).reshape(4, 3)
    out = normalize_utterance(feats, "utterance_scalar")
    np.testing.assert_allclose(out, (feats - feats.mean()) / feats.std(), rtol=1e-6)
    assert out.std(axis=0)[0] != pytest.approx(1.0)  # one scalar, not per coefficient


def test_constant_input_does_not_divide_by_zero():
    out = extract(np.zeros(8000, np.float32), FeatureOptions(sample_rate=8000))
    assert np.isfinite(out).all()


def test_global_stats_weigh_every_frame_of_every_utterance_once():
    # first coefficient 0, 2 | 4 | 6, 6, 6 (lengths 2, 1, 3): mean 24 / 6 = 4, variance (16 + 4 + 0 + 3 * 4) / 6;
    # a mean of the three utterance means would be (1 + 4 + 6) / 3 instead
    utterances = [np.array([[0.0, 1.0], [2.0, 1.0]]), np.array([[4.0, 1.0]]), np.full((3, 2), [6.0, 1.0])]
    mean, std = global_stats(utterances)
    np.testing.assert_allclose(mean, [4.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(std[0], np.sqrt(32 / 6), rtol=1e-6)
    assert std[1] == np.float32(STD_FLOOR)  # a constant coefficient is divided by the floor, not by zero
    normalized = apply_global_stats(utterances[2], (mean, std))
    np.testing.assert_allclose(normalized[0], [2 / np.sqrt(32 / 6), 0.0], rtol=1e-6)
