import numpy as np
import pytest

from asr.data.text import Vocabulary, derive_characters, edit_distance, error_rates, normalize_text


def test_normalize_case_punctuation_spaces():
    v = Vocabulary()
    assert v.normalize("  She had your DARK suit,\tin greasy wash-water... all year. ") == (
        "she had your dark suit in greasy wash water all year"
    )
    assert v.normalize("Don’t café") == "don't café"  # accents stay unless folded
    assert Vocabulary(fold_accents=True).normalize("Don’t café") == "don't cafe"
    assert v.normalize("'Quoted' rock’n’roll, l'homme") == "quoted rock'n'roll l'homme"  # apostrophes inside words
    assert v.normalize("Route 66!") == "route 66"  # digits are kept: spelling them out is the user's choice
    assert Vocabulary(" ab-").normalize("a-b, b") == "a-b b"  # punctuation the vocabulary holds is kept


# (language, transcript as written, normalized)
LANGUAGES = [
    ("polish", "Zażółć gęślą jaźń!", "zażółć gęślą jaźń"),
    ("dutch", "Dat is het wrak. Één ëi, ïdee?", "dat is het wrak één ëi ïdee"),
    ("german", "Straße über Größe", "straße über größe"),
    ("russian", "Привет, мир! Ёлка", "привет мир ёлка"),
    ("greek", "Καλημέρα κόσμε, ΟΔΟΣ", "καλημέρα κόσμε οδος"),
]


@pytest.mark.parametrize(("language", "written", "normalized"), LANGUAGES, ids=[x[0] for x in LANGUAGES])
def test_every_script_survives_normalize_encode_decode(language, written, normalized):
    characters = derive_characters([written, written])  # seen in two utterances
    vocab = Vocabulary(characters)
    assert vocab.normalize(written) == normalized
    assert vocab.decode(vocab.encode(written)) == normalized
    assert set(characters) == set(normalized)


def test_decomposed_input_is_composed_first():
    decomposed = "Z\u0307o\u0301\u0142c\u0301"  # Żółć written with combining marks
    assert normalize_text(decomposed) == "żółć" and len(normalize_text(decomposed)) == 4


def test_folding_accents_is_an_option():
    assert normalize_text("Żółć ÉÉN naïve", fold=True) == "zołc een naive"  # ł has no decomposition: kept
    assert normalize_text("Żółć ÉÉN naïve") == "żółć één naïve"


def test_auto_characters_need_two_utterances_and_come_in_a_stable_order():
    texts = ["Één ei.", "Een ëi", "x's qy", "ee'n"]
    assert derive_characters(texts) == " 'ein"  # é (twice, but in one utterance), ë, x, q, y, s: once
    assert derive_characters(reversed(texts)) == derive_characters(texts)


def test_round_trip_and_blank():
    v = Vocabulary()
    ids = v.encode("it's a test")
    assert ids.dtype == np.int32
    assert v.decode(ids) == "it's a test"
    assert v.blank_index == 28 == v.num_classes - 1
    assert v.decode([*ids, v.blank_index]) == "it's a test"
    assert ids[0] == v.characters.index("i")


def test_custom_vocabulary_is_validated():
    assert Vocabulary(" ab").encode("ab, ba").tolist() == [1, 2, 0, 2, 1]
    with pytest.raises(ValueError, match="characters outside the vocabulary: 'c'"):
        Vocabulary(" ab").encode("ab ba c")
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
