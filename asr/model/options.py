"""What the model is told: the shape of the LSTM stack (no TensorFlow here, so configs load without it)."""

from __future__ import annotations

from dataclasses import dataclass


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

    def __post_init__(self) -> None:
        if self.logits_init_stddev is not None and self.logits_init_stddev <= 0:  # 0 meant Glorot before null did
            object.__setattr__(self, "logits_init_stddev", None)
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
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
