"""CTC prefix beam search with a character n-gram language model (shallow fusion); NumPy and Python only.

A hypothesis is scored by log p_ctc(prefix | audio) + alpha * log p_lm(prefix) + beta * len(prefix): the language
model scores each character as it is added, the bonus per character keeps the LM from favouring short
transcripts (Hannun et al. 2014, "First-pass large vocabulary continuous speech recognition using bi-directional
recurrent DNNs"). Characters, not words, so that any language and any unseen word is scored alike.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from asr.data.text import error_rates
from asr.model.lm import BOS, EOS, NgramLM

NEG_INF = -math.inf
# Characters below this log probability in a frame are not tried there (e^-8 = 3e-4; the frame's best always is):
# nearly all of a CTC model's frames put > 0.99 on one or two classes, so this keeps the search linear in frames.
MIN_CHAR_LOGP = -8.0
# How a space is written in the language model's text (ARPA tokens are separated by spaces).
SPACE_TOKEN = "<sp>"


def lm_tokens(text: str) -> str:
    """A transcript as the character LM's sentence: its characters separated by spaces, a space as <sp>."""
    return " ".join(SPACE_TOKEN if c == " " else c for c in text)


def estimate_character_lm(texts: Iterable[str], order: int) -> NgramLM:
    """A character n-gram model of normalized transcripts (the training split's)."""
    return NgramLM.estimate((lm_tokens(t) for t in texts if t), order)


@dataclass(frozen=True)
class LMWeights:
    """How much the language model counts against the acoustic model."""

    alpha: float = 0.5  # weight of the LM log probability
    beta: float = 1.0  # bonus per character

    def __post_init__(self) -> None:
        if self.alpha < 0:
            raise ValueError(f"the LM weight must be >= 0, got {self.alpha}")


@dataclass(frozen=True)
class LMDecoder:
    """Decodes log probabilities [T, C] (blank last) to text with a character language model."""

    lm: NgramLM
    weights: LMWeights = LMWeights()
    beam_width: int = 32

    def __post_init__(self) -> None:
        if self.beam_width < 1:
            raise ValueError(f"the LM beam width must be >= 1, got {self.beam_width}")

    def decode(self, log_probs: np.ndarray, characters: str) -> str:
        """Best transcript of one utterance's log probabilities [T, len(characters) + 1] (natural log)."""
        return _search(np.asarray(log_probs, np.float64), characters, self)


def _logaddexp(a: float, b: float) -> float:
    if a < b:
        a, b = b, a
    return a if b == NEG_INF else a + math.log1p(math.exp(b - a))


class _Beam:
    """One prefix: CTC log probabilities of its paths ending in a blank / in its last character, its LM part."""

    __slots__ = ("blank", "char", "lm_score", "context")

    def __init__(self, lm_score: float, context: tuple[str, ...]) -> None:
        self.blank = NEG_INF
        self.char = NEG_INF
        self.lm_score = lm_score  # alpha * log p_lm(prefix) + beta * len(prefix)
        self.context = context  # the last order - 1 LM tokens (<s> first at the start)

    @property
    def acoustic(self) -> float:
        return _logaddexp(self.blank, self.char)


def _search(log_probs: np.ndarray, characters: str, decoder: LMDecoder) -> str:
    lm, alpha, beta = decoder.lm, decoder.weights.alpha, decoder.weights.beta
    keep = max(lm.order - 1, 1)
    tokens = [SPACE_TOKEN if c == " " else c for c in characters]
    blank = len(characters)

    def extended(beam: _Beam, c: int) -> _Beam:
        token = tokens[c]
        return _Beam(beam.lm_score + alpha * lm.log_prob(beam.context, token) + beta, (*beam.context, token)[-keep:])

    start = _Beam(0.0, (BOS,))
    start.blank = 0.0
    beams: dict[str, _Beam] = {"": start}
    for frame in log_probs:  # frame: [C]
        tried = np.flatnonzero(frame >= min(MIN_CHAR_LOGP, frame.max()))
        following: dict[str, _Beam] = {}
        for prefix, beam in beams.items():
            total = beam.acoustic
            last = prefix[-1] if prefix else ""
            for c in tried:
                p = float(frame[c])
                char = characters[c] if c < blank else ""
                if c == blank or (char == " " and last in ("", " ")):  # a blank; no leading or doubled spaces
                    same = following.get(prefix) or following.setdefault(prefix, _Beam(beam.lm_score, beam.context))
                    same.blank = _logaddexp(same.blank, total + p)
                    continue
                if char == last:  # a repeat merges into the prefix unless a blank came between
                    same = following.get(prefix) or following.setdefault(prefix, _Beam(beam.lm_score, beam.context))
                    same.char = _logaddexp(same.char, beam.char + p)
                    from_paths = beam.blank
                else:
                    from_paths = total
                longer = following.get(prefix + char) or following.setdefault(prefix + char, extended(beam, c))
                longer.char = _logaddexp(longer.char, from_paths + p)
        ranked = sorted(following.items(), key=lambda item: item[1].acoustic + item[1].lm_score, reverse=True)
        beams = dict(ranked[: decoder.beam_width])
    best = max(
        beams.items(), key=lambda item: item[1].acoustic + item[1].lm_score + alpha * lm.log_prob(item[1].context, EOS)
    )
    return best[0].strip()


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
    pairs = [LMWeights(a, b) for a in alphas for b in betas]
    if not refs:  # nothing to tune on
        return LMDecoder(decoder.lm, pairs[0], decoder.beam_width), [{"alpha": pairs[0].alpha, "beta": pairs[0].beta}]
    tried, best = [], None
    for weights in pairs:
        candidate = LMDecoder(decoder.lm, weights, decoder.beam_width)
        ler = error_rates(refs, [candidate.decode(lp, characters) for lp in log_probs])["ler"]
        tried.append({"alpha": weights.alpha, "beta": weights.beta, "valid_ler": ler})
        if best is None or ler < best[0]:
            best = (ler, candidate)
    return best[1], tried
