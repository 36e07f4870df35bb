"""asr.decoding.alignment: the best path's spans are the Viterbi alignment of a greedy transcript."""

import numpy as np

from asr.decoding.alignment import best_path_spans, ctc_align, greedy_text


def test_the_best_paths_spans_are_the_viterbi_alignment_of_the_greedy_transcript():
    rng = np.random.default_rng(0)
    characters = "abcde"  # blank: 5
    for _ in range(200):
        log_probs = np.log(rng.dirichlet(np.full(6, 0.3), size=int(rng.integers(5, 60))))
        labels = [characters.index(c) for c in greedy_text(log_probs, characters)]
        if labels:
            assert best_path_spans(log_probs, labels, 5) == ctc_align(log_probs, labels, 5)
    # another transcript than the best path's: none (ctc_align's search is needed)
    log_probs = np.log(np.array([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9], [0.05, 0.9, 0.05]]))  # "ab", blank 2
    assert best_path_spans(log_probs, [0, 1], 2) == [(0, 0), (2, 2)] and best_path_spans(log_probs, [1, 0], 2) is None
