import math

import pytest

from asr.decoding.lm import BOS, EOS, UNK, LanguageModelError, NgramLM

TEXTS = ["the cat sat", "the dog sat", "a cat ran", "the cat ran away", "dog"]


def _words(lm: NgramLM) -> list[str]:
    return sorted(lm.vocabulary) + [EOS, UNK]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_every_context_gives_a_distribution(order):
    lm = NgramLM.estimate(TEXTS, order)
    for context in [(BOS,), (BOS, "the"), ("the", "cat"), ("never", "seen"), ("cat",), ()]:
        total = sum(math.exp(lm.log_prob(context, w)) for w in _words(lm))
        assert total == pytest.approx(1.0, abs=1e-9), context


def test_seen_continuations_beat_unseen_ones_and_unknown_words_score_as_unk():
    lm = NgramLM.estimate(TEXTS, 3)
    assert lm.log_prob((BOS, "the"), "cat") > lm.log_prob((BOS, "the"), "dog") > lm.log_prob((BOS, "the"), "ran")
    assert lm.log_prob(("the",), "zebra") == lm.log_prob(("the",), UNK) < lm.log_prob(("the",), "away")
    assert lm.vocabulary == {"the", "cat", "sat", "dog", "a", "ran", "away"}


def test_an_arpa_round_trip_keeps_every_probability(tmp_path):
    lm = NgramLM.estimate(TEXTS, 3)
    lm.write_arpa(tmp_path / "lm.arpa")
    text = (tmp_path / "lm.arpa").read_text(encoding="utf-8")
    assert "\\data\\\nngram 1=10\nngram 2=14\nngram 3=13\n" in text and text.rstrip().endswith("\\end\\")
    again = NgramLM.read_arpa(tmp_path / "lm.arpa")
    assert again.order == 3 and again.vocabulary == lm.vocabulary
    for context in [(BOS,), (BOS, "the"), ("the", "cat"), ("dog", "ran")]:
        for word in _words(lm):
            assert again.log_prob(context, word) == pytest.approx(lm.log_prob(context, word), abs=1e-5)


def test_unicode_tokens_survive_the_arpa_file(tmp_path):
    lm = NgramLM.estimate(["ż ó ł ć", "д о м"], 2)
    lm.write_arpa(tmp_path / "lm.arpa")
    assert NgramLM.read_arpa(tmp_path / "lm.arpa").vocabulary == {"ż", "ó", "ł", "ć", "д", "о", "м"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "no n-grams found"),
        ("\\data\\\nngram 1=2\n\n\\1-grams:\n-0.5\ta\n\\end\\\n", "declares 2 1-grams, the file lists 1"),
        ("\\data\\\nngram 1=1\n\n\\1-grams:\nhalf\ta\n\\end\\\n", ":5: not a number"),
        ("\\data\\\nngram 2=1\n\n\\2-grams:\n-0.5\ta\n\\end\\\n", ":5: not an ARPA n-gram line"),
    ],
)
def test_a_broken_arpa_file_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "lm.arpa"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LanguageModelError, match=message) as caught:
        NgramLM.read_arpa(path)
    assert str(path) in str(caught.value)


def test_no_text_and_a_bad_order_are_refused():
    with pytest.raises(ValueError, match="no text"):
        NgramLM.estimate([], 3)
    with pytest.raises(ValueError, match="order must be >= 1"):
        NgramLM.estimate(TEXTS, 0)
