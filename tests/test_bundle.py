import json
from dataclasses import replace

import numpy as np
import pytest

from asr.data.features import FeatureOptions, extract
from asr.data.text import Vocabulary
from asr.decoding.lm import NgramLM
from asr.decoding.lm_search import LMDecoder, LMWeights, estimate_character_lm
from asr.inference.bundle import (
    BUNDLE_FILE,
    DEFAULT_MAX_SECONDS,
    LM_FILE,
    WORDS_FILE,
    BundleError,
    load_bundle,
    save_bundle,
)
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions


@pytest.fixture(scope="module")
def built() -> CTCModel:
    """A small model with its weights created (shared: the tests only read it)."""
    options = ModelOptions(num_layers=1, units=8, stride=2)
    model = CTCModel(FeatureOptions(deltas=1).num_features, Vocabulary().characters, options)
    model.build_for()
    return model


@pytest.fixture
def saved(tmp_path, built):
    save_bundle(tmp_path / "run" / "model", built, FeatureOptions(sample_rate=8000, deltas=1), Vocabulary())
    return built, tmp_path / "run"


def test_round_trip_gives_identical_logits(saved):
    model, run_dir = saved
    bundle = load_bundle(run_dir)  # a run dir works as well as its model/
    assert bundle.features == FeatureOptions(sample_rate=8000, deltas=1)
    assert bundle.model.stride == 2
    x = {"features": np.random.default_rng(0).normal(size=(2, 9, 26)).astype(np.float32), "lengths": np.array([9, 5])}
    np.testing.assert_array_equal(bundle.model(x).numpy(), model(x).numpy())


def test_a_model_with_a_convolutional_front_end_round_trips(tmp_path):
    options = ModelOptions(num_layers=1, units=8, stride=3, conv_layers=2, conv_channels=6, conv_kernel=4)
    model = CTCModel(FeatureOptions(deltas=1).num_features, Vocabulary().characters, options)
    model.build_for()
    save_bundle(tmp_path, model, FeatureOptions(deltas=1), Vocabulary())
    bundle = load_bundle(tmp_path)
    assert bundle.model.options == options and len(bundle.model.convs) == 2
    x = {"features": np.random.default_rng(1).normal(size=(2, 11, 26)).astype(np.float32), "lengths": np.array([11, 4])}
    np.testing.assert_array_equal(bundle.model(x).numpy(), model(x).numpy())


def test_the_longest_training_utterance_and_a_unicode_vocabulary_travel_with_the_bundle(tmp_path):
    vocab = Vocabulary(" abcdefghijklmnopqrstuvwxyzéëï")  # as data.characters=auto found them
    model = CTCModel(26, vocab.characters, ModelOptions(num_layers=1, units=8, stride=2))
    model.build_for()
    save_bundle(tmp_path, model, FeatureOptions(deltas=1), vocab, max_seconds=7.25, margins=(0.09, 0.45))
    assert "éëï" in (tmp_path / BUNDLE_FILE).read_text(encoding="utf-8")  # stored as text, not \u escapes
    bundle = load_bundle(tmp_path)
    assert bundle.vocab == vocab and bundle.max_seconds == 7.25 and not bundle.vocab.fold_accents
    assert bundle.margins == (0.09, 0.45)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(tmp_path)


def _with(model: dict, **options) -> dict:
    """A bundle's model settings with some model options changed."""
    return {**model, "options": {**model["options"], **options}}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda spec: "{ not json", "unreadable bundle file"),
        (lambda spec: json.dumps({**spec, "format": "other"}), "not an asr bundle"),
        (lambda spec: json.dumps({**spec, "model": _with(spec["model"], units=9)}), "cannot load the weights"),
        (lambda spec: json.dumps({**spec, "features": {**spec["features"], "deltas": 7}}), "invalid settings"),
        (lambda spec: json.dumps({**spec, "silence_margins": [0.1]}), "silence_margins must be two seconds >= 0"),
    ],
)
def test_tampered_bundle_fails_clearly(saved, edit, message):
    path = saved[1] / "model" / BUNDLE_FILE
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(BundleError, match=message):
        load_bundle(saved[1])


def test_global_normalization_travels_with_the_bundle(tmp_path):
    vocab, options = Vocabulary(), FeatureOptions(sample_rate=8000, normalize="both")
    model = CTCModel(options.num_features, vocab.characters, ModelOptions(num_layers=1, units=4))
    model.build_for()
    mean, std = np.linspace(-1, 1, 13).astype(np.float32), np.linspace(1, 2, 13).astype(np.float32)
    save_bundle(tmp_path, model, options, vocab, (mean, std))
    bundle = load_bundle(tmp_path)
    np.testing.assert_array_equal(bundle.cmvn[0], mean)
    signal = np.sin(np.arange(4000) / 7).astype(np.float32)
    raw = extract(signal, options)
    np.testing.assert_allclose(bundle.featurize(signal), (raw - mean) / std, rtol=1e-6)
    spec = json.loads((tmp_path / BUNDLE_FILE).read_text())
    (tmp_path / BUNDLE_FILE).write_text(json.dumps({**spec, "normalization": None}))
    with pytest.raises(BundleError, match="no normalization statistics"):
        load_bundle(tmp_path)


