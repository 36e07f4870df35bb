"""The model over batches of feature matrices, for training's evaluation and its language model's tuning (the
recognizer, asr.inference.recognizer, is what transcribes audio)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from asr.decoding.ctc import decode_batch, nbest, transcript_confidence, utterance_log_probs, word_timestamps
from asr.inference.bundle import Bundle
from asr.inference.options import DEFAULT_BATCH_SIZE, DecodeOptions
from asr.model.ctc import CTCModel

log = logging.getLogger(__name__)

GREEDY = DecodeOptions()  # greedy transcripts alone, batches of DEFAULT_BATCH_SIZE


def inference_function(model: CTCModel) -> Callable[[np.ndarray, np.ndarray], tf.Tensor]:
    """model as one graph over any batch shape (traced once, not per shape): features, lengths -> logits."""
    signature = [
        tf.TensorSpec([None, None, model.num_features], tf.float32),
        tf.TensorSpec([None], tf.int32),
    ]
    return tf.function(lambda f, n: model({"features": f, "lengths": n}, training=False), input_signature=signature)


def decode_features(
    bundle: Bundle,
    features: Sequence[np.ndarray],
    options: DecodeOptions = GREEDY,
    infer: Callable | None = None,
) -> list[dict]:
    """Decode feature matrices [T, F] with the bundle's model (and its language model, if any), batched by length,
    in input order: {"text"} per item, plus "nbest" [{text, score}] with options.n_best, "words" [{word, start, end,
    confidence}] with options.timestamps and "confidence" with options.confidence (asr.decoding.ctc.aligned_words).
    With a language model the transcript is its beam search's (n_best then lists the acoustic model's own beam).
    `infer`: a traced inference_function to reuse across calls."""
    model, vocab, lm = bundle.model, bundle.vocab, bundle.lm
    n_best = options.n_best
    results: list[dict] = [{} for _ in features]
    for batch, logits, out_lengths in _logit_batches(model, features, options.batch_size, infer):
        lists = nbest(logits, out_lengths, vocab, max(options.beam_width, n_best), n_best) if n_best else None
        aligned = options.timestamps or options.confidence
        rows = utterance_log_probs(logits, out_lengths) if lm is not None or aligned else None
        if lm is not None:
            texts = [lm.decode(log_probs, vocab.characters) for log_probs in rows]
        elif lists is not None:  # the transcript is the best of the listed paths, from the same beam search
            texts = [candidates[0]["text"] for candidates in lists]
        else:
            texts = decode_batch(logits, out_lengths, vocab, options.beam_width)
        for row, i in enumerate(batch):
            results[i]["text"] = texts[row]
            if lists is not None:
                results[i]["nbest"] = lists[row]
            if options.timestamps:
                results[i]["words"] = word_timestamps(texts[row], rows[row], vocab, bundle.seconds_per_step)
            if options.confidence:
                results[i]["confidence"] = transcript_confidence(texts[row], rows[row], vocab)
    return results


def features_log_probs(
    model: CTCModel, features: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH_SIZE, infer: Callable | None = None
) -> list[np.ndarray]:
    """Per-frame log probabilities [T', C] of feature matrices [T, F], batched by length, in input order."""
    results: list[np.ndarray] = [np.zeros((0, 0))] * len(features)
    for batch, logits, out_lengths in _logit_batches(model, features, batch_size, infer):
        for i, log_probs in zip(batch, utterance_log_probs(logits, out_lengths), strict=True):
            results[i] = log_probs
    return results


def _logit_batches(
    model: CTCModel, features: Sequence[np.ndarray], batch_size: int, infer: Callable | None
) -> Iterator[tuple[list[int], tf.Tensor, np.ndarray]]:
    """(item indices, logits [B, T', C], logit frames [B]) for batches of items of similar length."""
    infer = infer or inference_function(model)
    order = sorted(range(len(features)), key=lambda i: len(features[i]))
    for begin in range(0, len(order), batch_size):
        batch = order[begin : begin + batch_size]
        lengths = np.array([len(features[i]) for i in batch], dtype=np.int32)
        padded = np.zeros((len(batch), lengths.max(), model.num_features), np.float32)
        for row, i in enumerate(batch):
            padded[row, : lengths[row]] = features[i]
        yield batch, infer(padded, lengths), model.output_lengths(lengths).numpy()
