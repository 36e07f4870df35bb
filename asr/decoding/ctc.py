"""CTC decoding: greedy and beam search over logits, to label ids and to text (TensorFlow's decoders); the NumPy
alignment, word times and confidences are in asr.decoding.alignment (re-exported here)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from asr.data.text import Vocabulary
from asr.decoding.alignment import (  # noqa: F401  (re-exported: callers import them from here)
    aligned_words,
    ctc_align,
    log_softmax,
    transcript_confidence,
    utterance_log_probs,
    word_timestamps,
)


def text_table(characters: str) -> tf.Tensor:
    """String per label id [C]: the characters, then "" for the blank (the last class)."""
    return tf.constant(list(characters) + [""])


def sparse_to_strings(ids: tf.SparseTensor, table: tf.Tensor) -> tf.Tensor:
    """Label ids sparse [B, (L)] -> texts [B] (a batch of empty transcripts still gives B strings)."""
    blank = tf.cast(tf.shape(table)[0] - 1, ids.values.dtype)
    dense = tf.sparse.to_dense(ids, default_value=blank)  # [B, L]
    return tf.strings.reduce_join(tf.gather(table, dense), axis=-1)


def greedy_sparse(logits: tf.Tensor, lengths: tf.Tensor, blank_index: int) -> tf.SparseTensor:
    """Best path: argmax per frame, repeats merged, blanks dropped. logits [B, T, C] -> int64 sparse [B, (L)]."""
    decoded, _ = tf.nn.ctc_greedy_decoder(
        tf.transpose(logits, [1, 0, 2]),  # time major [T, B, C]
        tf.cast(lengths, tf.int32),
        merge_repeated=True,
        blank_index=blank_index,
    )
    return decoded[0]


def beam_sparse(
    logits: tf.Tensor, lengths: tf.Tensor, beam_width: int, top_paths: int = 1
) -> tuple[list[tf.SparseTensor], tf.Tensor]:
    """Beam search (blank = last class). Returns top_paths sparse [B, (L)] results and log-probs [B, top_paths]."""
    decoded, log_probs = tf.nn.ctc_beam_search_decoder(
        tf.transpose(logits, [1, 0, 2]),
        tf.cast(lengths, tf.int32),
        beam_width=beam_width,
        top_paths=top_paths,
    )
    return decoded, log_probs


def sparse_to_lists(sparse: tf.SparseTensor, batch_size: int) -> list[list[int]]:
    """Sparse [B, (L)] ids -> B Python lists (rows with no entries become empty lists)."""
    rows: list[list[int]] = [[] for _ in range(batch_size)]
    for (row, _), value in zip(sparse.indices.numpy(), sparse.values.numpy(), strict=True):
        rows[row].append(int(value))
    return rows


def decode_batch(
    logits: np.ndarray | tf.Tensor, lengths: np.ndarray | tf.Tensor, vocab: Vocabulary, beam_width: int = 0
) -> list[str]:
    """Logits [B, T, C] with true frame counts [B] -> B transcripts; beam_width 0 or 1 means greedy."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    batch = int(logits.shape[0])
    if beam_width > 1:
        if vocab.blank_index != logits.shape[-1] - 1:
            raise ValueError("beam search needs the blank as the last class")
        sparse = beam_sparse(logits, lengths, beam_width)[0][0]
    else:
        sparse = greedy_sparse(logits, lengths, vocab.blank_index)
    return [vocab.decode(ids) for ids in sparse_to_lists(sparse, batch)]


def nbest(
    logits: np.ndarray | tf.Tensor, lengths: np.ndarray | tf.Tensor, vocab: Vocabulary, beam_width: int, k: int
) -> list[list[dict]]:
    """The k best transcripts per utterance by beam search, each {text, score} (score: log probability)."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    if k > beam_width:
        raise ValueError(f"--n-best {k} needs a beam at least as wide (--beam-width {beam_width})")
    decoded, log_probs = beam_sparse(logits, lengths, beam_width, top_paths=k)
    batch = int(logits.shape[0])
    per_path = [sparse_to_lists(d, batch) for d in decoded]
    return [
        [{"text": vocab.decode(per_path[j][i]), "score": round(float(log_probs[i, j]), 4)} for j in range(k)]
        for i in range(batch)
    ]
