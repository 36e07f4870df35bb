"""Test figures per speaker (result.json's `speakers`): the spread of the character error rate over the speakers a
manifest names (its `speaker` field), so that a mean over a few easy speakers does not hide the hard ones.

Each speaker's CER is the corpus-level LER of that speaker's utterances (as asr.data.text.error_rates); the
quartiles are over speakers, each speaker counting once whatever the number of their utterances.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from asr.data.text import error_rates
from asr.data.validation import Example

log = logging.getLogger(__name__)

WORST_SPEAKERS = 5  # the speakers with the highest CER listed by name (issue 36: "quartiles and worst five")
# The quartiles: numpy.percentile's default (linear interpolation between the closest ranks), as pandas' describe.
QUARTILES = {"min": 0, "q1": 25, "median": 50, "q3": 75, "max": 100}
DIGITS = 4  # rounding of the figures in result.json (a CER of 0.1234 = 12.34 %)


def speaker_spread(refs: Sequence[str], hyps: Sequence[str], speakers: Sequence[str | None]) -> dict | None:
    """The CER per speaker summarized: `n_speakers`, `cer` {min, q1, median, q3, max} over the speakers, `worst`
    [{speaker, cer, n}] (the WORST_SPEAKERS highest, ties by name), and `n_without_speaker` where some utterances
    name none (they are left out). None when no utterance names a speaker."""
    if not len(refs) == len(hyps) == len(speakers):
        raise ValueError(f"{len(refs)} references, {len(hyps)} hypotheses, {len(speakers)} speakers")
    grouped: dict[str, tuple[list[str], list[str]]] = {}
    for ref, hyp, speaker in zip(refs, hyps, speakers, strict=True):
        if speaker is not None:
            pair = grouped.setdefault(speaker, ([], []))
            pair[0].append(ref)
            pair[1].append(hyp)
    if not grouped:
        return None
    per_speaker = {s: (error_rates(r, h)["ler"], len(r)) for s, (r, h) in grouped.items()}
    rates = np.array([cer for cer, _ in per_speaker.values()], np.float64)
    worst = sorted(per_speaker.items(), key=lambda item: (-item[1][0], item[0]))[:WORST_SPEAKERS]
    figures = {
        "n_speakers": len(per_speaker),
        "cer": {name: round(float(np.percentile(rates, q)), DIGITS) for name, q in QUARTILES.items()},
        "worst": [{"speaker": s, "cer": round(cer, DIGITS), "n": n} for s, (cer, n) in worst],
    }
    unnamed = sum(speaker is None for speaker in speakers)
    if unnamed:
        figures["n_without_speaker"] = unnamed
    return figures


def split_speakers(examples: Sequence[Example], hyps: Sequence[str]) -> dict | None:
    """speaker_spread of a test split's transcripts; a speaker is one name within one split path (the same name
    in two corpora is two people: named `<path>: <name>` when the split has several paths)."""
    several = len({e.source for e in examples}) > 1
    names = [None if e.speaker is None else f"{e.source}: {e.speaker}" if several else e.speaker for e in examples]
    return speaker_spread([e.text for e in examples], hyps, names)


def describe(figures: dict) -> str:
    """One console line: the speaker count, the quartiles of their CER, the worst speaker."""
    cer, worst = figures["cer"], figures["worst"][0]
    return (
        f"per speaker ({figures['n_speakers']}): CER median {cer['median']:.4f} (q1 {cer['q1']:.4f}, q3 "
        f"{cer['q3']:.4f}, min {cer['min']:.4f}, max {cer['max']:.4f}); worst {worst['speaker']} "
        f"{worst['cer']:.4f} over {worst['n']} utterances"
    )