def test_saving_again_replaces_the_bundle_whole_and_leaves_no_temporary_folder(saved):
    model, run_dir = saved
    options, vocab = FeatureOptions(sample_rate=8000, deltas=1), Vocabulary()
    other = CTCModel(options.num_features, vocab.characters, ModelOptions(num_layers=1, units=8, stride=2), seed=5)
    other.build_for()
    save_bundle(run_dir / "model", other, options, vocab)  # e.g. a resumed run finishing
    assert sorted(p.name for p in run_dir.iterdir()) == ["model"]
    x = {"features": np.ones((1, 6, 26), np.float32), "lengths": np.array([6])}
    np.testing.assert_array_equal(load_bundle(run_dir).model(x).numpy(), other(x).numpy())
    assert not np.array_equal(other(x).numpy(), model(x).numpy())


def test_a_bundle_without_the_later_fields_loads_and_a_flat_model_field_is_refused_naming_the_file(saved):
    model, run_dir = saved
    path = run_dir / "model" / BUNDLE_FILE
    spec = json.loads(path.read_text())
    added_later = ("fold_accents", "max_seconds", "silence_margins")
    path.write_text(json.dumps({k: v for k, v in spec.items() if k not in added_later}))
    bundle = load_bundle(run_dir)
    assert bundle.max_seconds == DEFAULT_MAX_SECONDS and bundle.vocab.fold_accents  # as such bundles behaved
    assert bundle.margins is None  # long recordings then get the default margins
    x = {"features": np.ones((1, 6, 26), np.float32), "lengths": np.array([6])}
    np.testing.assert_array_equal(bundle.model(x).numpy(), model(x).numpy())
    # the flat model settings of bundles before options were grouped: every setting side by side
    flat = {"num_features": 26, "characters": spec["model"]["characters"], "seed": 0, "num_layers": 1, "units": 8}
    path.write_text(json.dumps({**spec, "model": flat}))
    with pytest.raises(BundleError, match=f"{path}: invalid settings .*lacks its options and augment groups"):
        load_bundle(run_dir)


def test_a_language_model_travels_with_the_bundle_and_a_missing_one_is_named(tmp_path, built):
    lm = estimate_character_lm(["the cat sat", "a cat ran"], 4)
    decoder = LMDecoder(lm, LMWeights(alpha=0.8, beta=2.0), beam_width=12)
    save_bundle(tmp_path, built, FeatureOptions(deltas=1), Vocabulary(), lm=decoder)
    loaded = load_bundle(tmp_path).lm
    assert (loaded.weights, loaded.beam_width, loaded.lm.order) == (LMWeights(0.8, 2.0), 12, 4)
    assert loaded.lm.log_prob(("c", "a"), "t") == pytest.approx(lm.log_prob(("c", "a"), "t"), abs=1e-5)
    assert load_bundle(tmp_path).lm is not None
    (tmp_path / LM_FILE).unlink()
    with pytest.raises(BundleError, match=f"{LM_FILE}: cannot read the language model.*--lm none"):
        load_bundle(tmp_path)


def test_a_word_model_travels_with_the_bundle_when_it_was_chosen(tmp_path, built):
    letters = estimate_character_lm(["the cat sat", "a cat ran"], 4)
    words = NgramLM.estimate(["the cat sat", "a cat ran"], 2)
    chosen = LMDecoder(letters, LMWeights(0.8, 2.0, word=0.2, unknown=3.0), words=words)
    save_bundle(tmp_path / "a", built, FeatureOptions(deltas=1), Vocabulary(), lm=chosen)
    loaded = load_bundle(tmp_path / "a").lm
    assert loaded.weights == LMWeights(0.8, 2.0, word=0.2, unknown=3.0) and loaded.words.order == 2
    assert loaded.words.vocabulary == {"the", "cat", "sat", "a", "ran"}
    # a word weight of 0 won the tuning: the bundle holds the character model alone
    save_bundle(tmp_path / "b", built, FeatureOptions(deltas=1), Vocabulary(), lm=replace(chosen, weights=LMWeights()))
    assert load_bundle(tmp_path / "b").lm.words is None and not (tmp_path / "b" / WORDS_FILE).exists()


def test_a_bundle_without_a_language_model_has_none(saved):
    assert load_bundle(saved[1]).lm is None
