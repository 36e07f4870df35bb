from dataclasses import replace

import numpy as np
import pytest

from asr.data.text import Vocabulary
from asr.decoding import lm_search
from asr.decoding.hotwords import Hotword
from asr.decoding.lm import LanguageModelError, NgramLM
from asr.decoding.lm_search import (
    LMDecoder,
    LMWeights,
    _without_certain_blanks,
    check_text_files,
    estimate_character_lm,
    lm_tokens,
    read_extra_text,
    tune_weights,
    tune_word_weights,
)

CHARACTERS = " ackt"  # label ids 0-4, the blank is 5
BLANK = len(CHARACTERS)


def _frames(*rows: dict[str, float]) -> np.ndarray:
    """Log probabilities [T, C]: each row's named characters ("" is the blank) get their probability, the rest
    of the mass is spread over the other classes."""
    out = []
    for row in rows:
        probs = np.full(BLANK + 1, 0.0)
        for char, p in row.items():
            probs[BLANK if char == "" else CHARACTERS.index(char)] = p
        rest = [i for i in range(BLANK + 1) if probs[i] == 0]
        probs[rest] = (1.0 - probs.sum()) / len(rest)
        out.append(np.log(probs))
    return np.array(out)


def _greedy(log_probs: np.ndarray) -> str:
    ids = log_probs.argmax(1)
    kept = [i for n, i in enumerate(ids) if i != BLANK and (n == 0 or i != ids[n - 1])]
    return "".join(CHARACTERS[i] for i in kept).strip()


def test_lm_tokens_mark_spaces():
    assert lm_tokens("żó d") == "ż ó <sp> d"


def test_without_weight_the_search_finds_the_best_path_and_keeps_doubled_letters():
    # "tacc": a repeat needs a blank between (frames 3-5), a repeat without one merges (frames 0-1)
    log_probs = _frames({"t": 0.9}, {"t": 0.9}, {"a": 0.9}, {"c": 0.9}, {"": 0.9}, {"c": 0.9}, {" ": 0.9}, {"a": 0.9})
    decoder = LMDecoder(estimate_character_lm(["kat"], 3), LMWeights(alpha=0.0, beta=0.0), beam_width=8)
    assert decoder.decode(log_probs, CHARACTERS) == _greedy(log_probs) == "tacc a"


def test_the_language_model_settles_what_the_acoustics_leave_open():
    # c and k nearly tied in the first frame; the language model has only ever seen "kat"
    log_probs = _frames({"c": 0.48, "k": 0.44}, {"a": 0.9}, {"t": 0.9}, {"": 0.9})
    lm = estimate_character_lm(["kat", "kat tak", "tak kat"], 4)
    assert _greedy(log_probs) == "cat"
    assert LMDecoder(lm, LMWeights(alpha=0.0, beta=0.0)).decode(log_probs, CHARACTERS) == "cat"
    assert LMDecoder(lm, LMWeights(alpha=0.5, beta=0.0)).decode(log_probs, CHARACTERS) == "kat"


def test_the_bonus_per_character_favours_longer_transcripts_and_its_sign_matters():
    # the last frame leans to the blank (0.5) over a "k" (0.4): a bonus of 2 per character outweighs that
    log_probs = _frames({"c": 0.9}, {"a": 0.9}, {"t": 0.9}, {"": 0.5, "k": 0.4})
    lm = estimate_character_lm(["cat", "catk"], 3)
    assert _greedy(log_probs) == "cat"
    assert LMDecoder(lm, LMWeights(alpha=0.0, beta=0.0)).decode(log_probs, CHARACTERS) == "cat"
    assert LMDecoder(lm, LMWeights(alpha=0.0, beta=2.0)).decode(log_probs, CHARACTERS) == "catk"
    assert LMDecoder(lm, LMWeights(alpha=0.0, beta=-2.0)).decode(log_probs, CHARACTERS) == "cat"


def test_any_alphabet():
    characters = " дом"
    log_probs = np.log(
        np.array([[0.01, 0.9, 0.03, 0.03, 0.03], [0.01, 0.03, 0.9, 0.03, 0.03], [0.01, 0.03, 0.03, 0.9, 0.03]])
    )
    decoder = LMDecoder(estimate_character_lm(["дом", "дом дом"], 3))
    assert decoder.decode(log_probs, characters) == "дом"


