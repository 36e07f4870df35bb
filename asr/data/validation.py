"""Checking utterances before training: each one is featurized and encoded, or rejected with the reason."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from asr.data.datasets import DatasetError, Utterance
from asr.data.extraction import AudioFacts, FeatureCache, Job, Stats, StoredFeatures, extract_all
from asr.data.features import FeatureOptions, stacked_frames
from asr.data.options import UnknownCharacters
from asr.data.perturbation import babble_talkers
from asr.data.text import Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """One utterance ready for the model."""

    key: str
    text: str  # normalized transcript
    features: np.ndarray | StoredFeatures  # [T, F] float32, in memory or left in the feature cache
    labels: np.ndarray  # [L] int32
    # Features of the same audio at other speeds (augmentation); each epoch draws one of features + variants.
    variants: tuple[np.ndarray | StoredFeatures, ...] = ()
    source: str = ""  # the split path it was read from (Utterance.source)
    speaker: str | None = None  # Utterance.speaker (per-speaker test figures)


@dataclass(frozen=True)
class Problem:
    """An utterance left out (rejected) or used with a warning, and why."""

    key: str
    # rejected: missing_transcript | transcript_not_utf8 | missing_audio | unreadable_audio | silent_audio |
    # empty_transcript | unknown_characters | ctc_infeasible | too_long; warnings: clipping | speaking_rate |
    # unknown_characters (dropped)
    kind: str
    reason: str


# Characters per second of audio (transcript length / duration) outside this range draw a warning: speech runs
# at 8-18 here (every file in ../shared/data lies within 1.0-27.5); far outside, the transcript or the audio is
# probably not the right one, or the recording is mostly silence.
SPEAKING_RATE = (1.0, 30.0)


@dataclass
class Checked:
    """What checking a split found: the usable examples, the rejected items, the warnings, how many files were
    converted (channels, sample_rate, sample_format: counts), and what extraction did."""

    examples: list[Example]
    rejected: list[Problem]
    warnings: list[Problem]
    converted: Counter
    stats: Stats


class UnknownCharactersError(DatasetError):
    """data.unknown_characters=raise met a transcript with characters outside the vocabulary."""


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


def text_problem(
    utterance: Utterance, vocab: Vocabulary, unknown: UnknownCharacters = UnknownCharacters.skip
) -> tuple[str | None, Problem | None]:
    """(normalized text or None, a problem or None) for an utterance's transcript: None text when it cannot be
    trained on (the problem says why); with unknown=drop the characters outside the vocabulary are removed and
    the problem is a warning; with unknown=raise they raise UnknownCharactersError."""
    key = utterance.key
    if utterance.problem is not None:
        return None, Problem(key, *utterance.problem)
    if utterance.text is None:
        return None, Problem(key, "missing_transcript", "no transcript")
    text = vocab.normalize(utterance.text)
    if outside := "".join(sorted({c for c in text if c not in vocab.characters})):
        reason = f"characters outside the vocabulary: {outside!r} in {utterance.text!r}"
        if unknown == UnknownCharacters["raise"]:
            raise UnknownCharactersError(
                f"{key}: {reason} (data.unknown_characters=raise; skip leaves the utterance out, drop removes "
                f"the characters, or add them to data.characters)"
            )
        if unknown == UnknownCharacters.skip:
            return None, Problem(key, "unknown_characters", reason)
        text = " ".join("".join(c for c in text if c in vocab.characters).split())
        if text:
            return text, Problem(key, "unknown_characters", f"{reason}: dropped, trained on {text!r}")
    if not text:
        return None, Problem(key, "empty_transcript", "empty transcript (after normalization)")
    return text, None


def audio_warnings(key: str, text: str, frames: int, facts: AudioFacts, options: FeatureOptions) -> list[Problem]:
    """Warnings about a usable utterance: clipped audio, a speaking rate outside SPEAKING_RATE."""
    found = []
    if clipping := facts.levels().clipping():
        found.append(Problem(key, "clipping", clipping))
    seconds = options.seconds(frames)
    rate = len(text) / seconds
    low, high = SPEAKING_RATE
    if not low <= rate <= high:
        found.append(
            Problem(
                key,
                "speaking_rate",
                f"{len(text)} characters in {seconds:.2f} s ({rate:.1f} per second, outside {low:g}-{high:g}): "
                f"check that the transcript belongs to this audio",
            )
        )
    return found


def prepare_all(
    utterances: Sequence[Utterance],
    options: FeatureOptions,
    vocab: Vocabulary,
    stride: int = 1,
    desc: str = "features",
    speeds: Sequence[float] = (1.0,),
    cache: FeatureCache | None = None,
    workers: int = 1,
    unknown: UnknownCharacters = UnknownCharacters.skip,
    on_disk: bool = False,
    max_seconds: float | None = None,
    trim: bool = False,
    warps: Sequence[float] = (),
    snrs: Sequence[float] = (),
    rt60s: Sequence[float] = (),
    babble_snrs: Sequence[float] = (),
) -> Checked:
    """Check, featurize and encode every utterance, in order; bad ones are returned as rejected, not raised
    (except under unknown=raise), doubtful ones as warnings.

    With several `speeds`, an example holds the features at each speed (the first as `features`, the rest as
    `variants`); a speed at which CTC becomes infeasible is left out for that utterance. `stride` is the
    model's frame stacking: CTC then has ceil(frames / stride) steps for the labels. With `on_disk` (and a
    cache) the features stay in the cache (StoredFeatures). Utterances longer than `max_seconds` are
    rejected (too_long). With `trim` the silence around each utterance's speech is cut first (Job.trim). Each
    of `warps` (VTLP), `snrs` (added noise), `babble_snrs` (the babble of other usable utterances) and `rt60s`
    (reverberation) makes one more variant at speed 1 (asr.data.perturbation).
    """
    if not speeds or any(s <= 0 for s in speeds):
        raise ValueError(f"speed factors must be positive, got {list(speeds)}")
    rejected, warnings, usable = [], [], []
    for utterance in utterances:
        text, problem = text_problem(utterance, vocab, unknown)
        if text is None:
            rejected.append(problem)
            continue
        if problem:
            warnings.append(problem)
        usable.append((utterance, text))
    kinds = [Job("", speed=s) for s in speeds] + [Job("", warp=w) for w in warps] + [Job("", snr_db=s) for s in snrs]
    kinds += [Job("", rt60=r) for r in rt60s] + [Job("", snr_db=s) for s in babble_snrs]
    sources = [(str(u.audio), u.start, u.end) for u, _ in usable]
    talkers = [babble_talkers([u.key for u, _ in usable], [u.speaker for u, _ in usable], s) for s in babble_snrs]
    jobs = [
        replace(kind, audio=audio, start=start, end=end, trim=trim) for audio, start, end in sources for kind in kinds
    ]
    for n in range(len(usable)):  # the babble variants come last: each with its own talkers
        for b, chosen in enumerate(talkers):
            k = n * len(kinds) + len(kinds) - len(talkers) + b
            jobs[k] = replace(jobs[k], babble=tuple(sources[t] for t in chosen[n]))
    features, stats = extract_all(jobs, options, cache, workers, desc, on_disk)
    examples, converted = [], Counter()
    for n, (utterance, text) in enumerate(usable):
        first = n * len(kinds)
        labels = vocab.encode(text)
        if first in stats.errors:
            rejected.append(Problem(utterance.key, stats.error_kinds[first], stats.errors[first]))
            continue
        problem = ctc_problem(len(features[first]), labels, stride)
        if problem:
            rejected.append(Problem(utterance.key, "ctc_infeasible", problem))
            continue
        seconds = options.seconds(len(features[first]))
        if max_seconds is not None and seconds > max_seconds:
            reason = f"{seconds:.1f} s of audio, longer than data.max_seconds={max_seconds:g}; raise it to train on it"
            rejected.append(Problem(utterance.key, "too_long", reason))
            continue
        facts = stats.facts[first]
        converted.update(facts.conversions(options.sample_rate))
        warnings += audio_warnings(utterance.key, text, len(features[first]), facts, options)
        variants = tuple(
            f
            for f in features[first + 1 : first + len(kinds)]
            if f is not None and not ctc_problem(len(f), labels, stride)
        )
        examples.append(
            Example(utterance.key, text, features[first], labels, variants, utterance.source, utterance.speaker)
        )
    for r in rejected:
        log.warning("skipping %s: %s", r.key, r.reason)
    for w in warnings:
        log.warning("warning for %s: %s", w.key, w.reason)
    return Checked(examples, rejected, warnings, converted, stats)
