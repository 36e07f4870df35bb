"""The recognizer: a bundle loaded once, behind every door (the Python API, asr-transcribe, its streams, the
server, the benchmarks), decoding with the same options the same way.

    import asr
    recognizer = asr.load("runs/demo/2026-12-06_10-00-00")      # a run, a bundle, or a shipped model's name
    recognizer.transcribe("long.wav").text                      # cut at its pauses when longer than the model's
    recognizer.transcribe(samples, sample_rate=16000)           # a float waveform (or the bytes of a file)
    session = recognizer.stream()                               # session.accept(pcm) -> Update; session.finish()

Every recording becomes pieces (asr.inference.sources: the whole of it, or cut at its pauses when longer than the
bundle's longest training utterance); a piece without speech is "" and never decoded; the others go through the
traced model in batches of similar length, then each is decoded alone (greedy, a beam, or the language model's
search with hotwords), aligned for its word times and confidence, and offset into the recording's time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from asr.data.audio import AudioError
from asr.decoding.alignment import greedy_text, log_softmax
from asr.decoding.ctc import decode_batch, nbest
from asr.decoding.hotwords import Hotword, HotwordError, hotwords_in, parse_hotword, read_hotwords
from asr.decoding.lm import NgramLM
from asr.decoding.lm_search import LMDecoder, LMWeights
from asr.errors import UserError
from asr.inference.bundle import Bundle, BundleError, find_bundle, load_bundle
from asr.inference.cutting import DEFAULT_MARGIN_SECONDS, Piece
from asr.inference.options import MIN_PAUSE_SECONDS, TranscribeOptions
from asr.inference.results import Segment, Transcript, combine, piece_segment, silent_segment
from asr.inference.sources import Audio, Source, open_audio, plan
from asr.models import ModelNotFoundError, resolve_model

log = logging.getLogger(__name__)

# Inputs of transcribe_many prepared and decoded together: their results come out after each group, in order.
GROUP_INPUTS = 256
LM_CHOICES = ("bundle", "none")
_KEEP = object()  # with_options: keep the option as it is


def load(
    path: str | Path,
    *,
    lm: str = "bundle",
    hotwords: str | Path | Sequence[str] | None = None,
    threads: int | None = None,
) -> Recognizer:
    """The recognizer of a run folder, a bundle folder or a shipped model's name (e.g. "base": models/base/ of the
    repository, asr.models), loaded once.

    lm: "bundle" (the bundle's language model, if it has one, read when first used), "none" (the acoustic model
    alone), or the path of an ARPA character model (used with the bundle's weights). hotwords: a file of words and
    phrases (one per line, optionally "word:weight"), or a list of phrases, favoured by the beam search.
    threads: TensorFlow's threads (None: its default; only before TensorFlow has run anything)."""
    directory = find_bundle(resolve_model(path))
    if threads is not None:
        _set_threads(threads)
    bundle = load_bundle(directory, language_model=False)
    name = directory.parent.name if directory.name == "model" else directory.name
    shared = _Shared(bundle, directory, name, _traced(bundle))
    return Recognizer(shared, lm, hotwords)


def _set_threads(threads: int) -> None:
    """TensorFlow's intra- and inter-op threads (a warning when it has started already and keeps its own)."""
    import tensorflow as tf

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.warning("threads=%d ignored: TensorFlow has started already with its own", threads)


def _traced(bundle: Bundle) -> Callable:
    """The model as one graph over any batch shape, traced and run once (loading pays for it, not the first file)."""
    from asr.inference.transcribe import inference_function

    infer = inference_function(bundle.model)
    silence = np.zeros((2, 3 * bundle.model.stride, bundle.model.num_features), np.float32)
    infer(silence, np.array([len(silence[0])] * 2, np.int32))
    return infer


@dataclass
class _Shared:
    """What every Recognizer of one load shares: the bundle, the traced model, and the language models read so far
    (by choice: "bundle", "none" or an ARPA path)."""

    bundle: Bundle
    directory: Path
    name: str
    infer: Callable
    lms: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def language_model(self, choice: str) -> LMDecoder | None:
        """The language model of a choice, read on first use."""
        with self.lock:
            if choice not in self.lms:
                self.lms[choice] = self._read(choice)
            return self.lms[choice]

    def _read(self, choice: str) -> LMDecoder | None:
        source = self.bundle.lm_source
        if choice == "none":
            return None
        if choice == "bundle":
            return None if source is None else source.load()
        weights = source.weights() if source is not None else LMWeights()
        return LMDecoder(NgramLM.read_arpa(Path(choice)), weights)


@dataclass
class _Job:
    """One input of a group: its source (or the error reading it), pieces, their features (None: no speech) and
    log probabilities, and the seconds spent on it so far."""

    source: Source | None
    error: AudioError | None = None
    pieces: tuple[Piece, ...] = ()
    features: list = field(default_factory=list)
    log_probs: list = field(default_factory=list)
    texts: list = field(default_factory=list)  # per piece, once decoded
    seconds: float = 0.0


class Recognizer:
    """A loaded model with its decoding choices (language model, hotwords). Cheap to copy with other choices
    (with_options); safe to share between threads."""

    def __init__(self, shared: _Shared, lm: str | Path = "bundle", hotwords=None) -> None:
        self._shared = shared
        self.lm = _check_lm(str(lm))
        self.hotwords = _read_hotword_option(hotwords, shared.bundle)
        if self.lm == "none" and shared.bundle.lm_source is not None:
            problem = shared.bundle.lm_source.problem()
            if problem:
                log.warning("%s: %s (unused: lm='none')", shared.bundle.lm_source.path, problem)

    @property
    def bundle(self) -> Bundle:
        """The loaded bundle (its language model unread: see language_model())."""
        return self._shared.bundle

    @property
    def name(self) -> str:
        """The model's name: its run folder's, its bundle folder's, or the shipped model's."""
        return self._shared.name

    @property
    def sample_rate(self) -> int:
        """The rate the model hears (audio at other rates is resampled to it)."""
        return self.bundle.features.sample_rate

    @property
    def margins(self) -> tuple[float, float]:
        """Silence kept before and after the speech of each piece of a long recording, seconds."""
        return self.bundle.margins or (DEFAULT_MARGIN_SECONDS, DEFAULT_MARGIN_SECONDS)

    def info(self) -> dict:
        """What the model is: name, path, sample_rate, vocabulary, max_seconds, has_lm, streamable (a stream's
        partial text grows step by step, not recomputed), the model settings, the decoding choices."""
        from asr.inference.stream import streamable

        options = self.bundle.model.options
        return {
            "name": self.name,
            "path": str(self._shared.directory),
            "sample_rate": self.sample_rate,
            "vocabulary": self.bundle.vocab.characters,
            "max_seconds": self.bundle.max_seconds,
            "has_lm": self.bundle.lm_source is not None,
            "streamable": streamable(self.bundle),
            "model": {
                "num_layers": options.num_layers,
                "units": options.units,
                "bidirectional": options.bidirectional,
                "stride": options.stride,
                "lookahead": options.lookahead,
                "conv_layers": options.conv_layers,
                "parameters": int(self.bundle.model.count_params()),
                "normalize": str(self.bundle.features.normalize),
            },
            "lm": self.lm,
            "hotwords": None if self.hotwords is None else [h.text for h in self.hotwords],
        }

    def with_options(self, *, lm=_KEEP, hotwords=_KEEP) -> Recognizer:
        """This recognizer with another language model or hotwords (the same loaded model and traced graph)."""
        copy = Recognizer(self._shared, self.lm if lm is _KEEP else lm, None)
        copy.hotwords = self.hotwords if hotwords is _KEEP else _read_hotword_option(hotwords, self.bundle)
        return copy

    def language_model(self) -> LMDecoder | None:
        """The chosen language model (read now if it was not yet), without hotwords; None for none."""
        return self._shared.language_model(self.lm)

    def ready(self) -> Recognizer:
        """This recognizer with its language model read (a damaged one fails now, naming its file)."""
        self.language_model()
        return self

    def decoder(self, options: TranscribeOptions) -> LMDecoder | None:
        """The beam search that decodes with `options` (the language model and hotwords), or None for the acoustic
        model alone (greedy, or TensorFlow's beam)."""
        if options.greedy:
            if self.hotwords is not None:
                raise ValueError("beam_width 1 decodes greedily, which cannot favour hotwords: use 0 or a wider beam")
            if self.lm not in LM_CHOICES:
                raise ValueError(f"beam_width 1 decodes greedily, without the language model {self.lm}: use 0 or > 1")
            return None
        found = self.language_model()
        if self.hotwords is not None:
            found = replace(found or LMDecoder(None, LMWeights(0.0, 0.0)), hotwords=self.hotwords)
        if found is not None and options.beam_width > 1:
            found = replace(found, beam_width=options.beam_width)
        return found

    def transcribe(
        self,
        audio: Audio,
        *,
        sample_rate: int | None = None,
        beam_width: int = 0,
        timestamps: bool = False,
        n_best: int = 0,
        min_pause: float = MIN_PAUSE_SECONDS,
    ) -> Transcript:
        """The transcript of a recording: a path, the bytes of an audio file, or a mono waveform (float in [-1, 1]
        at `sample_rate`). A recording longer than the model's longest training utterance is cut at pauses of at
        least `min_pause` seconds. AudioError for audio that cannot be read."""
        options = TranscribeOptions(beam_width, n_best, timestamps, min_pause)
        ((result, _),) = self.timed_many([audio], options, sample_rate)
        if isinstance(result, AudioError):
            raise result
        return result

    def transcribe_many(
        self,
        items: Iterable[Audio],
        *,
        sample_rate: int | None = None,
        beam_width: int = 0,
        timestamps: bool = False,
        n_best: int = 0,
        min_pause: float = MIN_PAUSE_SECONDS,
        batch_size: int | None = None,
    ) -> Iterator[Transcript | AudioError]:
        """Transcripts of several recordings, in order (each as transcribe() gives it; an AudioError in place of one
        that cannot be read), their pieces run through the model in batches of similar length."""
        options = TranscribeOptions(beam_width, n_best, timestamps, min_pause)
        if batch_size is not None:
            options = replace(options, batch_size=batch_size)
        for result, _ in self.timed_many(items, options, sample_rate):
            yield result

    def timed_many(
        self, items: Iterable[Audio], options: TranscribeOptions, sample_rate: int | None = None
    ) -> Iterator[tuple[Transcript | AudioError, float]]:
        """transcribe_many's results with the seconds each took: its reading, features and decoding, and its
        share of the model's batches by frames."""
        decoder = self.decoder(options)
        items = iter(items)
        while group := list(islice(items, GROUP_INPUTS)):
            jobs = [self._prepare(item, options, sample_rate) for item in group]
            self._run_model(jobs, options.batch_size)
            self._decode(jobs, decoder, options)
            for job in jobs:
                if job.error is not None:
                    yield job.error, job.seconds
                    continue
                started = time.perf_counter()
                transcript = self._finish(job, decoder, options)
                yield transcript, job.seconds + time.perf_counter() - started

    def stream(self, sample_rate: int | None = None, *, min_pause: float | None = None, beam_width: int = 0):
        """A StreamSession: audio in chunks as it comes (at `sample_rate`, default the model's), segments closed at
        its pauses and decoded as pieces of a file are (asr.inference.stream)."""
        from asr.inference.stream import StreamSession

        return StreamSession(self, sample_rate or self.sample_rate, min_pause=min_pause, beam_width=beam_width)

    # The steps of timed_many, also used by the streams

    def _prepare(self, item: Audio, options: TranscribeOptions, sample_rate: int | None) -> _Job:
        """Read an input, cut it into pieces and compute the features of those with speech."""
        started = time.perf_counter()
        try:
            if getattr(item, "problem", None):
                raise AudioError(item.audio, item.problem[1])
            source = open_audio(item, self.sample_rate, sample_rate)
            pieces = plan(source, self.bundle.max_seconds, self.margins, options.min_pause)
            features = [self.bundle.featurize(source.samples(p)) if p.speech else None for p in pieces]
        except AudioError as e:
            return _Job(None, e, seconds=time.perf_counter() - started)
        return _Job(source, None, tuple(pieces), features, [None] * len(pieces), seconds=time.perf_counter() - started)

    def _run_model(self, jobs: Sequence[_Job], batch_size: int) -> None:
        """Log probabilities of every piece with features, batched by length; each job's share of the time."""
        model, infer = self.bundle.model, self._shared.infer
        entries = [(job, k) for job in jobs for k, f in enumerate(job.features) if f is not None]
        entries.sort(key=lambda entry: len(entry[0].features[entry[1]]))
        for begin in range(0, len(entries), batch_size):
            started = time.perf_counter()
            batch = entries[begin : begin + batch_size]
            lengths = np.array([len(job.features[k]) for job, k in batch], np.int32)
            padded = np.zeros((len(batch), lengths.max(), model.num_features), np.float32)
            for row, (job, k) in enumerate(batch):
                padded[row, : lengths[row]] = job.features[k]
            logits = np.asarray(infer(padded, lengths))
            steps = model.output_lengths(lengths).numpy()
            for row, (job, k) in enumerate(batch):
                job.log_probs[k] = log_softmax(logits[row, : steps[row]])
            elapsed = time.perf_counter() - started
            for (job, _), frames in zip(batch, lengths, strict=True):
                job.seconds += elapsed * frames / lengths.sum()

    def _decode(self, jobs: Sequence[_Job], decoder: LMDecoder | None, options: TranscribeOptions) -> None:
        """The text of every piece with log probabilities: the language model's search over all of them at once
        (LMDecoder.decode_many: pieces of similar length searched together), a beam, or greedy; each job's share of
        the time."""
        entries = [(job, k) for job in jobs for k, lp in enumerate(job.log_probs) if lp is not None]
        for job in jobs:
            job.texts = [""] * len(job.pieces)
        started = time.perf_counter()
        rows = [job.log_probs[k] for job, k in entries]
        characters = self.bundle.vocab.characters
        if decoder is not None:
            texts = decoder.decode_many(rows, characters)
        elif options.beam_width > 1:
            texts = [self._beam(row, options.beam_width) for row in rows]
        else:
            texts = [greedy_text(row, characters) for row in rows]
        elapsed, frames = time.perf_counter() - started, sum(len(row) for row in rows) or 1
        for (job, k), text, row in zip(entries, texts, rows, strict=True):
            job.texts[k] = text
            job.seconds += elapsed * len(row) / frames

    def _beam(self, log_probs: np.ndarray, width: int) -> str:
        """The best path of TensorFlow's beam search of one piece (the acoustic model alone)."""
        (text,) = decode_batch(log_probs[None], np.array([len(log_probs)]), self.bundle.vocab, width)
        return text

    def _finish(self, job: _Job, decoder: LMDecoder | None, options: TranscribeOptions) -> Transcript:
        """The transcript of a job whose pieces are decoded."""
        duration = job.source.duration
        cut = job.source.duration > self.bundle.max_seconds
        if options.n_best and not cut and job.log_probs[0] is not None:  # n best of a recording decoded whole
            lists = tuple(self._nbest(job.log_probs[0], options))
            if decoder is None:  # the transcript is the best of the listed paths, from the same beam
                job.texts[0] = lists[0]["text"]
        else:
            lists = ()
        segments = self._segments(job, duration)
        found = None
        if self.hotwords is not None:
            found = tuple(hotwords_in(" ".join(s.text for s in segments), self.hotwords))
        return combine(segments, duration, words=options.timestamps, cut=cut, nbest=lists, hotwords=found)

    def _segments(self, job: _Job, duration: float) -> list[Segment]:
        """The segments of a decoded job's pieces (a piece without speech: "")."""
        return [
            silent_segment(piece) if log_probs is None else self._segment(piece, text, log_probs, duration)
            for piece, log_probs, text in zip(job.pieces, job.log_probs, job.texts, strict=True)
        ]

    def decode_pieces(
        self,
        pieces: Sequence[tuple[Piece, np.ndarray]],
        decoder: LMDecoder | None,
        options: TranscribeOptions,
        duration: float,
    ) -> list[Segment]:
        """The segments of pieces given with their samples at the model's rate (a stream's closed segments),
        decoded as the pieces of a recording of `duration` seconds are."""
        features = [self.bundle.featurize(samples) if p.speech and len(samples) else None for p, samples in pieces]
        job = _Job(None, None, tuple(p for p, _ in pieces), features, [None] * len(pieces))
        self._run_model([job], options.batch_size)
        self._decode([job], decoder, options)
        return self._segments(job, duration)

    def greedy_texts(self, signals: Sequence[np.ndarray]) -> list[str]:
        """The greedy transcripts of waveforms at the model's rate, each decoded whole (a stream's partial text)."""
        features = [self.bundle.featurize(s) if len(s) else None for s in signals]
        job = _Job(None, None, (), features, [None] * len(signals))
        self._run_model([job], len(signals) or 1)
        characters = self.bundle.vocab.characters
        return ["" if lp is None else " ".join(greedy_text(lp, characters).split()) for lp in job.log_probs]

    def _segment(self, piece: Piece, text: str, log_probs: np.ndarray, duration: float) -> Segment:
        """A piece's segment with its text aligned to log_probs [T, C]: words, times, confidence."""
        return piece_segment(piece, text, log_probs, self.bundle.vocab, self.bundle.seconds_per_step, duration)

    def _nbest(self, log_probs: np.ndarray, options: TranscribeOptions) -> list[dict]:
        """The n best transcripts of the acoustic model's beam, {text, score}."""
        width = max(options.beam_width, options.n_best)
        (found,) = nbest(log_probs[None], np.array([len(log_probs)]), self.bundle.vocab, width, options.n_best)
        return [{"text": " ".join(n["text"].split()), "score": n["score"]} for n in found]


def _check_lm(lm: str) -> str:
    """The language model choice, checked: "bundle", "none" or an existing ARPA file."""
    if lm not in LM_CHOICES and not Path(lm).is_file():
        raise UserError(f"lm={lm}: no such file; pass 'bundle', 'none' or the path of an ARPA character model")
    return lm


def _read_hotword_option(hotwords, bundle: Bundle) -> tuple[Hotword, ...] | None:
    """Hotwords from a file's path or a list of phrases (each "phrase" or "phrase:weight"), checked against the
    model's alphabet; None for none."""
    if hotwords is None:
        return None
    if isinstance(hotwords, str | Path):
        if not Path(hotwords).is_file():
            raise HotwordError(f"{hotwords}: no such hotwords file; pass a text file with a word or phrase per line")
        return read_hotwords(Path(hotwords), bundle.vocab)
    found = [parse_hotword(str(given), bundle.vocab, f"hotword {given!r}") for given in hotwords]
    if not found:
        raise HotwordError("hotwords: an empty list; pass None for no hotwords")
    return tuple(found)


__all__ = ["BundleError", "ModelNotFoundError", "Recognizer", "load", "resolve_model"]
