"""What the model is told: the shape of the LSTM stack (no TensorFlow here, so configs load without it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class ModelOptions:
    """Stacked (Bi)LSTM over stacked feature frames, a dense layer to the characters plus the CTC blank."""

    num_layers: int = 2
    units: int = 128
    bidirectional: bool = True
    dropout: float = 0.0  # after each LSTM layer, in training
    # Output-layer initialization: truncated normal with this stddev (the seed article used 0.1); None: Glorot.
    logits_init_stddev: float | None = None
    stride: int = 1  # stack this many consecutive frames into one LSTM step (fewer steps: faster)
    # Convolutional front-end (0: none, frames are stacked): conv_layers 1-D convolutions of conv_channels
    # ReLU units over time before the LSTMs; the first spans conv_kernel frames and moves by `stride` frames
    # (it replaces the stacking), the others span conv_kernel steps.
    conv_layers: int = 0
    conv_channels: int = 256
    conv_kernel: int = 5
    # Right context of a unidirectional model, in model steps: each output step also sees the top LSTM layer's
    # outputs of the next `lookahead` steps, through a per-unit weighted sum (the lookahead convolution of Deep
    # Speech 2, Amodei et al. 2016); a stream waits lookahead x stride frames longer for each step. 0: none.
    lookahead: int = 0

    def __post_init__(self) -> None:
        if self.logits_init_stddev is not None and self.logits_init_stddev <= 0:
            raise ValueError(f"model.logits_init_stddev must be > 0 or null (Glorot), got {self.logits_init_stddev}")
        if self.num_layers < 1 or self.units < 1:
            raise ValueError(f"model.num_layers and model.units must be >= 1, got {self.num_layers}, {self.units}")
        if self.stride < 1:
            raise ValueError(f"model.stride must be >= 1, got {self.stride}")
        if self.conv_layers < 0 or self.conv_channels < 1:
            raise ValueError(
                f"model.conv_layers must be >= 0 and model.conv_channels >= 1, got {self.conv_layers}, "
                f"{self.conv_channels}"
            )
        if self.conv_layers and self.conv_kernel < self.stride:
            raise ValueError(
                f"model.conv_kernel ({self.conv_kernel}) must be >= model.stride ({self.stride}): the first "
                "convolution would skip frames"
            )
        if self.lookahead < 0:
            raise ValueError(f"model.lookahead must be >= 0, got {self.lookahead}")
        if self.lookahead and self.bidirectional:
            raise ValueError(
                "model.lookahead gives a unidirectional model right context, a bidirectional one sees the whole "
                "utterance already: set model.bidirectional=false or model.lookahead=0"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")


class LMKind(StrEnum):
    """char: a character n-gram model; word: the same plus a word n-gram model scored at each word's end."""

    char = "char"
    word = "word"


@dataclass(frozen=True)
class LMOptions:
    """A character n-gram language model estimated from the training transcripts after training, used by a beam
    search; its weights are those of the pair that decodes the validation split best."""

    order: int = 0  # n of the character n-grams (5-7 is usual); 0: no language model, greedy decoding
    beam_width: int = 32
    # LM weights and per-character bonuses tried on the validation split (without one, the first of each)
    alphas: tuple[float, ...] = (0.3, 0.5, 0.8)
    betas: tuple[float, ...] = (0.5, 1.0, 2.0)
    # More text of the language for the model, mixed with the training transcripts: UTF-8 files, a sentence per
    # line, normalized like the transcripts (never the test sentences)
    text: tuple[str, ...] = ()
    kind: LMKind = LMKind.char
    word_order: int = 3  # n of the word n-grams (kind=word)
    # kind=word: weights of the word model and penalties per word outside the training words (and lm.text),
    # tried on the validation split after the character model's pair is chosen
    word_weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4)
    unknown_penalties: tuple[float, ...] = (0.0, 3.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", LMKind(self.kind))
        object.__setattr__(self, "word_weights", tuple(float(w) for w in self.word_weights))
        object.__setattr__(self, "unknown_penalties", tuple(float(u) for u in self.unknown_penalties))
        if self.word_order < 2:
            raise ValueError(f"lm.word_order must be >= 2, got {self.word_order}")
        if not self.word_weights or min(self.word_weights) < 0 or not self.unknown_penalties:
            raise ValueError(
                f"lm.word_weights (each >= 0) and lm.unknown_penalties must not be empty, got {self.word_weights}, "
                f"{self.unknown_penalties}"
            )
        object.__setattr__(self, "text", (self.text,) if isinstance(self.text, str) else tuple(map(str, self.text)))
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.order < 0 or self.order == 1 or self.beam_width < 1:
            raise ValueError(
                f"lm.order must be 0 (no language model) or >= 2 and lm.beam_width >= 1, got {self.order}, "
                f"{self.beam_width}"
            )
        if not self.alphas or not self.betas or min(self.alphas) < 0:
            raise ValueError(f"lm.alphas (each >= 0) and lm.betas must not be empty, got {self.alphas}, {self.betas}")
