"""Text: normalization that keeps the language, the vocabulary (ids and back), and error rates."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Space, apostrophe and a-z: enough for English transcripts such as TIMIT's and the digits corpus.
DEFAULT_CHARACTERS = " 'abcdefghijklmnopqrstuvwxyz"
# data.characters=auto: the characters of the normalized training transcripts, each kept when it occurs in at
# least this many utterances (a character seen once is more likely a typo than part of the alphabet).
AUTO = "auto"
AUTO_MIN_UTTERANCES = 2
# Apostrophe look-alikes written for the apostrophe (typographic, modifier letter, grave and acute accents).
_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u0060\u00b4"})
_SPACES = re.compile(r"\s+")


def _is_word_character(c: str) -> bool:
    """Letters and marks of every script, and decimal digits."""
    category = unicodedata.category(c)
    return category[0] in "LM" or category == "Nd"


def fold_accents(text: str) -> str:
    """Text without combining marks: "żółć" -> "zołc" (letters without a decomposition, like ł, stay)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def normalize_text(text: str, fold: bool = False, keep: str = "") -> str:
    """Transcript -> the form the model learns: Unicode NFC, lower case, accents folded if `fold`; letters and
    marks of every script and digits kept, apostrophes kept inside words, the characters of `keep` kept; any
    other character (punctuation, symbols) becomes a space; spaces squeezed."""
    text = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).lower()).translate(_APOSTROPHES)
    if fold:  # compatibility forms fold to upper case (ᴬ -> A) and apostrophe look-alikes (ŉ -> ʼn): again
        text = fold_accents(text).lower().translate(_APOSTROPHES)
    out = []
    for i, c in enumerate(text):
        if c == "'":
            inside = 0 < i < len(text) - 1 and _is_word_character(text[i - 1]) and _is_word_character(text[i + 1])
            out.append(c if inside else " ")
        elif _is_word_character(c) or (c in keep and not c.isspace()):
            out.append(c)
        else:
            out.append(" ")
    return _SPACES.sub(" ", "".join(out)).strip()


def derive_characters(texts: Iterable[str], fold: bool = False, min_utterances: int = AUTO_MIN_UTTERANCES) -> str:
    """The vocabulary of a training split (data.characters=auto): every character of the normalized
    transcripts found in at least `min_utterances` of them; space first, then the apostrophe, then by code
    point."""
    counts = Counter(c for text in texts for c in set(normalize_text(text, fold)))
    found = {c for c, n in counts.items() if n >= min_utterances and c != " "}
    return " " + ("'" if "'" in found else "") + "".join(sorted(found - {"'"}))


@dataclass(frozen=True)
class Vocabulary:
    """Characters the model can emit; label ids are positions in `characters`, the CTC blank comes last."""

    characters: str = DEFAULT_CHARACTERS
    fold_accents: bool = False  # fold accents before matching (English presets: café -> cafe)

    def __post_init__(self) -> None:
        if not self.characters:
            raise ValueError("the vocabulary needs at least one character")
        if len(set(self.characters)) != len(self.characters):
            raise ValueError(f"vocabulary characters repeat: {self.characters!r}")
        if " " not in self.characters:
            raise ValueError("the vocabulary must contain the space character (it separates words)")

    @property
    def size(self) -> int:
        """Number of characters, without the blank."""
        return len(self.characters)

    @property
    def blank_index(self) -> int:
        """Id of the CTC blank: the last class, as TensorFlow's CTC ops expect by default."""
        return len(self.characters)

    @property
    def num_classes(self) -> int:
        """Width of the model's output: characters plus the blank."""
        return len(self.characters) + 1

    def normalize(self, text: str) -> str:
        """normalize_text, keeping also the punctuation this vocabulary holds (such as "-")."""
        return normalize_text(text, self.fold_accents, self.characters)

    def unknown_characters(self, text: str) -> set[str]:
        """Characters of the normalized `text` that the vocabulary lacks."""
        return {c for c in self.normalize(text) if c not in self.characters}

    def encode(self, text: str) -> np.ndarray:
        """Text -> int32 label ids [L] of its normalized form; ValueError if that holds characters outside the
        vocabulary (datasets are checked for those first)."""
        normalized = self.normalize(text)
        unknown = {c for c in normalized if c not in self.characters}
        if unknown:
            raise ValueError(f"characters outside the vocabulary: {''.join(sorted(unknown))!r} in {text!r}")
        lookup = {c: i for i, c in enumerate(self.characters)}
        return np.array([lookup[c] for c in normalized], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Label ids -> text; blanks and out-of-range ids are dropped."""
        return "".join(self.characters[i] for i in ids if 0 <= i < len(self.characters))


def ctc_collapse(path: Iterable[int], blank: int) -> list[int]:
    """CTC's reading of a path of classes per frame: repeats merged, blanks (and any id outside [0, blank),
    such as flashlight's -1 at a path's edges) dropped."""
    kept, previous = [], None
    for token in path:
        if token != previous and 0 <= token < blank:
            kept.append(int(token))
        previous = token
    return kept


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences (characters or words)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, float]:
    """Corpus LER, WER and exact-match share of normalized transcripts (sums of distances / sums of lengths)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    char_err = sum(edit_distance(h, r) for r, h in zip(refs, hyps, strict=True))
    word_err = sum(edit_distance(h.split(), r.split()) for r, h in zip(refs, hyps, strict=True))
    chars = sum(len(r) for r in refs)
    words = sum(len(r.split()) for r in refs)
    return {
        "ler": char_err / max(chars, 1),
        "wer": word_err / max(words, 1),
        "utt_acc": sum(r == h for r, h in zip(refs, hyps, strict=True)) / max(len(refs), 1),
        "n": len(refs),
    }
