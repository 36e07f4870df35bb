import numpy as np
import pytest

from asr.data.text import Vocabulary
from asr.decoding.ctc import (
    beam_sparse,
    ctc_align,
    decode_batch,
    greedy_sparse,
    log_softmax,
    nbest,
    sparse_to_lists,
    transcript_confidence,
    word_timestamps,
)


def _peaky(vocab, path):
    """Logits whose argmax per frame spells `path` ('_' = blank)."""
    logits = np.full((len(path), vocab.num_classes), -5.0, np.float32)
    for t, c in enumerate(path):
        logits[t, vocab.blank_index if c == "_" else vocab.characters.index(c)] = 5.0
    return logits


def test_greedy_merges_repeats_and_drops_blanks():
    vocab = Vocabulary()
    paths = ["hh_ee_ll_lo_", "o_oo  kk____"]
    logits = np.stack([_peaky(vocab, p) for p in paths])
    assert decode_batch(logits, np.array([12, 12]), vocab) == ["hello", "oo k"]
    assert decode_batch(logits, np.array([12, 4]), vocab) == ["hello", "oo"]  # true lengths are honoured


def test_beam_search_agrees_on_clear_logits():
    vocab = Vocabulary()
    logits = np.stack([_peaky(vocab, "dd_aa_rr_kk")])
    assert decode_batch(logits, np.array([11]), vocab, beam_width=8) == ["dark"]


def test_beam_width_1_equals_greedy():
    """On model-like logits (one clear winner per frame, plus noise) a one-path beam keeps the best path."""
    vocab = Vocabulary()
    rng = np.random.default_rng(0)
    paths = ["__hh_e_ll_lo__ww_o_rr_l_d___", "tt_e_s__tt____ss_uu_i_tt_e_"]
    logits = np.zeros((4, 30, vocab.num_classes), np.float32)
    for row in range(4):
        path = paths[row % 2]
        logits[row, : len(path)] = _peaky(vocab, path) + rng.normal(0, 1.0, size=(len(path), vocab.num_classes))
    lengths = np.array([28, 27, 12, 1])
    greedy = greedy_sparse(logits, lengths, vocab.blank_index)
    (beam,), _ = beam_sparse(logits, lengths, beam_width=1)
    assert sparse_to_lists(beam, 4) == sparse_to_lists(greedy, 4)
    assert any(sparse_to_lists(greedy, 4))


def test_crafted_logits_give_known_words_and_times():
    vocab = Vocabulary()
    path = "__oo_n_e___tt_w_o__"  # 19 frames of 30 ms
    log_probs = log_softmax(_peaky(vocab, path))
    (text,) = decode_batch(_peaky(vocab, path)[None], np.array([len(path)]), vocab)
    assert text == "onetwo"
    spaced = "__oo_n_e__ _tt_w_o__"
    text = decode_batch(_peaky(vocab, spaced)[None], np.array([len(spaced)]), vocab)[0]
    assert text == "one two"
    words = word_timestamps(text, log_softmax(_peaky(vocab, spaced)), vocab, seconds_per_frame=0.03)
    # "o" starts at frame 2, "e" ends at frame 7; "t" starts at frame 12, "o" ends at frame 17
    assert [{k: w[k] for k in ("word", "start", "end")} for w in words] == [
        {"word": "one", "start": 0.06, "end": 0.24},
        {"word": "two", "start": 0.36, "end": 0.54},
    ]
    assert all(0.99 < w["confidence"] <= 1.0 for w in words)  # every letter's spike is near certain
    assert ctc_align(log_probs, [vocab.characters.index(c) for c in "onetwo"], vocab.blank_index) == [
        (2, 3),
        (5, 5),
        (7, 7),
        (11, 12),
        (14, 14),
        (16, 16),
    ]


def test_nbest_is_sorted_and_led_by_the_beam_result():
    vocab = Vocabulary()
    logits = np.random.default_rng(1).normal(0, 1.5, size=(2, 12, vocab.num_classes)).astype(np.float32)
    lists = nbest(logits, np.array([12, 9]), vocab, beam_width=8, k=3)
    assert [len(x) for x in lists] == [3, 3]
    for row, candidates in enumerate(lists):
        scores = [c["score"] for c in candidates]
        assert scores == sorted(scores, reverse=True)
        assert len({c["text"] for c in candidates}) == 3
        assert candidates[0]["text"] == decode_batch(logits, np.array([12, 9]), vocab, beam_width=8)[row]


def test_utterance_log_probs_drop_the_padding_and_sum_to_one_per_frame():
    from asr.decoding.ctc import utterance_log_probs

    logits = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    rows = utterance_log_probs(logits, np.array([5, 3]))
    assert [r.shape for r in rows] == [(5, 4), (3, 4)]
    np.testing.assert_allclose(np.exp(rows[1]).sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(rows[1], utterance_log_probs(logits[1:, :3], [3])[0])  # padding plays no part


def test_a_doubtful_letter_lowers_its_words_confidence_and_only_that_words():
    vocab = Vocabulary()
    logits = _peaky(vocab, "__oo_n_e__ _tt_w_o__")
    logits[15, vocab.characters.index("w")] = 0.0  # "w" of "two": its frame now leans on no class
    logits[15, vocab.characters.index("v")] = 0.0
    log_probs = log_softmax(logits)
    one, two = word_timestamps("one two", log_probs, vocab, seconds_per_frame=0.03)
    peak_w = float(np.exp(log_probs[15, vocab.characters.index("w")]))
    peak_t, peak_o = (float(np.exp(log_probs[t, vocab.characters.index(c)])) for t, c in ((12, "t"), (17, "o")))
    assert one["confidence"] > 0.99 and peak_w < 0.5  # the mean of its letters' spikes
    assert two["confidence"] == pytest.approx((peak_t + peak_w + peak_o) / 3, abs=1e-4) and two["confidence"] < 0.85
    # the transcript's: its words' weighted by their letters; an empty one, how sure the model is of silence
    both = (3 * one["confidence"] + 3 * two["confidence"]) / 6
    assert transcript_confidence("one two", log_probs, vocab) == pytest.approx(both, abs=1e-4)
    silence = log_softmax(_peaky(vocab, "_____"))
    assert transcript_confidence("", silence, vocab) > 0.99
    assert transcript_confidence("", log_softmax(_peaky(vocab, "ooooo")), vocab) < 0.01
