import numpy as np
import pytest

from asr.data.text import Vocabulary, edit_distance, error_rates


def test_normalize_case_punctuation_spaces():
    v = Vocabulary()
    assert v.normalize("  She had your DARK suit,\tin greasy wash-water... all year. ") == (
        "she had your dark suit in greasy wash water all year"
    )
    assert v.normalize("Don’t café") == "don't cafe"


def test_round_trip_and_blank():
    v = Vocabulary()
    ids = v.encode("it's a test")
    assert ids.dtype == np.int32
    assert v.decode(ids) == "it's a test"
    assert v.blank_index == 28 == v.num_classes - 1
    assert v.decode([*ids, v.blank_index]) == "it's a test"
    assert ids[0] == v.characters.index("i")


def test_custom_vocabulary_is_validated():
    assert Vocabulary(" ab").encode("ab ba c").tolist() == [1, 2, 0, 2, 1]
    with pytest.raises(ValueError, match="space"):
        Vocabulary("abc")
    with pytest.raises(ValueError, match="repeat"):
        Vocabulary(" aab")


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
    assert edit_distance(["one", "two"], ["one", "three", "two"]) == 1


def test_error_rates_are_corpus_level():
    rates = error_rates(["ab", "abcdefghij"], ["a", "abcdefghij"])
    # corpus: 1 error over 12 characters, not the mean of 1/2 and 0/10
    assert rates["ler"] == pytest.approx(1 / 12)
    assert rates["wer"] == pytest.approx(1 / 2)
    assert rates["utt_acc"] == 0.5 and rates["n"] == 2
