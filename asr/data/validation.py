"""Checking utterances before training: each one is featurized and encoded, or rejected with the reason."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr.data.datasets import Utterance
from asr.data.extraction import FeatureCache, Job, Stats, extract_all
from asr.data.features import FeatureOptions, stacked_frames
from asr.data.text import Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One utterance ready for the model."""

    key: str
    text: str  # normalized transcript
    features: np.ndarray  # [T, F] float32
    labels: np.ndarray  # [L] int32
    # Features of the same audio at other speeds (augmentation); each epoch draws one of features + variants.
    variants: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Rejected:
    """An utterance left out, and why."""

    key: str
    kind: str  # unreadable_audio | empty_transcript | unknown_characters | ctc_infeasible
    reason: str


def ctc_min_frames(labels: np.ndarray) -> int:
    """Fewest frames CTC needs for a label sequence: its length plus one blank between each repeated pair."""
    return int(len(labels) + np.count_nonzero(labels[1:] == labels[:-1]))


def ctc_problem(frames: int, labels: np.ndarray, stride: int) -> str | None:
    """Why `frames` feature frames (model stride `stride`) cannot carry `labels` under CTC, or None."""
    steps = stacked_frames(frames, stride)
    if steps >= ctc_min_frames(labels):
        return None
    return (
        f"{steps} output steps ({frames} frames, stride {stride}) cannot hold {len(labels)} labels "
        f"(CTC needs {ctc_min_frames(labels)}); the audio is too short for its transcript"
    )


def text_problem(text: str, vocab: Vocabulary) -> tuple[str, str] | None:
    """(kind, reason) when a transcript cannot be trained on, else None."""
    unknown = vocab.unknown_characters(text)
    if unknown:
        return "unknown_characters", f"characters outside the vocabulary: {''.join(sorted(unknown))!r} in {text!r}"
    if not vocab.normalize(text):
        return "empty_transcript", "empty transcript (after normalization)"
    return None


def prepare_all(
    utterances: Sequence[Utterance],
    options: FeatureOptions,
    vocab: Vocabulary,
    stride: int = 1,
    desc: str = "features",
    speeds: Sequence[float] = (1.0,),
    cache: FeatureCache | None = None,
    workers: int = 1,
) -> tuple[list[Example], list[Rejected], Stats]:
    """Check, featurize and encode every utterance, in order; bad ones are returned as rejected, not raised.

    With several `speeds`, an example holds the features at each speed (the first as `features`, the rest as
    `variants`); a speed at which CTC becomes infeasible is left out for that utterance. `stride` is the
    model's frame stacking: CTC then has ceil(frames / stride) steps for the labels.
    """
    if not speeds or any(s <= 0 for s in speeds):
        raise ValueError(f"speed factors must be positive, got {list(speeds)}")
    rejected, usable = [], []
    for utterance in utterances:
        problem = text_problem(utterance.text, vocab)
        if problem:
            rejected.append(Rejected(utterance.key, *problem))
        else:
            usable.append(utterance)
    jobs = [Job(str(u.audio), u.start, u.end, speed) for u in usable for speed in speeds]
    features, stats = extract_all(jobs, options, cache, workers, desc)
    examples = []
    for n, utterance in enumerate(usable):
        first = n * len(speeds)
        text = vocab.normalize(utterance.text)
        labels = vocab.encode(text)
        if first in stats.errors:
            rejected.append(Rejected(utterance.key, "unreadable_audio", stats.errors[first]))
            continue
        problem = ctc_problem(len(features[first]), labels, stride)
        if problem:
            rejected.append(Rejected(utterance.key, "ctc_infeasible", problem))
            continue
        variants = tuple(
            f
            for f in features[first + 1 : first + len(speeds)]
            if f is not None and not ctc_problem(len(f), labels, stride)
        )
        examples.append(Example(utterance.key, text, features[first], labels, variants))
    for r in rejected:
        log.warning("skipping %s: %s", r.key, r.reason)
    return examples, rejected, stats
