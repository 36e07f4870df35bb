"""CTC prefix beam search with a character n-gram model, vectorized over the utterances of a batch (NumPy).

The same score as the flashlight-text search of asr.decoding.lm_search (log p_ctc(prefix) + alpha * ln p_lm(prefix)
+ beta per character), found by the prefix search of Hannun et al. 2014 (each prefix's probability of ending in a
blank and in its last character, summed over its CTC paths), one frame at a time for every utterance of the batch
at once: the frame loop runs in Python once per batch, not once per utterance, and nothing is called per
hypothesis. The language model is a table of transitions (context, character) -> (next context, score), filled
from the n-gram model the first time a pair is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr.decoding.lm import BOS, EOS, NgramLM

# Stands for log 0 in the arithmetic (a finite value: -inf - -inf would be NaN).
NEG = -1e30
# Multiplier of the prefixes' rolling hash (odd, 64 bits: each prefix's key is sum of (char + 1) * M^i mod 2^64;
# a collision between two prefixes alive in one beam is astronomically unlikely).
HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
HASH_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 2**64))  # key of a prefix's parent: (key - char - 1) * this


class TransitionTable:
    """A language model's scores as arrays: for a context id and a class, the next context id and the score
    alpha * ln p + beta (filled the first time the pair is asked for); per context, the weighted score of the
    sentence's end."""

    def __init__(self, lm: NgramLM | None, tokens: Sequence[str], alpha: float, beta: float) -> None:
        self.lm, self.tokens, self.alpha, self.beta = lm, list(tokens), alpha, beta
        self.keep = max(lm.order - 1, 0) if lm is not None else 0  # context tokens that count
        self.ids: dict[tuple[str, ...], int] = {}
        self.contexts: list[tuple[str, ...]] = []
        self.next = np.full((0, len(self.tokens)), -1, np.int32)  # [contexts, classes]: -1 where not filled
        self.score = np.zeros((0, len(self.tokens)), np.float64)
        self.end = np.zeros(0, np.float64)  # [contexts]
        self.start = self._context((BOS,)[-self.keep :] if self.keep else ())

    def _context(self, context: tuple[str, ...]) -> int:
        """The id of a context (added with its end-of-sentence score if new)."""
        found = self.ids.get(context)
        if found is not None:
            return found
        found = self.ids[context] = len(self.contexts)
        self.contexts.append(context)
        if found >= len(self.next):  # grow the arrays
            grown = max(2 * len(self.next), 64)
            self.next = np.concatenate([self.next, np.full((grown - len(self.next), self.next.shape[1]), -1, np.int32)])
            self.score = np.concatenate([self.score, np.zeros((grown - len(self.score), self.score.shape[1]))])
            self.end = np.concatenate([self.end, np.zeros(grown - len(self.end))])
        self.end[found] = self.alpha * self.lm.log_prob(context, EOS) if self.lm is not None else 0.0
        return found

    def _shortest(self, context: tuple[str, ...]) -> tuple[str, ...]:
        """The longest end of `context` that the model lists as an n-gram: what comes after the context is scored
        the same (an ARPA file lists every prefix of a listed n-gram, and a context it does not list backs off with
        a weight of 1), and fewer contexts fill fewer rows of the table."""
        while context and context not in self.lm.logp:
            context = context[1:]
        return context

    def step(self, contexts: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Next context ids and scores of (context, class) pairs (arrays of one shape)."""
        missing = self.next[contexts, classes] < 0
        if missing.any():
            for context, token in {(int(c), int(k)) for c, k in zip(contexts[missing], classes[missing], strict=True)}:
                self._fill(context, token)
        return self.next[contexts, classes], self.score[contexts, classes]

    def _fill(self, context: int, token: int) -> None:
        """Score one (context, class) pair."""
        words = self.contexts[context]
        word = self.tokens[token]
        log_prob = self.lm.log_prob(words, word) if self.lm is not None else 0.0
        following = self._context(self._shortest((*words, word)[-self.keep :] if self.keep else ()))
        self.next[context, token] = following
        self.score[context, token] = self.alpha * log_prob + self.beta


def prefix_search(
    rows: Sequence[np.ndarray], table: TransitionTable, beam_width: int, tokens_per_frame: int
) -> list[list[int]]:
    """The best class sequence (characters, no blank) of each utterance's log probabilities [T_i, C] (blank last),
    by a prefix beam search of `beam_width` prefixes extended with the `tokens_per_frame` most probable classes of
    each frame, all utterances at once."""
    count = len(rows)
    if count == 0:
        return []
    classes = rows[0].shape[1]
    blank = classes - 1
    frames = max(len(r) for r in rows)
    # [U, T, C]: rows padded with frames that are surely blank (they change no prefix's probability)
    emissions = np.full((count, max(frames, 1), classes), NEG)
    emissions[:, :, blank] = 0.0
    for u, row in enumerate(rows):
        emissions[u, : len(row)] = row
    width, top = beam_width, min(tokens_per_frame, classes)
    wide = width * top
    # the beam [U, W]: each prefix's key, node of the prefix tree, last class (-1: none), LM context, LM score so
    # far, log p(its paths end in a blank), log p(they end in its last class); an empty slot has both NEG
    key = np.zeros((count, width), np.uint64)
    node = np.zeros((count, width), np.int64)
    last = np.full((count, width), -1, np.int64)
    context = np.full((count, width), table.start, np.int64)
    lm_score = np.zeros((count, width))
    p_blank = np.full((count, width), NEG)
    p_blank[:, 0] = 0.0
    p_char = np.full((count, width), NEG)
    parents, chars = [np.zeros(1, np.int64)], [np.full(1, -1, np.int64)]  # the prefix tree: node 0 is ""
    nodes = 1
    at = np.arange(count)[:, None]  # [U, 1]
    for t in range(frames):
        frame = emissions[:, t]  # [U, C]
        total = np.logaddexp(p_blank, p_char)  # [U, W]
        alive = total > NEG / 2
        # the same prefix: a blank, or its last character once more
        stay_blank = total + frame[:, blank, None]
        stay_char = np.where(last >= 0, p_char + frame[at, np.maximum(last, 0)], NEG)
        # one character more: each of the frame's most probable classes but the blank [U, W, K]
        best = np.argpartition(-frame, top - 1, axis=1)[:, :top]
        cls = np.broadcast_to(best[:, None, :], (count, width, top))
        valid = (cls != blank) & alive[:, :, None]
        ext_char = np.where(cls == last[:, :, None], p_blank[:, :, None], total[:, :, None])
        ext_char = np.where(valid, ext_char + frame[at[:, :, None], cls], NEG).reshape(count, wide)
        ext_key = (key[:, :, None] * HASH_MULTIPLIER + (cls + 1).astype(np.uint64)).reshape(count, wide)
        ext_class = cls.reshape(count, wide)
        # an extension that spells a prefix of the beam adds its paths to that prefix's: the beam prefix whose parent
        # (by its key) is the extended prefix, and whose last class is among the frame's best
        parent_key = (key - (last + 1).astype(np.uint64)) * HASH_INVERSE  # [U, W]
        is_parent = (parent_key[:, :, None] == key[:, None, :]) & alive[:, None, :]  # [U, W child, W parent]
        rank = best[:, None, :] == last[:, :, None]  # [U, W, K]
        spelled = is_parent.any(2) & rank.any(2) & alive & (last >= 0)
        if spelled.any():
            u, w = np.nonzero(spelled)
            e = is_parent[u, w].argmax(1) * top + rank[u, w].argmax(1)
            stay_char[u, w] = np.logaddexp(stay_char[u, w], ext_char[u, e])
            ext_char[u, e] = NEG
        stay_score = np.where(alive, np.logaddexp(stay_blank, stay_char) + lm_score, NEG)
        # an extension scores at most the bonus above its prefix (alpha * ln p <= 0): one that falls short of the
        # worst stay even so cannot enter a full beam, and is not looked up in the language model
        ext_lm = np.broadcast_to(lm_score[:, :, None], cls.shape).reshape(count, wide)
        hopeful = (ext_char > NEG / 2) & (ext_char + ext_lm + table.beta >= stay_score.min(1, keepdims=True))
        ext_context = np.zeros((count, wide), np.int64)
        ext_score = np.full((count, wide), NEG)
        looked_up = table.step(
            np.broadcast_to(context[:, :, None], cls.shape).reshape(count, wide)[hopeful], ext_class[hopeful]
        )
        ext_context[hopeful], ext_score[hopeful] = looked_up
        ext_lm = ext_lm + ext_score
        # the best `width` of the stays and the extensions of each utterance
        score = np.concatenate([stay_score, np.where(hopeful, ext_char + ext_lm, NEG)], 1)
        pick = np.argpartition(-score, width - 1, axis=1)[:, :width]  # [U, W]
        is_ext = pick >= width
        stay = np.where(is_ext, 0, pick)
        ext = np.where(is_ext, pick - width, 0)
        live = np.take_along_axis(score, pick, 1) > NEG / 2
        new = is_ext & live
        fresh = np.zeros((count, width), np.int64)
        fresh[new] = np.arange(nodes, nodes + int(new.sum()))
        nodes += int(new.sum())
        parents.append(np.take_along_axis(node, ext // top, 1)[new])
        chars.append(np.take_along_axis(ext_class, ext, 1)[new])

        pick_of = (is_ext, stay, ext)
        key = _chosen(pick_of, key, ext_key)
        node = np.where(new, fresh, np.take_along_axis(node, stay, 1))
        last = _chosen(pick_of, last, ext_class)
        context = _chosen(pick_of, context, ext_context)
        lm_score = _chosen(pick_of, lm_score, ext_lm)
        p_blank = np.where(is_ext | ~live, NEG, np.take_along_axis(stay_blank, stay, 1))
        p_char = np.where(live, _chosen(pick_of, stay_char, ext_char), NEG)
    total = np.logaddexp(p_blank, p_char)
    final = np.where(total > NEG / 2, total + lm_score + table.end[context], -np.inf)
    winner = node[np.arange(count), final.argmax(axis=1)]
    parent, char = np.concatenate(parents), np.concatenate(chars)
    paths = []
    for start in winner:
        path, at_node = [], int(start)
        while at_node > 0:
            path.append(int(char[at_node]))
            at_node = int(parent[at_node])
        paths.append(path[::-1])
    return paths


def _chosen(pick_of: tuple[np.ndarray, np.ndarray, np.ndarray], kept: np.ndarray, extended: np.ndarray) -> np.ndarray:
    """The picked candidates' values [U, W]: a kept prefix's from `kept` [U, W], an extension's from `extended`
    [U, W * K]; pick_of: (which picks are extensions, the kept slot, the extension)."""
    is_ext, stay, ext = pick_of
    return np.where(is_ext, np.take_along_axis(extended, ext, 1), np.take_along_axis(kept, stay, 1))
