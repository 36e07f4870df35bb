"""CTC beam search with a character n-gram language model (shallow fusion), hotwords and a word model.

A hypothesis is scored by log p_ctc(prefix | audio) + alpha * log p_lm(prefix) + beta * len(prefix): the language
model scores each character as it is added, the bonus per character keeps the LM from favouring short
transcripts (Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition using bi-directional
recurrent DNNs"). Characters, not words, so that any language and any unseen word is scored alike.

Two searches. The default is asr.decoding.prefix_search: a prefix beam search in NumPy over all the utterances
of a decode_many call at once, the language model a table filled from the n-gram model. With hotwords or a word
model it is flashlight-text's lexicon-free beam search (C++) with KenLM (inside flashlight-text); the weights, the
word model (lm.kind=word) and the hotword bonuses are applied in small Python LMs that wrap KenLM, since KenLM
refuses the positive scores a bonus makes, and flashlight calls them for every hypothesis and class of every frame
(holding the GIL: a thread pool gains nothing), which made it 5x slower than the prefix search on the fillets_nl
test split.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from flashlight.lib.text.decoder import (
    LM,
    CriterionType,
    LexiconFreeDecoder,
    LexiconFreeDecoderOptions,
    LMState,
    ZeroLM,
)
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import Dictionary

from asr.data.text import Vocabulary, ctc_collapse, error_rates
from asr.decoding.hotwords import Hotword, TrieNode, build_trie
from asr.decoding.lm import UNK, LanguageModelError, NgramLM
from asr.decoding.prefix_search import TransitionTable, prefix_search

# How a space is written in the language model's text (ARPA tokens are separated by spaces).
SPACE_TOKEN = "<sp>"
# The blank's entry in the token list given to KenLM (not in any model: scored as <unk>, never asked for).
BLANK_TOKEN = "<blank>"
# Classes of a frame that each hypothesis is extended with: its most probable ones. On the fillets_nl test
# split (docs/results.md) 6 decodes as the exhaustive prefix search did (CER 35.86 % against 35.84 %), 4 loses
# 0.3 points; nearly every frame of a CTC model puts > 0.99 on one or two classes. The prefix search with 8 moves
# the CER of an 8-epoch fillets_nl model by -0.27 points on test and +0.34 on validation: noise.
TOKENS_PER_FRAME = 6
# Frames whose blank has at least this probability are skipped, but the first of each run of them (which keeps
# a doubled letter's two halves apart): no character can be read there, and a CTC model's frames are mostly
# such blanks. On the fillets_nl test split it leaves 65 % of the frames, halves the search's time and changes
# the CER by 0.05 points (docs/results.md).
SKIP_BLANK_PROBABILITY = 0.999
# Hypotheses more than this below the best (natural log) are dropped: flashlight-text's customary setting.
BEAM_THRESHOLD = 25.0
# The searches LMDecoder.search names.
SEARCHES = ("prefix", "flashlight")
# Utterances the prefix search takes at once (sorted by length): its frame loop runs once for them all. On the
# fillets_nl test split (147 files) groups of 8 / 16 / 32 / 64 / all took 0.80 / 0.60 / 0.51 / 0.49 / 0.98 CPU s.
SEARCH_GROUP = 32


def lm_tokens(text: str) -> str:
    """A transcript as the character LM's sentence: its characters separated by spaces, a space as <sp>."""
    return " ".join(SPACE_TOKEN if c == " " else c for c in text)


def estimate_character_lm(texts: Iterable[str], order: int) -> NgramLM:
    """A character n-gram model of normalized transcripts (the training split's)."""
    return NgramLM.estimate((lm_tokens(t) for t in texts if t), order)


@dataclass(frozen=True)
class ExtraText:
    """Sentences of lm.text, normalized like the transcripts, and what reading them found."""

    sentences: tuple[str, ...]
    report: dict


def check_text_files(paths: Iterable[str]) -> None:
    """LanguageModelError naming the first lm.text file that does not exist (before any data is read)."""
    for path in paths:
        if not Path(path).is_file():
            raise LanguageModelError(f"lm.text: {path} does not exist; pass UTF-8 text files, a sentence per line")


