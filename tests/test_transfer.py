"""Starting a run from a trained bundle: what is copied, what is new, frozen layers, and a bad source."""

import json
import shutil
from dataclasses import replace

import keras
import numpy as np
import pytest

from asr.data.features import FeatureOptions
from asr.data.options import DataOptions
from asr.data.text import Vocabulary
from asr.inference.bundle import BUNDLE_FILE, WEIGHTS_FILE, BundleError, load_bundle, save_bundle
from asr.model.ctc import CTCModel
from asr.model.options import ModelOptions
from asr.training.options import RunOptions, TrainerOptions
from asr.training.transfer import SourceError, adopt_source, initialize_from, read_source, source_rows

FEATURES = FeatureOptions(sample_rate=16000, numcep=5, nfilt=10, deltas=0)
MODEL = ModelOptions(num_layers=2, units=6, stride=2)


def _model(characters: str, seed: int, options: ModelOptions = MODEL) -> CTCModel:
    keras.utils.set_random_seed(seed)
    model = CTCModel(FEATURES.num_features, characters, options, seed=seed)
    model.build_for()
    return model


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A saved bundle of a small English-alphabet model with random weights, and the model."""
    model = _model(" abcde", seed=1)
    directory = save_bundle(tmp_path_factory.mktemp("base") / "model", model, FEATURES, Vocabulary(" abcde"))
    return directory, model


def _inputs(frames: int = 12) -> dict:
    x = np.random.default_rng(0).normal(size=(2, frames, FEATURES.num_features)).astype(np.float32)
    return {"features": x, "lengths": np.array([frames, frames - 4], np.int32)}


def test_each_character_takes_its_own_row_else_its_base_letters_else_a_fresh_one():
    rows, from_base = source_rows(" acčéx", " abce")
    assert rows == [0, 1, 3, 3, 4, None]
    assert from_base == {"č": "c", "é": "e"}


def test_the_lstm_stack_shared_rows_and_blank_are_copied_and_a_new_letter_starts_from_its_base(source):
    directory, base = source
    model = _model(" abéz", seed=7)  # a different alphabet; z and é are not in the base's
    fresh = model.logits.get_weights()
    copied = initialize_from(model, read_source(str(directory)))
    for mine, theirs in zip(model.rnns, base.rnns, strict=True):
        for a, b in zip(mine.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    (kernel, bias), (base_kernel, base_bias) = model.logits.get_weights(), base.logits.get_weights()
    for mine, theirs in ((" ", " "), ("a", "a"), ("b", "b"), ("é", "e")):
        i, j = model.characters.index(mine), base.characters.index(theirs)
        np.testing.assert_array_equal(kernel[:, i], base_kernel[:, j])
        assert bias[i] == base_bias[j]
    np.testing.assert_array_equal(kernel[:, -1], base_kernel[:, -1])  # the blank
    z = model.characters.index("z")
    np.testing.assert_array_equal(kernel[:, z], fresh[0][:, z])  # left as initialized
    assert copied["from_base"] == {"é": "e"} and copied["fresh"] == "z" and copied["shared"] == " ab"


def test_a_fine_tuned_model_on_the_same_alphabet_starts_with_the_sources_outputs(source):
    directory, base = source
    model = _model(" abcde", seed=3)
    assert not np.allclose(model(_inputs()).numpy(), base(_inputs()).numpy())
    initialize_from(model, read_source(str(directory)))
    np.testing.assert_array_equal(model(_inputs()).numpy(), base(_inputs()).numpy())


@pytest.mark.slow  # TensorFlow training steps or an optuna database
def test_frozen_layers_do_not_move_while_held_and_do_after(source):
    directory, _ = source
    model = _model(" abcde", seed=3)
    initialize_from(model, read_source(str(directory)))
    model.compile(optimizer=keras.optimizers.Adam(0.05), clipnorm=1.0)
    model.freeze_lowest(1)
    labels = np.array([[1, 2, 3], [4, 1, -1]], np.int32)

    def snapshot() -> list[list[np.ndarray]]:
        return [layer.get_weights() for layer in (model.rnns[0], model.rnns[1], model.logits)]

    def moved(before: list, after: list) -> list[bool]:
        pairs = zip(before, after, strict=True)
        return [any(not np.array_equal(a, b) for a, b in zip(x, y, strict=True)) for x, y in pairs]

    model.trainable_share.assign(0.0)
    before = snapshot()
    for _ in range(3):
        model.train_on_batch(_inputs(), labels)
    held = snapshot()
    assert moved(before, held) == [False, True, True]
    model.trainable_share.assign(1.0)
    model.train_on_batch(_inputs(), labels)
    assert moved(held, snapshot()) == [True, True, True]


def _options(tmp_path, **trainer) -> RunOptions:
    return RunOptions(DataOptions(root=str(tmp_path)), trainer=TrainerOptions(**trainer))


def test_a_run_takes_the_sources_features_and_model(source, tmp_path):
    directory, _ = source
    options, found = adopt_source(_options(tmp_path, init_from=str(directory.parent)))  # the run directory works
    assert (options.features, options.model) == (FEATURES, MODEL)
    assert found.directory == directory and len(found.sha256) == 64
    assert adopt_source(_options(tmp_path)) == (_options(tmp_path), None)
    with pytest.raises(SourceError, match="trainer.freeze_layers=3 but the model .* has 2 LSTM layers"):
        adopt_source(_options(tmp_path, init_from=str(directory), freeze_layers=3, freeze_epochs=1))


def test_a_streaming_run_refuses_a_bidirectional_source_and_takes_a_unidirectional_one(source, tmp_path):
    directory, _ = source
    streaming = replace(_options(tmp_path, init_from=str(directory)), model=ModelOptions(bidirectional=False))
    with pytest.raises(
        SourceError,
        match="model.bidirectional=false asks for a model that streams, but the model of "
        rf"trainer.init_from={directory} is bidirectional",
    ):
        adopt_source(streaming)
    unidirectional = replace(MODEL, bidirectional=False)
    model = _model(" abcde", seed=1, options=unidirectional)
    other = save_bundle(tmp_path / "uni" / "model", model, FEATURES, Vocabulary(" abcde"))
    adopted, _ = adopt_source(replace(streaming, trainer=TrainerOptions(init_from=str(other))))
    assert adopted.model == unidirectional


def test_a_streaming_run_named_to_a_shipped_base_starts_from_its_streaming_twin(source, tmp_path, monkeypatch):
    directory, _ = source
    models = tmp_path / "models"
    shutil.copytree(directory, models / "base")
    monkeypatch.setattr("asr.models.MODELS_DIR", models)
    monkeypatch.chdir(tmp_path)  # no folder named base here
    streaming = replace(_options(tmp_path, init_from="base"), model=ModelOptions(bidirectional=False))
    with pytest.raises(SourceError, match=r"is bidirectional .*\(trainer.init_from=base_streaming, the shipped"):
        adopt_source(streaming)  # no twin shipped
    unidirectional = replace(MODEL, bidirectional=False)
    save_bundle(
        models / "base_streaming", _model(" abcde", seed=2, options=unidirectional), FEATURES, Vocabulary(" abcde")
    )
    adopted, found = adopt_source(streaming)
    assert adopted.trainer.init_from == "base_streaming" and found.directory == models / "base_streaming"
    assert adopted.model == unidirectional
    assert adopt_source(adopted, found) == (adopted, found)  # the training loop's second look keeps the twin
    plain, found = adopt_source(_options(tmp_path, init_from="base"))  # a bidirectional run keeps the base
    assert plain.trainer.init_from == "base" and found.directory == models / "base" and plain.model == MODEL
    shutil.copytree(directory, tmp_path / "base")  # a bundle of that name in the working directory: the user's
    with pytest.raises(SourceError, match=r"trainer.init_from=base is bidirectional .*\(trainer.init_from=base_str"):
        adopt_source(streaming)  # not swapped for the shipped twin


def test_freezing_without_a_source_is_refused():
    with pytest.raises(ValueError, match="trainer.freeze_layers .* needs trainer.init_from"):
        TrainerOptions(freeze_layers=1, freeze_epochs=2)


def _copy_with(directory, tmp_path, **changes):
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    spec = json.loads((copy / BUNDLE_FILE).read_text())
    for key, value in changes.items():
        spec["features"][key] = value
    (copy / BUNDLE_FILE).write_text(json.dumps(spec))
    return copy


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d, t: t / "nowhere", "no such file or directory; pass trainer.init_from=<a training run"),
        (lambda d, t: t, "not a bundle (no bundle.json here or in model/)"),
        (lambda d, t: _copy_with(d, t, sample_rate=2000), "computed at 2000 Hz, a rate speech audio cannot be"),
        (lambda d, t: _copy_with(d, t, numcep=0), "has settings this asr cannot use"),
    ],
)
def test_a_bad_source_is_one_message_naming_the_key(source, tmp_path, make, message):
    with pytest.raises(SourceError, match="trainer.init_from=") as e:
        read_source(str(make(source[0], tmp_path)))
    assert message in str(e.value)


def test_another_source_changes_the_sha256(source, tmp_path):
    directory, _ = source
    copy = _copy_with(directory, tmp_path)
    spec = json.loads((copy / BUNDLE_FILE).read_text())
    (copy / BUNDLE_FILE).write_text(json.dumps({**spec, "note": "retrained"}))
    assert read_source(str(copy)).sha256 != read_source(str(directory)).sha256


def test_the_source_is_read_once_and_the_run_starts_from_the_weights_it_hashed(source, tmp_path):
    from asr.training.settings import run_settings
    from asr.training.transfer import bundle_sha256

    directory, base = source
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    found = read_source(str(copy))
    assert found.sha256 == bundle_sha256(copy)  # the hash of the files, as before they were read once
    options = _options(tmp_path, init_from=str(copy))
    other = _model(" abcde", seed=9)
    other.save_weights(copy / WEIGHTS_FILE)  # the files change (or go) after they were read: nothing reads them again
    (copy / BUNDLE_FILE).unlink()
    adopted, kept = adopt_source(options, found)
    assert kept is found and adopted.model == MODEL
    assert run_settings(adopted, found)["trainer"]["init_from"] == found.sha256
    model = _model(" abcde", seed=3)
    initialize_from(model, found)
    np.testing.assert_array_equal(model(_inputs()).numpy(), base(_inputs()).numpy())  # the weights that were hashed


def test_a_fine_tuned_run_keeps_its_own_dropout(source, tmp_path):
    directory, _ = source  # trained with model.dropout=0.0
    mine = RunOptions(
        DataOptions(root=str(tmp_path)),
        model=ModelOptions(num_layers=4, units=9, dropout=0.3),
        trainer=TrainerOptions(init_from=str(directory)),
    )
    options, _ = adopt_source(mine)
    assert options.model == replace(MODEL, dropout=0.3)  # the architecture is the source's, dropout the run's


def _with_file(directory, tmp_path, name: str, content: bytes, **spec_changes):
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    (copy / name).write_bytes(content)
    spec = json.loads((copy / BUNDLE_FILE).read_text())
    (copy / BUNDLE_FILE).write_text(json.dumps({**spec, **spec_changes}))
    return copy


def test_a_source_whose_language_model_is_damaged_still_gives_its_weights(source, tmp_path):
    directory, base = source
    language_model = {"file": "lm.arpa", "unit": "character", "order": 3, "alpha": 0.5, "beta": 1.0, "beam_width": 8}
    copy = _with_file(directory, tmp_path, "lm.arpa", b"\\data\\\nngram 1=garbage\n", language_model=language_model)
    with pytest.raises(BundleError, match="language_model"):  # the bundle does not load with its LM
        load_bundle(copy)
    _, found = adopt_source(_options(tmp_path, init_from=str(copy)))
    model = _model(" abcde", seed=3)
    initialize_from(model, found)  # the language model is not needed to start a run from the weights
    np.testing.assert_array_equal(model(_inputs()).numpy(), base(_inputs()).numpy())


def test_a_source_with_damaged_weights_is_refused_before_any_data_is_read(source, tmp_path):
    directory, _ = source
    weights = (directory / WEIGHTS_FILE).read_bytes()
    copy = _with_file(directory, tmp_path, WEIGHTS_FILE, weights[: len(weights) // 2])
    with pytest.raises(SourceError) as e:
        adopt_source(_options(tmp_path, init_from=str(copy)))  # what asr-train calls before preparing the data
    assert str(e.value).startswith(f"trainer.init_from={copy}: {copy / WEIGHTS_FILE}: cannot read the weights (")
    assert str(e.value).endswith("); copy the bundle again, or train the source run to its end")
