"""The language model a run fits after training (lm.order): a character n-gram of the training transcripts (and
lm.text), with the weights that decode the validation split best; with lm.kind=word a word n-gram on top."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from asr.data.text import Vocabulary
from asr.decoding.lm import NgramLM
from asr.decoding.lm_search import ExtraText, LMDecoder, estimate_character_lm, tune_weights, tune_word_weights
from asr.inference.transcribe import features_log_probs
from asr.model.ctc import CTCModel
from asr.model.options import LMKind, LMOptions

log = logging.getLogger(__name__)


def fit_lm(
    options: LMOptions,
    model: CTCModel,
    vocab: Vocabulary,
    examples: dict,
    batch_size: int,
    infer: Callable,
    extra: ExtraText | None = None,
) -> tuple[LMDecoder, dict]:
    """A character language model of the training transcripts (and of `extra`, lm.text), with the weights of
    those listed in `options` that decode the validation split best; and what was tried (for result.json)."""
    started = time.perf_counter()
    texts = [e.text for e in examples["train"]] + list(extra.sentences if extra is not None else ())
    lm = estimate_character_lm(texts, options.order)
    valid = examples["valid"]
    log_probs = features_log_probs(model, [e.features for e in valid], batch_size, infer)
    decoder, tried = tune_weights(
        LMDecoder(lm, beam_width=options.beam_width),
        log_probs,
        [e.text for e in valid],
        vocab.characters,
        options.alphas,
        options.betas,
    )
    if options.kind == LMKind.word:  # the word model on top of the character model's chosen pair
        words = NgramLM.estimate(texts, options.word_order)
        decoder, more = tune_word_weights(
            replace(decoder, words=words),
            log_probs,
            [e.text for e in valid],
            vocab.characters,
            options.word_weights,
            options.unknown_penalties,
        )
        tried += more
    log.info(
        "%s (of %d settings tried on %d validation utterances)", describe_lm(options, decoder), len(tried), len(valid)
    )
    report = {
        "kind": str(options.kind),
        "order": options.order,
        "alpha": decoder.weights.alpha,
        "beta": decoder.weights.beta,
        "beam_width": decoder.beam_width,
        "tried": tried,
        "seconds": round(time.perf_counter() - started, 3),
    }
    if options.kind == LMKind.word:
        report |= {"word_order": options.word_order, "word": decoder.weights.word, "unknown": decoder.weights.unknown}
    if extra is not None:
        report["text"] = extra.report
    return decoder, report


def describe_lm(options: LMOptions, decoder: LMDecoder) -> str:
    """The chosen language model in words, for the log."""
    weights = decoder.weights
    text = (
        f"character {options.order}-gram language model: weight {weights.alpha:g}, bonus {weights.beta:g} per character"
    )
    if options.kind == LMKind.word:
        text += (
            f"; word {options.word_order}-gram weight {weights.word:g}, penalty {weights.unknown:g} per unknown word"
        )
    return text