def read_extra_text(paths: Iterable[str], vocab: Vocabulary) -> ExtraText:
    """Every line of the lm.text files, normalized like the transcripts; a word holding a character the
    vocabulary lacks is left out (and counted). LanguageModelError names the file and line that is not UTF-8."""
    sentences, lines, dropped, files = [], 0, 0, 0
    for path in paths:
        files += 1
        for number, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise LanguageModelError(
                    f"lm.text: {path}:{number}: not UTF-8 ({e.reason} at byte {e.start}); save the file as UTF-8"
                ) from None
            lines += 1
            words = vocab.normalize(line).split()
            kept = [w for w in words if all(c in vocab.characters for c in w)]
            dropped += len(words) - len(kept)
            if kept:
                sentences.append(" ".join(kept))
    report = {"files": files, "lines": lines, "sentences": len(sentences), "words_dropped": dropped}
    return ExtraText(tuple(sentences), report)


@dataclass(frozen=True)
class LMWeights:
    """How much the language model counts against the acoustic model."""

    alpha: float = 0.5  # weight of the LM log probability
    beta: float = 1.0  # bonus per character
    word: float = 0.0  # weight of the word model's log probability, added at each word's end (with one)
    unknown: float = 0.0  # penalty per word the word model does not list

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.word < 0:
            raise ValueError(f"the LM weight must be >= 0, got {self.alpha} (word model: {self.word})")


@dataclass(frozen=True)
class LMDecoder:
    """Decodes log probabilities [T, C] (blank last) to text with a character language model (or, with `lm`
    None, the acoustic model alone) and hotwords.

    Without hotwords or a word model the search is asr.decoding.prefix_search's (NumPy, the utterances of a
    decode_many call searched together); with them, flashlight-text's, whose language model is written in Python
    here (search="flashlight" asks for it in every case)."""

    lm: NgramLM | None
    weights: LMWeights = LMWeights()
    beam_width: int = 32
    hotwords: tuple[Hotword, ...] = ()
    words: NgramLM | None = None  # a word n-gram model (lm.kind=word), scored at each word's end
    tokens_per_frame: int = TOKENS_PER_FRAME  # classes of a frame each hypothesis is extended with
    beam_threshold: float = BEAM_THRESHOLD  # flashlight: hypotheses this far below the best (natural log) dropped
    skip_blank: float = SKIP_BLANK_PROBABILITY  # frames at least this surely blank are skipped (but a run's first)
    search: str = "prefix"  # "prefix" (asr.decoding.prefix_search) or "flashlight" (also with hotwords)
    # KenLM models of `lm` per vocabulary and transition tables per vocabulary and weights, made on first use;
    # shared by the copies that replace() makes
    loaded: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.beam_width < 1:
            raise ValueError(f"the LM beam width must be >= 1, got {self.beam_width}")
        if self.tokens_per_frame < 1 or self.beam_threshold <= 0:
            raise ValueError(
                f"tokens per frame must be >= 1 and the beam threshold > 0, got {self.tokens_per_frame} and "
                f"{self.beam_threshold}"
            )
        if not 0 < self.skip_blank <= 1:
            raise ValueError(f"the blank probability of skipped frames must be in (0, 1], got {self.skip_blank}")
        if self.search not in SEARCHES:
            raise ValueError(f"the search must be one of {', '.join(SEARCHES)}, got {self.search!r}")

    def decode(self, log_probs: np.ndarray, characters: str) -> str:
        """Best transcript of one utterance's log probabilities [T, len(characters) + 1] (natural log)."""
        return self.decode_many([log_probs], characters)[0]

    def decode_many(self, rows: Sequence[np.ndarray], characters: str) -> list[str]:
        """The best transcript of each utterance's log probabilities [T, len(characters) + 1], in order; the
        prefix search takes the utterances of similar length SEARCH_GROUP at a time."""
        blank = len(characters)
        kept = [_without_certain_blanks(np.asarray(row), blank, self.skip_blank) if len(row) else () for row in rows]
        texts = [""] * len(kept)
        if self.hotwords or (self.words is not None and self.weights.word > 0) or self.search == "flashlight":
            for i, emissions in enumerate(kept):
                texts[i] = self._flashlight(emissions, characters) if len(emissions) else ""
            return texts
        table = self._table(characters)
        order = sorted((i for i in range(len(kept)) if len(kept[i])), key=lambda i: len(kept[i]))
        for begin in range(0, len(order), SEARCH_GROUP):
            group = order[begin : begin + SEARCH_GROUP]
            paths = prefix_search([kept[i] for i in group], table, self.beam_width, self.tokens_per_frame)
            for i, path in zip(group, paths, strict=True):
                texts[i] = " ".join("".join(characters[c] for c in path).split())
        return texts

    def _flashlight(self, log_probs: np.ndarray, characters: str) -> str:
        """Best transcript of log probabilities [T, C] (certain blanks already skipped) by flashlight-text's
        search, with the language model, the word model and the hotwords written in Python."""
        blank = len(characters)
        emissions = np.ascontiguousarray(log_probs, dtype=np.float32)
        frames, classes = emissions.shape  # [T', C]
        fusion = _ShallowFusion(self._kenlm(characters), self.weights)
        if self.words is not None and self.weights.word > 0:
            fusion = _WordFusion(fusion, *self._word_kenlm(), characters, self.weights)
        if self.hotwords:
            fusion = _Boosted(fusion, build_trie(self.hotwords), characters)
        options = LexiconFreeDecoderOptions(
            beam_size=self.beam_width,
            beam_size_token=min(self.tokens_per_frame, classes),
            beam_threshold=self.beam_threshold,
            lm_weight=1.0,  # the weights are applied by _ShallowFusion
            sil_score=0.0,
            log_add=True,  # a hypothesis sums its CTC paths, as the CTC loss does
            criterion_type=CriterionType.CTC,
        )
        space = characters.find(" ")
        decoder = LexiconFreeDecoder(options, fusion, space if space >= 0 else blank, blank, [])
        path = decoder.decode(emissions.ctypes.data, frames, classes)[0].tokens
        return " ".join("".join(characters[i] for i in ctc_collapse(path, blank)).split())

    def _table(self, characters: str) -> TransitionTable:
        """The language model's transition table for this vocabulary and these weights (one that scores only the
        bonus per character without a model)."""
        name = ("table", characters, self.weights.alpha, self.weights.beta)
        if name not in self.loaded:
            if self.lm is not None:
                _check_order(self.lm)
            tokens = _class_tokens(characters)
            self.loaded[name] = TransitionTable(self.lm, tokens, self.weights.alpha, self.weights.beta)
        return self.loaded[name]

    def _kenlm(self, characters: str) -> LM:
        """The language model as KenLM reads it, with the vocabulary's classes as its tokens (none: a model
        that scores everything 0)."""
        if self.lm is None:
            return ZeroLM()
        if characters not in self.loaded:
            self.loaded[characters] = _load_kenlm(self.lm, _class_tokens(characters))
        return self.loaded[characters]

    def _word_kenlm(self) -> tuple[KenLM, dict[str, int]]:
        """The word model as KenLM reads it, and the index of each word it lists (<unk> for the others)."""
        if "words" not in self.loaded:
            listed = [*sorted(self.words.vocabulary), UNK]
            self.loaded["words"] = (_load_kenlm(self.words, listed), {w: i for i, w in enumerate(listed)})
        return self.loaded["words"]


