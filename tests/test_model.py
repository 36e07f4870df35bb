import keras
import numpy as np
import pytest
import tensorflow as tf

from asr.data.options import AugmentOptions
from asr.data.text import Vocabulary
from asr.model.ctc import CTCModel, labels_to_sparse
from asr.model.metrics import ErrorRate, words_sparse
from asr.model.options import ModelOptions


def _model(augment: AugmentOptions | None = None, **options):
    keras.utils.set_random_seed(0)
    model = CTCModel(4, Vocabulary().characters, ModelOptions(**{"num_layers": 2, "units": 8, **options}), augment)
    model.build_for()
    return model


@pytest.mark.parametrize(
    "options",
    [
        {"bidirectional": False},
        {"bidirectional": True},
        {"stride": 3, "conv_layers": 2, "conv_channels": 6},
        {"bidirectional": False, "stride": 2, "lookahead": 2},
    ],
    ids=["lstm", "bilstm", "conv", "lookahead"],
)
def test_padding_does_not_change_the_real_frames(options):
    model = _model(**options)
    rng = np.random.default_rng(0)
    if model.lookahead is not None:  # weights on the steps ahead (it starts as the identity)
        model.lookahead.set_weights([rng.normal(size=model.lookahead.get_weights()[0].shape)])
    x = rng.normal(size=(1, 7, 4)).astype(np.float32)
    alone = model({"features": x, "lengths": np.array([7])}).numpy()
    padded = np.concatenate([x, np.full((1, 5, 4), 3.0, np.float32)], axis=1)
    batch = model({"features": padded, "lengths": np.array([7])}).numpy()
    steps = alone.shape[1]
    assert steps == model.output_lengths(np.array([7])).numpy()[0]
    np.testing.assert_allclose(batch[:, :steps], alone, atol=1e-5)


@pytest.mark.parametrize("lookahead", [0, 2])
def test_the_step_function_fed_a_stream_in_pieces_gives_the_whole_streams_logits(lookahead):
    model = _model(bidirectional=False, stride=2, lookahead=lookahead)
    rng = np.random.default_rng(1)
    if model.lookahead is not None:  # weights on the steps ahead (it starts as the identity)
        model.lookahead.set_weights([rng.normal(size=model.lookahead.get_weights()[0].shape)])
    x = rng.normal(size=(2, 23, 4)).astype(np.float32)  # two streams of 23 frames
    whole = model({"features": x, "lengths": np.array([23, 23])}).numpy()
    steps = model.stack_frames(x).numpy()  # [2, 12, 8]: 12 steps, the last one's second frame zeros
    states = np.zeros((2, 2, 2, 8), np.float32)  # [layers, (h, c), streams, units]
    tail, out = np.zeros((2, lookahead, 8), np.float32), []
    pieces = [(0, 5), (5, 5), (5, 6), (6, 12), (12, 12)]  # of 5, 0, 1 and 6 steps, then none (the stream's end)
    for index, (begin, end) in enumerate(pieces):
        if lookahead:
            final = np.float32(index == len(pieces) - 1)
            logits, states, tail = model.step(steps[:, begin:end], states, tail, final)
        else:
            logits, states = model.step(steps[:, begin:end], states)
        out.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(out, axis=1)[:, lookahead:], whole, atol=1e-5)
    # the traced function of one stream that the exports and the recognizer's streams run: the same rows
    traced = model.step_function()
    args = (steps[0], np.zeros((2, 2, 8), np.float32))
    args += (np.zeros((lookahead, 8), np.float32), np.float32(1.0)) if lookahead else ()
    np.testing.assert_allclose(traced(*args)[0].numpy()[lookahead:], whole[0], atol=1e-5)
    assert model.step_function() is traced  # traced once per model


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"bidirectional": True}, "a bidirectional model cannot run step by step"),
        (
            {"bidirectional": False, "conv_layers": 1, "stride": 2},
            "convolutional front-end .model.conv_layers. does not run step by step",
        ),
    ],
)
def test_a_model_that_cannot_run_step_by_step_says_why(options, message):
    model = _model(**options)
    with pytest.raises(ValueError, match=message):
        model.step_function()


