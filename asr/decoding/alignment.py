"""CTC alignment in NumPy (no TensorFlow: the TFLite runner uses it too): per-frame log probabilities, greedy
transcripts, the Viterbi alignment of a transcript to its frames, word times and confidences."""

from __future__ import annotations

import numpy as np

from asr.data.text import Vocabulary, ctc_collapse


def greedy_text(log_probs: np.ndarray, characters: str) -> str:
    """Best path of one utterance's scores [T, len(characters) + 1] (blank last): the most probable class per
    frame, repeats merged, blanks dropped."""
    blank = len(characters)
    return "".join(characters[k] for k in ctc_collapse(np.asarray(log_probs).argmax(axis=1).tolist(), blank))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Per-frame log probabilities of logits [..., C]."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def utterance_log_probs(logits, lengths) -> list[np.ndarray]:
    """Each utterance's per-frame log probabilities [T_i, C] from a batch's logits [B, T, C] and logit frames [B],
    without the padding."""
    values = np.asarray(logits)
    return [log_softmax(values[row, : int(lengths[row])]) for row in range(values.shape[0])]


def ctc_align(log_probs: np.ndarray, labels: list[int], blank_index: int) -> list[tuple[int, int]]:
    """Most likely CTC alignment (Viterbi) of `labels` to frames log_probs [T, C]: each label's (first, last) frame.

    The best path runs through the usual extended sequence (blank, l1, blank, l2, ..., blank); a label may be
    skipped-to directly from the previous label when the two differ.
    """
    frames = len(log_probs)
    if not labels:
        return []
    extended = np.full(2 * len(labels) + 1, blank_index)  # [S]
    extended[1::2] = labels
    states = len(extended)
    # a label state may also be entered from two states back (over the blank) when the labels differ
    skip = np.zeros(states, dtype=bool)
    skip[2:] = (extended[2:] != blank_index) & (extended[2:] != extended[:-2])
    emitted = log_probs[:, extended]  # [T, S]
    back = np.zeros((frames, states), dtype=np.int8)  # how many states back each best step came from
    score = np.full(states, -np.inf)
    score[:2] = emitted[0, :2]
    for t in range(1, frames):
        stay = score
        step = np.concatenate([[-np.inf], score[:-1]])
        jump = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        choices = np.stack([stay, step, jump])  # [3, S]
        back[t] = np.argmax(choices, axis=0)
        score = choices[back[t], np.arange(states)] + emitted[t]
    state = states - 1 if states == 1 or score[-1] >= score[-2] else states - 2
    path = [state]
    for t in range(frames - 1, 0, -1):
        state -= int(back[t, state])
        path.append(state)
    path.reverse()  # state per frame
    spans: list[list[int]] = [[-1, -1] for _ in labels]
    for t, s in enumerate(path):
        if s % 2 == 1:  # odd states are labels
            span = spans[s // 2]
            span[0] = t if span[0] < 0 else span[0]
            span[1] = t
    return [(a, b) for a, b in spans]


def best_path_spans(log_probs: np.ndarray, labels: list[int], blank_index: int) -> list[tuple[int, int]] | None:
    """Each label's (first, last) frame on the best path (the most probable class per frame) when that path spells
    `labels` (a greedy transcript): the most likely path of all, so also the most likely alignment of `labels`
    (what ctc_align finds, without its frame-by-frame loop); None when the best path spells something else."""
    if not labels:
        return None
    best = np.asarray(log_probs).argmax(axis=1)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(best)) + 1])  # the first frame of each run of a class
    ends = np.concatenate([starts[1:], [len(best)]]) - 1
    spoken = best[starts] != blank_index
    if best[starts][spoken].tolist() != labels:
        return None
    return list(zip(starts[spoken].tolist(), ends[spoken].tolist(), strict=True))


def aligned_words(text: str, log_probs: np.ndarray, vocab: Vocabulary) -> list[dict]:
    """The words of `text` aligned to log_probs [T, C]: {word, first, last (frames), confidence}. A character's
    confidence is the highest posterior it has on the frames aligned to it (its CTC spike); a word's is the mean
    of its characters' (on fillets_nl validation, ranking right above wrong words: area under the ROC curve 0.72,
    against 0.69 for their minimum; docs/results.md). Empty when the frames are fewer than the characters."""
    labels = [vocab.characters.index(c) for c in text]
    if len(log_probs) < len(labels):
        return []
    spans = best_path_spans(log_probs, labels, vocab.blank_index) or ctc_align(log_probs, labels, vocab.blank_index)
    words, current = [], None
    for char, label, (first, last) in zip(text, labels, spans, strict=True):
        if char == " ":
            current = None
            continue
        peak = float(np.exp(np.max(log_probs[first : last + 1, label])))
        if current is None:
            current = {"word": "", "first": first, "last": last, "peaks": []}
            words.append(current)
        current["word"] += char
        current["last"] = last
        current["peaks"].append(peak)
    return [
        {"word": w["word"], "first": w["first"], "last": w["last"], "confidence": float(np.mean(w["peaks"]))}
        for w in words
    ]


def word_timestamps(text: str, log_probs: np.ndarray, vocab: Vocabulary, seconds_per_frame: float) -> list[dict]:
    """Words of `text` with start and end times (seconds) from its CTC alignment to log_probs [T, C], and their
    confidence in [0, 1] (aligned_words)."""
    return [
        {
            "word": w["word"],
            "start": round(w["first"] * seconds_per_frame, 3),
            "end": round((w["last"] + 1) * seconds_per_frame, 3),
            "confidence": round(w["confidence"], 4),
        }
        for w in aligned_words(text, log_probs, vocab)
    ]


def transcript_confidence(text: str, log_probs: np.ndarray, vocab: Vocabulary) -> float:
    """Confidence in [0, 1] of a whole transcript: its words' (aligned_words), weighted by their lengths; for an
    empty transcript, the mean posterior of the blank (that nothing was said)."""
    words = aligned_words(text, log_probs, vocab)
    if not words:
        return round(float(np.mean(np.exp(log_probs[:, vocab.blank_index]))), 4) if len(log_probs) else 1.0
    weights = np.array([len(w["word"]) for w in words], np.float64)
    return round(float(np.average([w["confidence"] for w in words], weights=weights)), 4)
