import pytest

from asr.data.text import Vocabulary
from asr.decoding.hotwords import (
    DEFAULT_WEIGHT,
    Hotword,
    HotwordError,
    build_trie,
    hotwords_in,
    parse_hotword,
    read_hotwords,
)


def test_a_file_of_words_and_phrases_with_optional_weights(tmp_path):
    path = tmp_path / "hot.txt"
    path.write_text("# names\nSilver\n\nKapitein  Zwart:3.5\nl'ami:1\n", encoding="utf-8")
    found = read_hotwords(path, Vocabulary(" abcdefghijklmnopqrstuvwxyz'"))
    assert found == (Hotword("silver", DEFAULT_WEIGHT), Hotword("kapitein zwart", 3.5), Hotword("l'ami", 1.0))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("silver:heel", "hot.txt:2: 'heel' is not a number; write 'word' or 'word:2.5'"),
        ("silver:-1", "hot.txt:2: the weight must be > 0, got -1"),
        ("ωmega", "hot.txt:2: characters the model cannot write: 'ω' in 'ωmega'; use the model's alphabet"),
        ("!!!", "hot.txt:2: no word in '!!!'"),
    ],
)
def test_an_unusable_line_is_named(tmp_path, text, message):
    path = tmp_path / "hot.txt"
    path.write_text(f"goud\n{text}\n", encoding="utf-8")
    with pytest.raises(HotwordError) as caught:
        read_hotwords(path, Vocabulary())
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("Bob van Dijk:nan", "hotword 'Bob van Dijk:nan': the weight must be > 0, got nan"),
        ("Ünï", "hotword 'Ünï': characters the model cannot write: 'ïü' in 'Ünï'; use the model's alphabet"),
        ("zed:x", "hotword 'zed:x': 'x' is not a number; write 'word' or 'word:2.5'"),
    ],
)
def test_an_entry_of_a_list_is_checked_as_a_line_of_a_file_is(entry, message):
    assert parse_hotword(" Bob  van Dijk:2 ", Vocabulary(), "hotword") == Hotword("bob van dijk", 2.0)
    with pytest.raises(HotwordError) as caught:
        parse_hotword(entry, Vocabulary(), f"hotword {entry!r}")
    assert str(caught.value) == message


def test_an_empty_or_unreadable_file_is_named(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(HotwordError, match="empty.txt: no hotwords"):
        read_hotwords(tmp_path / "empty.txt", Vocabulary())
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(HotwordError, match="latin1.txt: cannot read the hotwords"):
        read_hotwords(tmp_path / "latin1.txt", Vocabulary())


def test_the_trie_keeps_the_best_weight_of_a_shared_prefix_and_marks_ends():
    root = build_trie([Hotword("ka", 1.0), Hotword("kat", 3.0)])
    k = root.children["k"]
    assert (k.weight, k.complete) == (3.0, False)
    assert k.children["a"].complete and k.children["a"].children["t"].complete
    # each complete node holds its own hotword's whole bonus, not the best weight that passes through it
    assert (k.children["a"].bonus, k.children["a"].children["t"].bonus, k.bonus) == (2.0, 9.0, 0.0)


def test_hotwords_found_are_whole_words():
    hotwords = [Hotword("kat"), Hotword("new york"), Hotword("at")]
    assert hotwords_in("de kat in new york", hotwords) == ["kat", "new york"]