def test_tuning_keeps_the_pair_with_the_lowest_error_and_reports_every_pair():
    lm = estimate_character_lm(["kat", "kat tak", "tak kat"], 4)
    log_probs = [_frames({"c": 0.48, "k": 0.44}, {"a": 0.9}, {"t": 0.9})]
    decoder, tried = tune_weights(LMDecoder(lm), log_probs, ["kat"], CHARACTERS, [0.0, 0.5], [0.0])
    assert decoder.weights == LMWeights(0.5, 0.0)
    assert [(t["alpha"], t["beta"]) for t in tried] == [(0.0, 0.0), (0.5, 0.0)]
    assert tried[0]["valid_ler"] == pytest.approx(1 / 3) and tried[1]["valid_ler"] == 0.0


def test_without_a_validation_split_the_first_pair_is_kept_untried():
    lm = estimate_character_lm(["kat"], 3)
    decoder, tried = tune_weights(LMDecoder(lm, beam_width=4), [], [], CHARACTERS, [0.3, 0.5], [1.0, 2.0])
    assert (decoder.weights, decoder.beam_width, tried) == (LMWeights(0.3, 1.0), 4, [{"alpha": 0.3, "beta": 1.0}])


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="LM weight must be >= 0"):
        LMWeights(alpha=-1.0)
    with pytest.raises(ValueError, match="beam width must be >= 1"):
        LMDecoder(estimate_character_lm(["a"], 2), beam_width=0)


def test_a_unigram_model_is_refused_by_name(capfd):
    log_probs = _frames({"k": 0.9}, {"a": 0.9})
    with pytest.raises(LanguageModelError, match="order 1: the beam search needs an order of at least 2"):
        LMDecoder(estimate_character_lm(["kat"], 1)).decode(log_probs, CHARACTERS)


def test_kenlm_reads_the_model_without_drawing_on_stderr(capfd):
    LMDecoder(estimate_character_lm(["kat"], 3)).decode(_frames({"k": 0.9}, {"a": 0.9}), CHARACTERS)
    assert capfd.readouterr().err == ""


def test_certain_blanks_are_skipped_but_keep_a_doubled_letter_apart():
    # "cc" needs the blank between its halves: of the three certain blank frames only the first stays
    log_probs = _frames({"c": 0.9}, {"": 0.9999}, {"": 0.9999}, {"": 0.9999}, {"c": 0.9}, {"a": 0.9})
    assert len(_without_certain_blanks(log_probs, BLANK)) == 4
    assert LMDecoder(estimate_character_lm(["kat"], 3), LMWeights(0.0, 0.0)).decode(log_probs, CHARACTERS) == "cca"


def test_hotwords_favour_whole_words_only():
    # "c"/"k" and "k"/"c" are near ties: the acoustics alone read "cat tac"
    log_probs = _frames(
        {"c": 0.48, "k": 0.44},
        {"a": 0.9},
        {"t": 0.9},
        {"": 0.9},
        {" ": 0.9},
        {"t": 0.9},
        {"a": 0.9},
        {"c": 0.5, "k": 0.4},
    )
    plain = LMDecoder(None, LMWeights(0.0, 0.0))
    assert plain.decode(log_probs, CHARACTERS) == "cat tac"
    assert replace(plain, hotwords=(Hotword("kat"),)).decode(log_probs, CHARACTERS) == "kat tac"
    assert replace(plain, hotwords=(Hotword("tak"),)).decode(log_probs, CHARACTERS) == "cat tak"
    # a hotword inside a word earns nothing: "at" would need a word to start at "a"
    assert replace(plain, hotwords=(Hotword("at"),)).decode(log_probs, CHARACTERS) == "cat tac"
    # with a language model that knows only "cat tac", a larger weight
    lm = estimate_character_lm(["cat tac"], 3)
    both = LMDecoder(lm, LMWeights(0.5, 1.0), hotwords=(Hotword("kat", 2.0), Hotword("tak", 2.0)))
    assert both.decode(log_probs, CHARACTERS) == "kat tak"


