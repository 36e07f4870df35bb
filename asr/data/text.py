"""Vocabulary: text normalization, encoding to label ids and decoding back."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# Space, apostrophe and a-z: enough for English transcripts such as TIMIT's and the digits corpus.
DEFAULT_CHARACTERS = " 'abcdefghijklmnopqrstuvwxyz"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Vocabulary:
    """Characters the model can emit; label ids are positions in `characters`, the CTC blank comes last."""

    characters: str = DEFAULT_CHARACTERS

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
        """Lower-case, fold accents, map anything outside the vocabulary to a space, squeeze spaces."""
        text = text.replace("\u2019", "'")  # typographic apostrophe
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
        kept = "".join(c if c in self.characters else " " for c in text)
        return _SPACES.sub(" ", kept).strip()

    def unknown_characters(self, text: str) -> set[str]:
        """Characters of lower-cased `text` that the vocabulary lacks (punctuation and space excluded)."""
        return {c for c in text.lower() if c.isalnum() and c not in self.characters}

    def encode(self, text: str) -> np.ndarray:
        """Normalized text -> int32 label ids [L]."""
        lookup = {c: i for i, c in enumerate(self.characters)}
        return np.array([lookup[c] for c in self.normalize(text)], dtype=np.int32)

    def decode(self, ids: Iterable[int]) -> str:
        """Label ids -> text; blanks and out-of-range ids are dropped."""
        return "".join(self.characters[i] for i in ids if 0 <= i < len(self.characters))


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