class _ShallowFusion(LM):
    """KenLM's log10 scores turned into alpha * ln p + beta per character (flashlight adds what score returns)."""

    def __init__(self, kenlm: KenLM, weights: LMWeights) -> None:
        LM.__init__(self)
        self.kenlm = kenlm
        self.scale = weights.alpha * math.log(10.0)
        self.bonus = weights.beta
        # (state, token) -> (next state, score): the same hypothesis is extended by the same token on many frames;
        # holding the states keeps their Python objects, so that KenLM hands back the same ones
        self.scored: dict[tuple[object, int], tuple[object, float]] = {}

    def start(self, start_with_nothing: bool):
        return self.kenlm.start(start_with_nothing)

    def score(self, state, token: int):
        found = self.scored.get((state, token))
        if found is None:
            following, log10 = self.kenlm.score(state, token)
            found = self.scored[(state, token)] = (following, self.scale * log10 + self.bonus)
        return found

    def finish(self, state):
        state, log10 = self.kenlm.finish(state)
        return state, self.scale * log10


class _WordFusion(LM):
    """Another LM's scores plus, at each word's end (a space or the transcript's end), the word model's weighted
    log probability of the word after the words before it, less a penalty for a word it does not list. A state
    stands for the whole prefix (a tree of LMState children)."""

    def __init__(self, inner: LM, kenlm: KenLM, index: dict[str, int], characters: str, weights: LMWeights) -> None:
        LM.__init__(self)
        self.inner, self.kenlm, self.index, self.characters = inner, kenlm, index, characters
        self.scale, self.unknown = weights.word * math.log(10.0), weights.unknown
        # per state: (the inner LM's state, the word model's state, the word spelled so far)
        self.states: dict[LMState, tuple[LMState, LMState, str]] = {}

    def start(self, start_with_nothing: bool):
        root = LMState()
        self.states[root] = (self.inner.start(start_with_nothing), self.kenlm.start(start_with_nothing), "")
        return root

    def _word(self, state, word: str):
        """The word model's state after `word`, and the word's weighted score."""
        listed = self.index.get(word)
        state, log10 = self.kenlm.score(state, self.index[UNK] if listed is None else listed)
        return state, self.scale * log10 - (self.unknown if listed is None else 0.0)

    def score(self, state, token: int):
        inner_state, word_state, spelled = self.states[state]
        inner_state, value = self.inner.score(inner_state, token)
        char = self.characters[token]
        if char != " ":
            spelled += char
        elif spelled:
            word_state, word_value = self._word(word_state, spelled)
            value += word_value
            spelled = ""
        child = state.child(token)
        self.states[child] = (inner_state, word_state, spelled)
        return child, value

    def finish(self, state):
        inner_state, word_state, spelled = self.states[state]
        inner_state, value = self.inner.finish(inner_state)
        if spelled:
            word_state, word_value = self._word(word_state, spelled)
            value += word_value
        word_state, log10 = self.kenlm.finish(word_state)
        return state.child(-1), value + self.scale * log10