def test_the_convolutional_front_end_moves_by_the_stride_and_replaces_the_stacking():
    model = _model(stride=3, conv_layers=2, conv_channels=6, conv_kernel=5)
    assert [v.path.split("/", 1)[1] for v in model.weights[:4]] == [
        "conv_0/kernel",
        "conv_0/bias",
        "conv_1/kernel",
        "conv_1/bias",
    ]
    assert model.convs[0].kernel.shape == (5, 4, 6) and model.convs[1].kernel.shape == (5, 6, 6)
    assert model.rnns[0].forward_layer.cell.kernel.shape == (6, 32)  # the LSTM sees the channels, not 3 x 4
    logits = model({"features": np.ones((2, 10, 4), np.float32), "lengths": np.array([10, 4])})
    assert logits.shape == (2, 4, 29)
    with pytest.raises(ValueError, match="conv_kernel .2. must be >= model.stride .3."):
        ModelOptions(stride=3, conv_layers=1, conv_kernel=2)


def test_stride_stacks_frames():
    model = _model(stride=3)
    logits = model({"features": np.zeros((2, 10, 4), np.float32), "lengths": np.array([10, 4])})
    assert logits.shape == (2, 4, 29)
    assert model.output_lengths(np.array([10, 4, 3])).numpy().tolist() == [4, 2, 1]


def test_labels_to_sparse_drops_padding():
    sparse = labels_to_sparse(tf.constant([[3, 1, -1], [2, -1, -1]]))
    assert sparse.indices.numpy().tolist() == [[0, 0], [0, 1], [1, 0]]
    assert sparse.values.numpy().tolist() == [3, 1, 2]


def test_error_rate_is_corpus_edit_distance_over_padded_batches():
    vocab = Vocabulary()
    refs, hyps = ["dark suit", "in greasy"], ["dark sit", "in  greasy wash"]

    def sparse(texts):  # raw ids, padded with -1 to the longest text
        width = max(len(t) for t in texts)
        ids = [[vocab.characters.index(c) for c in t] + [-1] * (width - len(t)) for t in texts]
        return labels_to_sparse(tf.constant(ids, tf.int64))

    ler, wer = ErrorRate("ler"), ErrorRate("wer")
    table = tf.constant([*vocab.characters, ""])
    ler.update_state(sparse(hyps), sparse(refs))  # one padded batch of two ...
    ler.update_state(sparse(hyps[:1]), sparse(refs[:1]))  # ... and one more batch: states are summed
    wer.update_state(words_sparse(sparse(hyps), table), words_sparse(sparse(refs), table))
    # by hand: "dark sit" vs "dark suit" 1 edit; "in  greasy wash" vs "in greasy" 6 edits (a space + " wash")
    assert float(ler.result()) == pytest.approx((1 + 6 + 1) / (9 + 9 + 9))
    # words: 1 substitution; 1 insertion (double space is not a word)
    assert float(wer.result()) == pytest.approx((1 + 1) / 4)
    ler.reset_state()
    assert float(ler.result()) == 0.0


def _training_batch() -> tuple[CTCModel, dict, np.ndarray]:
    """A compiled 2-layer model and one batch of two utterances (random features, labels padded with -1)."""
    model = _model()
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    rng = np.random.default_rng(0)
    x = {"features": rng.normal(size=(2, 20, 4)).astype(np.float32), "lengths": np.array([20, 12], np.int32)}
    return model, x, np.array([[1, 2, 3], [4, 5, -1]], np.int32)


@pytest.mark.slow  # 30 training steps
def test_train_step_reduces_ctc_loss_and_reports_metrics():
    model, x, y = _training_batch()
    first = model.train_on_batch(x, y, return_dict=True)
    for _ in range(30):
        last = model.train_on_batch(x, y, return_dict=True)
    assert set(first) == {"loss", "ler", "wer", "skipped_batches"}
    assert last["loss"] < first["loss"] / 2
    expected = tf.nn.ctc_loss(
        labels_to_sparse(tf.constant(y)),
        model(x),
        None,
        model.output_lengths(x["lengths"]),
        blank_index=28,
        logits_time_major=False,
    )
    evaluated = model.test_on_batch(x, y, return_dict=True)
    assert evaluated["loss"] == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-5)


