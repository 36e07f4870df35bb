import numpy as np

from asr.decoding import decode_batch
from asr.text import Vocabulary


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
