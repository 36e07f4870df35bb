import itertools

import numpy as np
import pytest

from asr.decoding.lm import BOS, EOS
from asr.decoding.lm_search import BLANK_TOKEN, SPACE_TOKEN, estimate_character_lm
from asr.decoding.prefix_search import TransitionTable, prefix_search

CHARACTERS = " ab"  # classes 0-2, the blank is 3
TOKENS = [SPACE_TOKEN, "a", "b", BLANK_TOKEN]
LM = estimate_character_lm(["ab a", "ba", "a b b", "aab"], 3)
# The demo fixture's 150 test transcripts with the shipped pruning (certain blanks skipped, 6 classes per frame)
# against none: measured 3 changed, the CER 0.05 points lower; bounds with room for another CPU's last digits.
MEASURED_CHANGED, MEASURED_CER_DIFFERENCE = 5, 0.001


def _collapse(path: tuple[int, ...], blank: int) -> tuple[int, ...]:
    """CTC's reading of a path of classes."""
    out, previous = [], None
    for c in path:
        if c != previous and c != blank:
            out.append(c)
        previous = c
    return tuple(out)


def _exhaustive_best(log_probs: np.ndarray, alpha: float, beta: float) -> tuple[int, ...]:
    """The class sequence with the highest log p_ctc (summed over every path of the frames) + alpha * ln p_lm
    (with the sentence's end) + beta per character."""
    frames, classes = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=frames):
        labels = _collapse(path, classes - 1)
        score = float(log_probs[np.arange(frames), path].sum())
        totals[labels] = np.logaddexp(totals.get(labels, -np.inf), score)

    def objective(labels: tuple[int, ...]) -> float:
        context, value = (BOS,), 0.0
        for c in labels:
            value += alpha * LM.log_prob(context, TOKENS[c]) + beta
            context = (*context, TOKENS[c])[-2:]
        return totals[labels] + value + alpha * LM.log_prob(context, EOS)

    return max(totals, key=objective)


def _random_log_probs(rng: np.random.Generator, frames: int, spread: float = 2.0) -> np.ndarray:
    """Log probabilities [frames, 4]: of a peaky, CTC-like model, or of an unsure one (a smaller spread)."""
    logits = rng.normal(0.0, spread, (frames, len(TOKENS)))
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


@pytest.mark.parametrize("seed", range(12))
def test_a_wide_search_finds_the_best_sequence_of_all(seed):
    rng = np.random.default_rng(seed)
    log_probs = _random_log_probs(rng, 7, 2.0 if seed < 6 else 0.7)
    alpha, beta = (0.0, 0.0) if seed % 3 == 0 else (0.8, 1.5 if seed % 2 else -0.5)
    table = TransitionTable(LM, TOKENS, alpha, beta)
    (found,) = prefix_search([log_probs], table, beam_width=64, tokens_per_frame=4)
    assert tuple(found) == _exhaustive_best(log_probs, alpha, beta)


def test_each_utterance_is_searched_alone_whatever_the_batch():
    rng = np.random.default_rng(7)
    rows = [_random_log_probs(rng, n) for n in (9, 3, 14, 1, 9)]
    table = TransitionTable(LM, TOKENS, 0.5, 1.0)
    together = prefix_search(rows, table, beam_width=4, tokens_per_frame=3)
    alone = [prefix_search([row], table, beam_width=4, tokens_per_frame=3)[0] for row in rows]
    assert together == alone
    assert prefix_search([], table, 4, 3) == []
    assert len({tuple(p) for p in together}) > 2  # the rows differ


def test_the_table_scores_as_the_model_and_shares_contexts_the_model_does_not_list():
    table = TransitionTable(LM, TOKENS, 0.5, 1.0)
    contexts = np.full(3, table.start)
    following, scores = table.step(contexts, np.array([1, 2, 0]))
    for token, score in zip(("a", "b", SPACE_TOKEN), scores, strict=True):
        assert score == pytest.approx(0.5 * LM.log_prob((BOS,), token) + 1.0)
    assert table.contexts[following[0]] == (BOS, "a")
    # "b" never follows "b" in the texts: after "bb" the context is "b" alone (scored the same, one row for all)
    at_b = table.step(np.array([table.start]), np.array([2]))[0]
    at_bb = table.step(at_b, np.array([2]))[0]
    assert (table.contexts[at_b[0]], table.contexts[at_bb[0]]) == ((BOS, "b"), ("b",))
    assert ("b", "b") not in LM.logp and (BOS, "b") in LM.logp
    assert table.end[following[0]] == pytest.approx(0.5 * LM.log_prob((BOS, "a"), EOS))
    # asked again, nothing new is added
    before = len(table.contexts)
    table.step(contexts, np.array([1, 2, 0]))
    assert len(table.contexts) == before


@pytest.fixture(scope="module")
def demo_log_probs(demo_run):
    """The demo run's log probabilities of the embedded corpus's test split, their references, the vocabulary's
    characters and a character 6-gram model of its training transcripts."""
    from pathlib import Path

    from asr.bench.decoding import _features, _Item, _log_probs
    from asr.data.datasets import read_jsonl
    from asr.inference.bundle import load_bundle

    data = Path(__file__).parents[1] / "data"
    bundle = load_bundle(demo_run)
    items = [_Item(_features(bundle, u), bundle.vocab.normalize(u.text)) for u in read_jsonl(data / "test.jsonl")]

    def infer(padded, lengths):
        logits = bundle.model({"features": padded, "lengths": lengths}, training=False)
        return np.asarray(logits), np.asarray(bundle.model.output_lengths(lengths))

    rows = _log_probs(items, infer, 32)
    texts = [bundle.vocab.normalize(u.text) for u in read_jsonl(data / "train.jsonl")]
    return rows, [item.ref for item in items], bundle.vocab.characters, estimate_character_lm(texts, 6)


@pytest.mark.slow
def test_the_pruning_changes_the_demo_transcripts_no_more_than_measured(demo_log_probs):
    from dataclasses import replace

    from asr.data.text import error_rates
    from asr.decoding.lm_search import LMDecoder, LMWeights

    rows, refs, characters, lm = demo_log_probs
    shipped = LMDecoder(lm, LMWeights(0.5, 1.0))
    # no frame skipped, every class of every frame tried
    exhaustive = replace(shipped, skip_blank=1.0, tokens_per_frame=len(characters) + 1)
    pruned, full = shipped.decode_many(rows, characters), exhaustive.decode_many(rows, characters)
    changed = sum(a != b for a, b in zip(pruned, full, strict=True))
    difference = error_rates(refs, pruned)["ler"] - error_rates(refs, full)["ler"]
    assert changed <= MEASURED_CHANGED and abs(difference) <= MEASURED_CER_DIFFERENCE
