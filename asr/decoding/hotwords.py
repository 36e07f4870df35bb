"""Hotwords: words and phrases the beam search favours (names, terms), read from a file of the user's.

Each character of a hotword that a hypothesis spells out from a word's start earns a bonus (the best weight of the
hotwords it may still become); a hypothesis that leaves the hotword before its end gives the bonus back, but for
the whole bonus of the longest hotword it completed on the way ("new" within "new york"), so only whole hotwords
gain, each its own bonus (the scheme of pyctcdecode's hotword boosting, applied to characters).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from asr.data.text import Vocabulary
from asr.errors import UserError

# Bonus per character of a hotword (natural log, as the acoustic and language model scores; a line "word:weight"
# sets another). Measured on the 12 misspelled words of the first 40 demo test files, decoded by a weak demo
# model with each right word as the hotword: 1.0 puts 10 right and misreads 2 others as the hotword; 2.0 puts
# the same 10 right and misreads 4 (a bonus of 2 per letter outweighs dropping a letter read at 45 %).
DEFAULT_WEIGHT = 1.0


class HotwordError(UserError):
    """A hotwords file that cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Hotword:
    """A word or phrase (normalized like the transcripts) and its bonus per character."""

    text: str
    weight: float = DEFAULT_WEIGHT


@dataclass
class TrieNode:
    """A prefix of one or more hotwords: what may follow it, the bonus per character of its best hotword, whether
    a hotword ends here and, if so, that hotword's whole bonus (its weight times its length)."""

    children: dict[str, TrieNode] = field(default_factory=dict)
    weight: float = 0.0
    complete: bool = False
    bonus: float = 0.0


def build_trie(hotwords: Iterable[Hotword]) -> TrieNode:
    """The prefix tree of the hotwords' characters."""
    root = TrieNode()
    for hotword in hotwords:
        node = root
        for char in hotword.text:
            node = node.children.setdefault(char, TrieNode())
            node.weight = max(node.weight, hotword.weight)
        node.complete = True
        node.bonus = max(node.bonus, hotword.weight * len(hotword.text))
    return root


def read_hotwords(path: Path, vocab: Vocabulary) -> tuple[Hotword, ...]:
    """The hotwords of a UTF-8 file, one word or phrase per line with an optional ":weight"; blank lines and
    lines starting with # are skipped. HotwordError names the line of anything unusable."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HotwordError(f"{path}: cannot read the hotwords ({e}); pass a UTF-8 text file, a word per line") from e
    found = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if line and not line.startswith("#"):
            found.append(parse_hotword(line, vocab, f"{path}:{number}"))
    if not found:
        raise HotwordError(f"{path}: no hotwords; write one word or phrase per line")
    return tuple(found)


def parse_hotword(entry: str, vocab: Vocabulary, where: str) -> Hotword:
    """A hotword from "word or phrase" or "word or phrase:weight", normalized like the transcripts. HotwordError,
    starting with `where` (a file's line, or the entry), for a weight that is not a number > 0, no word, or a
    character the model cannot write."""
    text, weight = entry, DEFAULT_WEIGHT
    if ":" in entry:
        text, _, given = entry.rpartition(":")
        try:
            weight = float(given)
        except ValueError:
            raise HotwordError(f"{where}: {given!r} is not a number; write 'word' or 'word:2.5'") from None
        if not weight > 0:
            raise HotwordError(f"{where}: the weight must be > 0, got {weight:g}")
    normalized = vocab.normalize(text)
    unknown = sorted({c for c in normalized if c not in vocab.characters})
    if not normalized.strip() or unknown:
        what = f"characters the model cannot write: {''.join(unknown)!r}" if unknown else "no word"
        raise HotwordError(f"{where}: {what} in {text!r}; use the model's alphabet")
    return Hotword(" ".join(normalized.split()), weight)


def hotwords_in(text: str, hotwords: Iterable[Hotword]) -> list[str]:
    """The hotwords that occur in `text` as whole words, in the order given."""
    padded = f" {text} "
    return [h.text for h in hotwords if f" {h.text} " in padded]