class _Boosted(LM):
    """Another LM's scores plus the hotword bonus: each character that continues a hotword from a word's start
    earns the trie's bonus; when the hypothesis leaves the hotword, it keeps only the whole bonus of the longest
    hotword it completed as a word ("new" on the way to "new york"), gives the rest back, and a word begun inside
    the abandoned phrase may start a hotword of its own (asr.decoding.hotwords). A state stands for the whole
    prefix (a tree of LMState children), so that only equal prefixes are merged."""

    def __init__(self, inner: LM, trie: TrieNode, characters: str) -> None:
        LM.__init__(self)
        self.inner, self.trie, self.characters = inner, trie, characters
        self.states: dict[LMState, tuple[LMState, _Match | None, bool]] = {}  # per state: inner state, match, at start

    def start(self, start_with_nothing: bool):
        root = LMState()
        self.states[root] = (self.inner.start(start_with_nothing), None, True)
        return root

    def score(self, state, token: int):
        inner_state, match, at_start = self.states[state]
        inner_state, value = self.inner.score(inner_state, token)
        char = self.characters[token]
        if match is not None and char in match.node.children:  # the hotword goes on
            kept = match.node.bonus if match.node.complete and char == " " else match.kept  # a hotword is whole
            node = match.node.children[char]
            match = _Match(node, match.earned + node.weight, kept, match.spelled + char)
            value += node.weight
        else:
            word = char
            if match is not None:  # it ends here: a whole hotword followed by a space keeps its bonus
                value -= match.earned - (match.node.bonus if match.node.complete and char == " " else match.kept)
                _, space, word = (match.spelled + char).rpartition(" ")
                at_start = at_start or (bool(space) and char != " ")
                match = None
            if at_start and char != " ":  # a word starts (or started inside the abandoned phrase): a hotword?
                match = self._walk(word)
                if match is not None:
                    value += match.earned
        child = state.child(token)
        self.states[child] = (inner_state, match, char == " ")
        return child, value

    def _walk(self, word: str) -> _Match | None:
        """The match of `word` from the trie's root, or None where no hotword starts so."""
        node, earned = self.trie, 0.0
        for char in word:
            node = node.children.get(char)
            if node is None:
                return None
            earned += node.weight
        return _Match(node, earned, 0.0, word)

    def finish(self, state):
        inner_state, match, _ = self.states[state]
        inner_state, value = self.inner.finish(inner_state)
        if match is not None:
            value -= match.earned - (match.node.bonus if match.node.complete else match.kept)
        return state.child(-1), value


@dataclass(frozen=True)
class _Match:
    """A hypothesis's progress through the hotwords: the trie node reached, the bonus earned since the match began,
    the part of it kept if the match ends before a hotword does, and the characters matched."""

    node: TrieNode
    earned: float
    kept: float
    spelled: str