@pytest.mark.slow  # training steps
def test_a_batch_with_a_non_finite_loss_is_skipped_counted_and_never_reaches_the_weights():
    model, x, y = _training_batch()
    assert model.train_on_batch(x, y, return_dict=True)["skipped_batches"] == 0.0
    weights = [v.numpy().copy() for v in model.trainable_variables]
    moments = [v.numpy().copy() for v in model.optimizer.variables]
    bad = {**x, "features": x["features"].copy()}
    bad["features"][1, 3, 2] = np.inf
    logs = model.train_on_batch(bad, y, return_dict=True)
    assert logs["skipped_batches"] == 1.0 and logs["loss"] == 0.0  # the skipped batch adds nothing to the loss
    for before, variable in zip(weights + moments, model.trainable_variables + model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(before, variable.numpy())  # weights, moments and step count untouched
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs["skipped_batches"] == 0.0 and np.isfinite(logs["loss"])
    assert not np.array_equal(weights[0], model.trainable_variables[0].numpy())  # a good batch trains again


@pytest.mark.slow  # traces training steps under a float16 policy
def test_mixed_precision_keeps_logits_and_loss_float32_and_scales_the_loss():
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = CTCModel(4, Vocabulary().characters, ModelOptions(num_layers=1, units=8))
        model.compile(optimizer=keras.optimizers.Adam(0.01), clipnorm=1.0)
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        rng = np.random.default_rng(0)
        inputs = {"features": rng.normal(size=(4, 20, 4)).astype(np.float32), "lengths": np.array([20, 18, 15, 9])}
        labels = np.array([[0, 1, 2], [3, 4, -1], [5, -1, -1], [6, 7, -1]], np.int32)
        assert model(inputs).dtype == "float32" and model.rnns[0].compute_dtype == "float16"
        losses = [float(model.train_on_batch(inputs, labels, return_dict=True)["loss"]) for _ in range(30)]
        assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # it learns: the scaling is undone
        assert all(v.dtype == "float32" for v in model.trainable_variables)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")


@pytest.mark.slow  # TensorFlow training steps
def test_intermediate_ctc_adds_the_lower_layers_ctc_through_the_shared_output_layer():
    model, x, y = _training_batch()
    model.intermediate_ctc(0.25)  # 2 layers: the middle one is layer 1
    assert model.intermediate_layer == 1
    objective, top, logits = model.training_loss(x, tf.constant(y))
    # dropout is 0 in _training_batch's model: training and inference outputs agree
    lower = model.logits(model.encode(x)[0])

    def ctc(scores):
        return float(tf.reduce_mean(model.per_example_loss(tf.constant(y), scores, x["lengths"])))

    assert float(top) == pytest.approx(ctc(model(x)), rel=1e-5)
    assert float(objective) == pytest.approx(0.75 * ctc(model(x)) + 0.25 * ctc(lower), rel=1e-5)
    np.testing.assert_allclose(logits, model(x), atol=1e-6)
    with pytest.raises(ValueError, match="intermediate_ctc_layer must name a layer below the top one .1 to 1., got 2"):
        model.intermediate_ctc(0.3, 2)
    with pytest.raises(ValueError, match=r"intermediate_ctc must be in \[0, 1\), got 1.0"):
        model.intermediate_ctc(1.0)


@pytest.mark.slow  # TensorFlow training steps or an optuna database
def test_spec_augment_zeroes_bands_within_their_limits_in_training_and_never_at_inference():
    masks = AugmentOptions(time_masks=2, time_mask_width=3, freq_masks=1, freq_mask_width=2)
    model = _model(augment=masks)
    lengths = np.array([20, 12, 8, 20])
    x = {"features": np.ones((4, 20, 4), np.float32), "lengths": lengths}
    seen_time = seen_freq = 0
    for _ in range(5):  # fresh draws each batch
        masked = model.augmented(x)["features"].numpy()
        for row, length in enumerate(lengths):
            frames = np.flatnonzero((masked[row] == 0).all(axis=1))  # time bands: every feature zero
            features = np.flatnonzero((masked[row] == 0).all(axis=0))  # feature bands: every frame zero
            assert len(frames) <= 2 * 3 and (frames < length).all()  # at most 2 bands of 3, inside the utterance
            assert len(features) <= 2
            seen_time, seen_freq = seen_time + len(frames), seen_freq + len(features)
            zero = masked[row] == 0
            assert zero.sum() == (np.isin(np.arange(20), frames)[:, None] | np.isin(np.arange(4), features)).sum()
    assert seen_time > 0 and seen_freq > 0  # the masks do something
    plain = _model()  # the same weights (same seed), no masks
    np.testing.assert_array_equal(model(x).numpy(), plain(x).numpy())  # inference (and validation) unmasked


@pytest.mark.slow  # TensorFlow training steps or an optuna database
def test_train_step_clips_each_gradient_to_clipnorm_after_the_loss():
    model, x, y = _training_batch()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), clipnorm=0.01)
    model.build_variables()
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.train_on_batch(x, y)
    after = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    moved = [np.linalg.norm(a - b) for a, b in zip(after, before, strict=True)]
    # SGD with a rate of 1 moves each variable by its gradient: none by more than the clip norm, and the CTC loss
    # of an untrained model has gradients far larger, so most moved by exactly that much
    assert max(moved) <= 0.01 + 1e-6
    assert sum(abs(m - 0.01) < 1e-5 for m in moved) >= len(moved) // 2