def test_extra_text_is_normalized_like_transcripts_and_foreign_words_are_left_out(tmp_path):
    (tmp_path / "a.txt").write_text("Kat, tak!\nde kat\n\nkat ωmega tak\n", encoding="utf-8")
    extra = read_extra_text([str(tmp_path / "a.txt")], Vocabulary(CHARACTERS))
    assert extra.sentences == ("kat tak", "kat", "kat tak")  # "de" holds a "d", "ωmega" an "ω"
    assert extra.report == {"files": 1, "lines": 4, "sentences": 3, "words_dropped": 2}
    check_text_files([str(tmp_path / "a.txt")])
    with pytest.raises(LanguageModelError, match="lm.text: .*b.txt does not exist"):
        check_text_files([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")])


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("kat\ncafé\n".encode("latin-1"))
    with pytest.raises(LanguageModelError, match=r"lm.text: .*latin1.txt:2: not UTF-8 .*; save the file as UTF-8"):
        read_extra_text([str(tmp_path / "latin1.txt")], Vocabulary(CHARACTERS))


def test_a_word_model_settles_what_the_letters_leave_open():
    # the second word is "kat" or "tak" by a hair; the word model has only seen "tak" after "kat"
    second = ({"k": 0.46, "t": 0.44}, {"a": 0.9}, {"t": 0.46, "k": 0.44})
    log_probs = _frames({"k": 0.9}, {"a": 0.9}, {"t": 0.9}, {" ": 0.9}, *second)
    letters = estimate_character_lm(["kat", "tak"], 3)
    plain = LMDecoder(letters, LMWeights(0.5, 1.0))
    assert plain.decode(log_probs, CHARACTERS) == "kat kat"
    words = NgramLM.estimate(["kat tak"] * 3, 2)
    with_words = LMDecoder(letters, LMWeights(0.5, 1.0, word=1.0), words=words)
    assert with_words.decode(log_probs, CHARACTERS) == "kat tak"
    assert replace(with_words, weights=LMWeights(0.5, 1.0, word=0.0)).decode(log_probs, CHARACTERS) == "kat kat"
    # tuning tries the word weights on top of the character pair, a weight of 0 once
    tuned, tried = tune_word_weights(with_words, [log_probs], ["kat tak"], CHARACTERS, (0.0, 1.0), (0.0, 3.0))
    assert tuned.weights == LMWeights(0.5, 1.0, word=1.0, unknown=0.0)
    assert [(t["alpha"], t["beta"], t.get("word"), t.get("unknown")) for t in tried] == [
        (0.5, 1.0, None, None),
        (0.5, 1.0, 1.0, 0.0),
        (0.5, 1.0, 1.0, 3.0),
    ]


def _spelled(text: str, confusion: dict[str, str] | None = None) -> np.ndarray:
    """Frames spelling `text` with a blank after each character, each nearly certain (0.98); a character in
    `confusion` is a near tie with the character it maps to (0.46 against 0.44)."""
    rows = []
    for char in text:
        other = (confusion or {}).get(char)
        rows.append({char: 0.46, other: 0.44} if other else {char: 0.98})
        rows.append({"": 0.98})
    return _frames(*rows)


@pytest.mark.parametrize("phrase_first", [False, True])
def test_a_phrase_hotword_does_not_cancel_a_word_hotword_that_shares_its_prefix(phrase_first):
    # "tac" or "kac" by a hair: the word hotword "kac" should win, whether or not "kac tak" is also a hotword (its
    # bonus, 0.5 per character, too small to turn a nearly certain "c" into a "t")
    log_probs = _spelled("tac cat", {"t": "k"})
    plain = LMDecoder(None, LMWeights(0.0, 0.0))
    assert plain.decode(log_probs, CHARACTERS) == "tac cat"
    word = Hotword("kac")
    assert replace(plain, hotwords=(word,)).decode(log_probs, CHARACTERS) == "kac cat"
    phrase = Hotword("kac tak", 0.5)
    hotwords = (phrase, word) if phrase_first else (word, phrase)
    assert replace(plain, hotwords=hotwords).decode(log_probs, CHARACTERS) == "kac cat"
    # and at the transcript's end, after a space
    log_probs = _spelled("tac ", {"t": "k"})
    assert replace(plain, hotwords=hotwords).decode(log_probs, CHARACTERS) == "kac"


def test_a_phrase_hotword_still_needs_its_whole_phrase():
    # the phrase "kac tak" alone gives nothing to "kac" followed by another word
    log_probs = _spelled("tac cat", {"t": "k"})
    plain = LMDecoder(None, LMWeights(0.0, 0.0))
    phrase = Hotword("kac tak", 0.5)
    assert replace(plain, hotwords=(phrase,)).decode(log_probs, CHARACTERS) == "tac cat"
    # but the whole phrase is boosted
    log_probs = _spelled("tac tat", {"t": "k"})
    assert plain.decode(log_probs, CHARACTERS) == "tac tat"
    assert replace(plain, hotwords=(phrase,)).decode(log_probs, CHARACTERS) == "kac tak"


def test_a_word_that_starts_inside_an_abandoned_phrase_can_be_a_hotword():
    # the phrase "kac tak" is followed as far as "kac t", then left at a certain "c"; the word "tcc" began at
    # that "t" and decides the last letter's near tie
    log_probs = _spelled("kac tck", {"k": "c"})
    plain = LMDecoder(None, LMWeights(0.0, 0.0))
    assert plain.decode(log_probs, CHARACTERS) == "kac tck"
    hotwords = (Hotword("kac tak", 0.5), Hotword("tcc"))
    assert replace(plain, hotwords=hotwords).decode(log_probs, CHARACTERS) == "kac tcc"


def test_each_hotword_keeps_its_own_bonus_where_a_longer_one_shares_its_prefix():
    # "kac" (0.05 per character) is on the way to "kac tak" (0.5 per character): ending at "kac " it keeps its
    # own 0.15, not the phrase's 1.5, too little to outweigh a "k" read at 0.40 against a "t" at 0.50 (0.22)
    log_probs = _spelled("tac cat")
    log_probs[0] = _frames({"t": 0.5, "k": 0.4})[0]
    plain = LMDecoder(None, LMWeights(0.0, 0.0))
    for weight, expected in ((0.05, "tac cat"), (1.0, "kac cat")):
        hotwords = (Hotword("kac", weight), Hotword("kac tak", 0.5))
        assert replace(plain, hotwords=hotwords).decode(log_probs, CHARACTERS) == expected


def _rows() -> list[np.ndarray]:
    """Utterances of different lengths and transcripts (a longer one in the middle, so that any reordering by
    length shows)."""
    return [
        _spelled("kat"),
        _spelled("tac kat cat"),
        _spelled("ak"),
        _spelled("cat tak"),
        _spelled("t"),
    ]


@pytest.mark.parametrize("search", ["prefix", "flashlight"])
def test_decode_many_gives_each_row_its_decode_in_order(search):
    lm = estimate_character_lm(["kat", "tac kat cat", "cat tak"], 3)
    decoder = LMDecoder(lm, LMWeights(0.5, 1.0), search=search)
    rows = _rows()
    expected = ["kat", "tac kat cat", "ak", "cat tak", "t"]
    assert [decoder.decode(row, CHARACTERS) for row in rows] == expected
    assert decoder.decode_many(rows, CHARACTERS) == expected
    assert decoder.decode_many(rows[::-1], CHARACTERS) == expected[::-1]
    assert decoder.decode_many(iter(rows[:2]), CHARACTERS) == expected[:2]
    assert decoder.decode_many([], CHARACTERS) == []
    assert decoder.decode_many([rows[0], np.zeros((0, BLANK + 1)), rows[2]], CHARACTERS) == ["kat", "", "ak"]


def test_decode_many_takes_more_rows_than_a_group_in_order(monkeypatch):
    monkeypatch.setattr(lm_search, "SEARCH_GROUP", 2)
    lm = estimate_character_lm(["kat", "tac kat cat", "cat tak"], 3)
    rows = _rows() * 3
    expected = ["kat", "tac kat cat", "ak", "cat tak", "t"] * 3
    assert LMDecoder(lm, LMWeights(0.5, 1.0)).decode_many(rows, CHARACTERS) == expected


def test_decode_many_with_hotwords_and_a_word_model():
    letters = estimate_character_lm(["kat", "tak"], 3)
    decoder = LMDecoder(
        letters, LMWeights(0.5, 1.0, word=1.0), hotwords=(Hotword("kac"),), words=NgramLM.estimate(["kat tak"], 2)
    )
    rows = [*_rows(), _spelled("tac cat", {"t": "k"})]
    one = [decoder.decode(row, CHARACTERS) for row in rows]
    assert one[-1] == "kac cat"
    assert decoder.decode_many(rows, CHARACTERS) == one


def test_bad_search_settings_are_refused():
    lm = estimate_character_lm(["a"], 2)
    for settings, message in (
        ({"tokens_per_frame": 0}, "tokens per frame must be >= 1"),
        ({"beam_threshold": 0.0}, "the beam threshold > 0"),
        ({"skip_blank": 0.0}, r"skipped frames must be in \(0, 1\], got 0.0"),
        ({"skip_blank": 1.5}, r"skipped frames must be in \(0, 1\], got 1.5"),
        ({"search": "kenlm"}, "the search must be one of prefix, flashlight, got 'kenlm'"),
    ):
        with pytest.raises(ValueError, match=message):
            LMDecoder(lm, **settings)