def _without_certain_blanks(log_probs: np.ndarray, blank: int, at_least: float = SKIP_BLANK_PROBABILITY) -> np.ndarray:
    """log_probs [T, C] without the frames that are blank with a probability of at least `at_least`, but the first of
    each run of them [T', C]."""
    certain = log_probs[:, blank] >= math.log(at_least)  # [T]
    after_certain = np.concatenate([[False], certain[:-1]])
    return log_probs[~(certain & after_certain)]


def _class_tokens(characters: str) -> list[str]:
    """The language model's token for each class of the acoustic model: the characters (a space as <sp>), then
    the blank."""
    return [SPACE_TOKEN if c == " " else c for c in characters] + [BLANK_TOKEN]


def _check_order(lm: NgramLM) -> None:
    """LanguageModelError for a unigram model: the beam search takes a model of order 2 or more."""
    if lm.order < 2:
        raise LanguageModelError(f"a language model of order {lm.order}: the beam search needs an order of at least 2")


def _load_kenlm(lm: NgramLM, tokens: list[str]) -> KenLM:
    """`lm` loaded by KenLM (from an ARPA file written for it) with `tokens` as the decoder's classes."""
    _check_order(lm)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lm.arpa"
        lm.write_arpa(path)
        with _quiet_stderr():  # KenLM draws a progress bar on stderr while it reads
            try:
                return KenLM(str(path), Dictionary(tokens))
            except RuntimeError as e:
                raise LanguageModelError(f"KenLM cannot read the language model: {e}") from e


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 sent to /dev/null for the duration (output of C++ code, which Python cannot catch)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tune_weights(
    decoder: LMDecoder,
    log_probs: list[np.ndarray],
    refs: list[str],
    characters: str,
    alphas: Iterable[float],
    betas: Iterable[float],
) -> tuple[LMDecoder, list[dict]]:
    """The decoder with the (alpha, beta) pair whose transcripts of `log_probs` have the lowest LER against
    `refs` (the first pair on a tie, or without refs: then none is tried), and the LER of every pair tried."""
    return pick_weights(decoder, log_probs, refs, characters, [LMWeights(a, b) for a in alphas for b in betas])


def tune_word_weights(
    decoder: LMDecoder,
    log_probs: list[np.ndarray],
    refs: list[str],
    characters: str,
    word_weights: Iterable[float],
    unknown_penalties: Iterable[float],
) -> tuple[LMDecoder, list[dict]]:
    """The decoder (with its word model) with the word weight and unknown-word penalty, its character weights
    kept, whose transcripts of `log_probs` have the lowest WER (words are what the word model is for; measured
    in docs/results.md), as tune_weights; a word weight of 0 is tried once."""
    base, word_weights = decoder.weights, tuple(word_weights)
    candidates = [replace(base, word=0.0, unknown=0.0)] if 0.0 in word_weights else []
    candidates += [replace(base, word=w, unknown=u) for w in word_weights if w > 0 for u in unknown_penalties]
    return pick_weights(decoder, log_probs, refs, characters, candidates, "wer")


def pick_weights(
    decoder: LMDecoder,
    log_probs: list[np.ndarray],
    refs: list[str],
    characters: str,
    candidates: list[LMWeights],
    rate: str = "ler",
) -> tuple[LMDecoder, list[dict]]:
    """The decoder with the candidate weights whose transcripts of `log_probs` have the lowest `rate` ("ler" or
    "wer") against `refs` (the first on a tie, or without refs: then none is tried), and the error rate of each
    one tried."""
    if not refs:  # nothing to tune on
        return replace(decoder, weights=candidates[0]), [_described(candidates[0])]
    tried, best = [], None
    for weights in candidates:
        candidate = replace(decoder, weights=weights)
        rates = error_rates(refs, candidate.decode_many(log_probs, characters))
        tried.append({**_described(weights), f"valid_{rate}": rates[rate]})
        if best is None or rates[rate] < best[0]:
            best = (rates[rate], candidate)
    return best[1], tried


def _described(weights: LMWeights) -> dict:
    """The weights as result.json lists them (the word model's only where it has any)."""
    described = {"alpha": weights.alpha, "beta": weights.beta}
    if weights.word > 0:
        described |= {"word": weights.word, "unknown": weights.unknown}
    return described
