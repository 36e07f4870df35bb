"""The in-graph MFCC of the SavedModel against python_speech_features (asr.data.features)."""

import glob

import numpy as np
import pytest
from conftest import ROOT, sine

from asr.data import graph_features
from asr.data.audio import load_audio
from asr.data.features import FeatureOptions, extract

# Stated tolerance: normalized features (unit variance) agree to 1e-3 absolute. Measured here: about 1e-5
# (float32 in the graph against float64 in python_speech_features).
TOLERANCE = 1e-3


def _batch(signals):
    padded = np.zeros((len(signals), max(len(s) for s in signals)), np.float32)
    for i, s in enumerate(signals):
        padded[i, : len(s)] = s
    return padded, np.array([len(s) for s in signals], np.int32)


@pytest.mark.parametrize(
    "options",
    [
        FeatureOptions(sample_rate=8000, deltas=1),
        FeatureOptions(sample_rate=8000, deltas=2, normalize="none"),
        FeatureOptions(sample_rate=16000, normalize="utterance_scalar"),
        FeatureOptions(sample_rate=16000, append_energy=False, ceplifter=0, preemph=0.0),
        FeatureOptions(sample_rate=8000, normalize="both"),  # the per-utterance part; global stats come after
    ],
    ids=["deltas", "deltas2-raw", "scalar16k", "plain", "both"],
)
def test_graph_mfcc_matches_python_speech_features(options):
    files = sorted(glob.glob(str(ROOT / "data" / "wav" / "test" / "*.wav")))[:6]
    signals = [load_audio(f, options.sample_rate) for f in files]
    signals += [sine(options.sample_rate, seconds=0.3), sine(options.sample_rate, seconds=0.02)]  # 1 frame only
    expected = [extract(s, options) for s in signals]
    feats, counts = graph_features.features(*_batch(signals), options)
    feats, counts = feats.numpy(), counts.numpy()
    assert counts.tolist() == [len(e) for e in expected]
    scale = 1.0 if options.normalize != "none" else max(np.abs(e).max() for e in expected)
    for row, e in enumerate(expected):
        np.testing.assert_allclose(feats[row, : len(e)], e, atol=TOLERANCE * scale)
        assert not feats[row, len(e) :].any()  # padding frames are zero
