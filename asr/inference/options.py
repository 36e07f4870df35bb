"""How a recognizer decodes (no TensorFlow here: arguments are checked before it loads)."""

from __future__ import annotations

from dataclasses import dataclass

# The shortest pause at which a long recording is cut. Pauses inside one training utterance, as the voice
# activity detector marks them, reach 0.24 s (FSDD), 0.18 s (the demo corpus) and 0.54 s (recorded Dutch
# sentences, 90 % under 0.42 s); docs/results.md measures 0.2-0.5 s on joined test utterances.
MIN_PAUSE_SECONDS = 0.3
# Chunk length of `asr-transcribe --stream` when none is given: a partial result five times a second.
DEFAULT_CHUNK_MS = 200
# Utterances per inference batch: large enough to keep the matrix products busy on a CPU.
DEFAULT_BATCH_SIZE = 32
# A stream's segment closes after this much silence following speech: the pause at which a long file is cut, so
# that a stream is cut where the file would be (and its segments decode as the file's pieces).
STREAM_PAUSE_SECONDS = MIN_PAUSE_SECONDS
# The longest piece of a recording when no bundle says (see asr.inference.bundle.DEFAULT_MAX_SECONDS).
DEFAULT_MAX_SECONDS = 20.0


@dataclass(frozen=True)
class TranscribeOptions:
    """How Recognizer.transcribe decodes each recording: greedy (beam_width 0 without a language model, or 1), the
    language model's search (beam_width 0 with one: its own beam) or a beam of beam_width; the n best transcripts
    of the acoustic model's beam; word times; the shortest pause a long recording is cut at (seconds)."""

    beam_width: int = 0
    n_best: int = 0
    timestamps: bool = False
    min_pause: float = MIN_PAUSE_SECONDS
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.beam_width < 0 or self.n_best < 0:
            raise ValueError(f"beam_width and n_best must be >= 0, got {self.beam_width} and {self.n_best}")
        if self.beam_width and self.n_best > self.beam_width:
            raise ValueError(f"n_best {self.n_best} needs beam_width >= {self.n_best} (or 0)")
        if self.min_pause <= 0:
            raise ValueError(f"min_pause must be > 0 seconds, got {self.min_pause}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def greedy(self) -> bool:
        """Whether the transcript is the best path (beam_width 1: no language model, no hotwords)."""
        return self.beam_width == 1


@dataclass(frozen=True)
class DecodeOptions:
    """How asr-transcribe decodes."""

    batch_size: int = DEFAULT_BATCH_SIZE
    beam_width: int = 0  # 0 or 1: greedy (unless n_best asks for a beam)
    # > 0: also list the n best beam-search transcripts with their log probabilities; the transcript is then
    # the first of them (a beam of n_best when beam_width is 0; an explicit beam_width must be >= n_best)
    n_best: int = 0
    timestamps: bool = False  # word start/end times from the CTC alignment
    # Language model: "bundle" (the bundle's, if it has one), "none" (the acoustic model alone), or the path of
    # an ARPA character model (tokens: characters, <sp> for a space) used with the bundle's weights
    lm: str = "bundle"
    min_pause: float = MIN_PAUSE_SECONDS  # long recordings: the shortest pause at which they are cut, seconds
    confidence: bool = False  # a confidence in [0, 1] per record and per word (asr.decoding.ctc.aligned_words)
    hotwords: str | None = None  # a file of words and phrases to favour in the beam search (asr.decoding.hotwords)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.beam_width < 0 or self.n_best < 0:
            raise ValueError("--beam-width and --n-best must be >= 0")
        if self.min_pause <= 0:
            raise ValueError(f"--min-pause must be > 0 seconds, got {self.min_pause}")
        if self.beam_width and self.n_best > self.beam_width:
            raise ValueError(f"--n-best {self.n_best} needs --beam-width >= {self.n_best}")

    def transcribe_options(self) -> TranscribeOptions:
        """What Recognizer.transcribe takes of these options."""
        return TranscribeOptions(self.beam_width, self.n_best, self.timestamps, self.min_pause, self.batch_size)
