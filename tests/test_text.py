import math
import unicodedata

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

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


# Property-based tests (hypothesis; profile in conftest.py).

# Characters that stress normalization, mixed into random Unicode: apostrophe look-alikes, combining marks (alone
# and after letters), other spaces, letters that change length or script when lower-cased or folded (İ -> i̇,
# ŉ -> ʼn, ᴬ -> A, ℌ -> H, ﬁ -> fi), digits of other scripts, Hangul jamo, zero-width and control characters.
TRICKY = list("'\u2019\u2018\u02bc\u0060\u00b4 \t\n\u00a0\u2028\u3000\u0301\u0307\u0345e\u0130\u0149\u1d2c\u210c\ufb01")
TRICKY += list("\u00df\u1e9e\u03d3\u216b\u00b2\u0663\u1100\u1161\u11a8\u200b\u200d\x00-.")
# Characters with a compatibility decomposition (ﬁ, ², ᴬ, ℌ, full-width forms, ...), what folding rewrites.
COMPATIBILITY = [chr(c) for c in range(0x10000) if unicodedata.decomposition(chr(c)).startswith("<")]
texts = st.text(st.characters(), max_size=40) | st.text(st.sampled_from(TRICKY + COMPATIBILITY), max_size=12)


@given(text=texts, fold=st.booleans())
@example(text="\u0149 \u1d2c\u210c", fold=True)  # folding made upper case (ᴬ -> A) and an apostrophe (ŉ -> ʼn)
@example(text="Don\u00b4t", fold=True)
def test_normalized_text_is_nfc_lower_case_single_spaced_and_idempotent(text, fold):
    normalized = normalize_text(text, fold)
    assert isinstance(normalized, str)
    assert unicodedata.is_normalized("NFC", normalized)
    assert normalized == normalized.strip() and "  " not in normalized
    assert all(c == " " or not c.isspace() for c in normalized)  # every other space became " "
    assert normalized == normalized.lower()
    assert normalize_text(normalized, fold) == normalized
    assert normalize_text(unicodedata.normalize("NFD", text), fold) == normalized  # composed first


def test_folding_compatibility_forms_gives_lower_case_letters_and_apostrophes():
    # found by the property above: NFKD turns ᴬ and ℌ into capitals, ŉ into ʼn (an apostrophe look-alike)
    assert normalize_text("\u1d2c\u210c Don\u00b4t l\u0149 \ufb01ne", fold=True) == "ah don't l'n fine"


@given(corpus=st.lists(texts, min_size=1, max_size=5), other=texts, fold=st.booleans())
def test_a_derived_vocabulary_round_trips_its_texts_and_refuses_other_characters(corpus, other, fold):
    characters = derive_characters(corpus * 2, fold)  # every character in two utterances
    assert characters[0] == " " and len(set(characters)) == len(characters)
    vocab = Vocabulary(characters, fold_accents=fold)
    for text in corpus:
        normalized = normalize_text(text, fold)
        assert vocab.normalize(text) == normalized
        ids = vocab.encode(text)
        assert ids.dtype == np.int32 and ((ids >= 0) & (ids < vocab.size)).all()
        assert vocab.decode(ids) == normalized
    normalized = vocab.normalize(other)
    if set(normalized) <= set(characters):
        assert vocab.decode(vocab.encode(other)) == normalized
    else:
        with pytest.raises(ValueError, match="characters outside the vocabulary"):
            vocab.encode(other)


# Three sequences of one kind: strings over a small alphabet (so that they share characters), or word lists.
_letters = st.text("ab c", max_size=8)
_words = st.lists(st.sampled_from(["one", "two", "three"]), max_size=6)
sequence_triples = st.tuples(_letters, _letters, _letters) | st.tuples(_words, _words, _words)


@given(abc=sequence_triples)
def test_edit_distance_is_a_metric_bounded_by_the_lengths(abc):
    a, b, c = abc
    d = edit_distance(a, b)
    assert (d == 0) == (a == b) and edit_distance(a, a) == 0
    assert d == edit_distance(b, a)
    assert edit_distance(a, c) <= d + edit_distance(b, c)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert edit_distance(a, a[:0]) == len(a)


_transcripts = st.text(st.sampled_from("ab \t\u00e9\u0301"), max_size=12)


@given(pairs=st.lists(st.tuples(_transcripts, _transcripts), max_size=6))
def test_error_rates_are_finite_non_negative_and_zero_for_perfect_hypotheses(pairs):
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    rates = error_rates(refs, hyps)
    assert rates["n"] == len(refs)
    for key in ("ler", "wer", "utt_acc"):
        assert math.isfinite(rates[key]) and rates[key] >= 0
    assert rates["utt_acc"] <= 1
    perfect = error_rates(refs, refs)
    assert perfect["ler"] == perfect["wer"] == 0
    assert perfect["utt_acc"] == (1.0 if refs else 0.0)
    with pytest.raises(ValueError, match="references but"):
        error_rates(refs, [*hyps, "extra"])


def test_ctc_collapse_merges_repeats_drops_blanks_and_keeps_a_doubled_letter_apart():
    from asr.data.text import ctc_collapse

    blank = 3
    assert ctc_collapse([-1, 0, 0, 3, 0, 1, 1, 2, 3, 3, -1], blank) == [0, 0, 1, 2]
    assert ctc_collapse([], blank) == []
