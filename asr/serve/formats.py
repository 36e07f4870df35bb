"""A Transcript in the response formats of OpenAI's /v1/audio/transcriptions: json, text, srt, vtt, verbose_json
(no FastAPI here). Subtitles are cut from the words' times into cues of readable length, never across a
segment's end; without word times, one cue per segment."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

from asr.inference.results import Segment, Transcript, Word

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}
# A subtitle cue holds at most two lines of 42 characters and lasts at most 7 s (the line length and longest
# duration of the BBC's and Netflix's subtitle guidelines).
CUE_MAX_CHARS = 84
CUE_MAX_SECONDS = 7.0
TIME_DIGITS = 3  # times in milliseconds, as asr-transcribe --json's
CONFIDENCE_DIGITS = 4  # as asr-transcribe --json's
TASK = "transcribe"


def needs_words(response_format: str, granularities: Sequence[str]) -> bool:
    """Whether the response needs word times: subtitles (cues cut at words) or verbose_json's `words`."""
    return response_format in ("srt", "vtt") or (response_format == "verbose_json" and "word" in granularities)


def as_json(transcript: Transcript) -> dict:
    """`json`: the text, and the seconds of audio billed as OpenAI's `usage` reports them (whole seconds, up)."""
    return {"text": transcript.text, "usage": {"type": "duration", "seconds": math.ceil(transcript.duration)}}


def as_text(transcript: Transcript) -> str:
    """`text`: the transcript and a line end."""
    return transcript.text + "\n"


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression (Whisper's repetition measure; 0 for no text)."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), TIME_DIGITS) if data else 0.0


def as_verbose_json(transcript: Transcript, language: str, granularities: Sequence[str]) -> dict:
    """`verbose_json`: task, language, duration, text, the segments (id, start, end, text, confidence,
    temperature 0: decoding draws nothing at random, compression_ratio) and, for the `word` granularity, the words
    (word, start, end, probability: the word's confidence)."""
    record: dict = {
        "task": TASK,
        "language": language,
        "duration": round(transcript.duration, TIME_DIGITS),
        "text": transcript.text,
    }
    if "segment" in granularities or not granularities:
        record["segments"] = [
            {
                "id": index,
                "start": round(s.start, TIME_DIGITS),
                "end": round(s.end, TIME_DIGITS),
                "text": s.text,
                "confidence": round(s.confidence, CONFIDENCE_DIGITS),
                "temperature": 0.0,
                "compression_ratio": compression_ratio(s.text),
            }
            for index, s in enumerate(s for s in transcript.segments if s.text)
        ]
    if "word" in granularities:
        record["words"] = [
            {
                "word": w.word,
                "start": round(w.start, TIME_DIGITS),
                "end": round(w.end, TIME_DIGITS),
                "probability": round(w.confidence, CONFIDENCE_DIGITS),
            }
            for w in transcript.words or ()
        ]
    return record


def cues(transcript: Transcript) -> list[tuple[float, float, str]]:
    """Subtitle cues (start, end, text): each segment's words grouped into cues of at most CUE_MAX_CHARS
    characters and CUE_MAX_SECONDS seconds (a longer single word is a cue alone); a segment without words is
    one cue."""
    found: list[tuple[float, float, str]] = []
    for segment in transcript.segments:
        if not segment.text:
            continue
        if not segment.words:
            found.append((segment.start, segment.end, segment.text))
            continue
        found += _word_cues(segment)
    return found


def _word_cues(segment: Segment) -> list[tuple[float, float, str]]:
    """One segment's words as cues."""
    groups: list[list[Word]] = [[]]
    for word in segment.words:
        group = groups[-1]
        if group:
            chars = sum(len(w.word) + 1 for w in group) + len(word.word)
            if chars > CUE_MAX_CHARS or word.end - group[0].start > CUE_MAX_SECONDS:
                groups.append(group := [])
        group.append(word)
    return [(g[0].start, g[-1].end, " ".join(w.word for w in g)) for g in groups if g]


def _clock(seconds: float, separator: str) -> str:
    """HH:MM:SS<separator>mmm."""
    millis = max(round(seconds * 1000), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def as_srt(transcript: Transcript) -> str:
    """SubRip: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, a blank line after each."""
    blocks = [
        f"{n}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n"
        for n, (start, end, text) in enumerate(cues(transcript), start=1)
    ]
    return "\n".join(blocks)


def as_vtt(transcript: Transcript) -> str:
    """WebVTT: the WEBVTT header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm`, a blank line before each."""
    blocks = [f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n" for start, end, text in cues(transcript)]
    return "\n".join(["WEBVTT\n", *blocks])
