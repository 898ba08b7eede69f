"""The encoder stack: stacked (bi)directional GRU/LSTM over padded, variable-length sequences, or (by
``EncoderConfig.type``) a Transformer (``transformer.py``) or a dilated temporal convolution stack (``tcn.py``).

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from ..registry import RegistryError, closest
from . import cells
from .masking import valid_mask, zero_padding
from .streaming import Lookahead, NotStreamableError, State

ENCODER_TYPES = ("rnn", "transformer", "tcn")


@dataclass
class EncoderConfig:
    cell: str = "gru"            # gru | lstm
    impl: str = "fused"          # fused: torch.nn.GRU/LSTM (cuDNN on GPU) | reference: ctcrnn.nn.cells, from the equations
    hidden_size: int = 128       # per direction
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.0         # between RNN layers and on the encoder output
    projection: int = 0          # > 0: a linear layer maps the output to this size
    type: str = "rnn"            # rnn (cell/impl above) | transformer | tcn; checkpoints without it are rnn
    d_model: int = 0             # transformer/tcn width; 0: hidden_size x directions (what the RNN outputs)
    nhead: int = 4               # transformer attention heads (must divide the width)
    ff_size: int = 0             # transformer feed-forward size; 0: 4 x width
    kernel_size: int = 3         # tcn kernel (odd: non-causal, centred); dilations 1, 2, 4, ... per layer
    lookahead: int = 0           # rnn: frames of future context after the stack (DeepSpeech 2's lookahead conv); 0: none

    def __post_init__(self):
        if self.type not in ENCODER_TYPES:
            raise ValueError(f"encoder.type must be one of {', '.join(ENCODER_TYPES)}, got {self.type!r}")
        if self.d_model < 0 or self.ff_size < 0 or self.nhead <= 0:
            raise ValueError(f"encoder.d_model/ff_size must be >= 0 and nhead >= 1: {asdict(self)}")
        if self.type == "transformer" and self.width % self.nhead:
            raise ValueError(f"encoder.nhead={self.nhead} must divide the transformer width {self.width} "
                             f"(encoder.d_model, or hidden_size x directions)")
        if self.type == "tcn" and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(f"encoder.kernel_size must be odd and positive (a centred kernel), got {self.kernel_size}")
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f"encoder.cell must be 'gru' or 'lstm', got {self.cell!r}")
        if self.impl not in ("fused", "reference"):
            raise ValueError(f"encoder.impl must be 'fused' or 'reference', got {self.impl!r}")
        if self.lookahead < 0 or (self.lookahead and self.type != "rnn"):
            raise ValueError(f"encoder.lookahead must be >= 0 and applies to type=rnn only, got {self.lookahead} "
                             f"with type={self.type!r}")
        if self.hidden_size <= 0 or self.num_layers <= 0 or self.projection < 0:
            raise ValueError(f"encoder sizes must be positive: {asdict(self)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"encoder.dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def resolve(cls, defaults: dict, overrides: dict | EncoderConfig | None) -> EncoderConfig:
        """An entry's defaults updated by user overrides; unknown keys name the closest field."""
        if isinstance(overrides, EncoderConfig):
            return overrides
        names = {f.name for f in fields(cls)}
        for key in overrides or {}:
            if key not in names:
                raise RegistryError(f"encoder has no field {key!r}{closest(key, names)}; fields: {', '.join(sorted(names))}")
        return cls(**{**defaults, **{k: v for k, v in (overrides or {}).items() if v is not None}})

    @property
    def width(self) -> int:
        """The stack's own output size before any projection."""
        if self.type != "rnn" and self.d_model:
            return self.d_model
        return self.hidden_size * (2 if self.bidirectional else 1)

    @property
    def out_dim(self) -> int:
        return self.projection or self.width


def build_encoder(input_size: int, config: EncoderConfig) -> nn.Module:
    """The encoder ``config.type`` names: (B, T, F) + (B,) lengths -> (B, T, config.out_dim), padding zero."""
    if config.type == "transformer":
        from .transformer import TransformerEncoder
        return TransformerEncoder(input_size, config)
    if config.type == "tcn":
        from .tcn import TCNEncoder
        return TCNEncoder(input_size, config)
    return RNNEncoder(input_size, config)


RNN_CLASSES = {
    ("gru", "fused"): nn.GRU, ("lstm", "fused"): nn.LSTM,
    ("gru", "reference"): cells.GRU, ("lstm", "reference"): cells.LSTM,
}


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its own length; padding frames stay where they are. (B, T, F)."""
    lengths = lengths.to(x.device)
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    index = torch.where(valid_mask(lengths, x.shape[1]), lengths[:, None] - 1 - steps, steps)
    return x.gather(1, index[..., None].expand_as(x))


class RNNEncoder(nn.Module):
    """(B, T, F) features + (B,) lengths -> (B, T, out_dim); frames past a sample's length are zero.

    Each layer runs one unidirectional RNN per direction on the padded batch; the backward one reads
    every sequence reversed *within its length*. Padding therefore only ever follows a sequence's
    real frames, so neither direction reads it: a sample's output is the same alone or in a batch
    with longer samples (the "results change with batch size" bug). On the CPU this is faster than
    packing (PackedSequence), whose per-step batch bookkeeping dominates at these sizes: one 2-layer
    forward+backward at B=16, T=150 was 1.62x faster for the GRU and 5.46x for the LSTM
    (``benchmarks/encoder_padding.py``, 2-core CPU; figures in benchmarks/README.md).
    """

    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self.config = config
        rnn_class = RNN_CLASSES[(config.cell, config.impl)]
        directions = 2 if config.bidirectional else 1
        self.layers = nn.ModuleList(
            nn.ModuleList(rnn_class(input_size if layer == 0 else config.hidden_size * directions, config.hidden_size,
                                    batch_first=True) for _ in range(directions))
            for layer in range(config.num_layers))
        self.dropout = nn.Dropout(config.dropout)
        width = config.hidden_size * directions
        self.lookahead = Lookahead(width, config.lookahead) if config.lookahead else None
        self.projection = nn.Linear(width, config.projection) if config.projection else nn.Identity()
        self.out_dim = config.out_dim

    @property
    def causal(self) -> bool:
        """Output t reads inputs up to t + lookahead only: a unidirectional stack streams."""
        return not self.config.bidirectional

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for index, directions in enumerate(self.layers):
            if index > 0:
                x = self.dropout(x)
            outputs = [directions[0](x)[0]]
            if len(directions) == 2:
                outputs.append(reverse_padded(directions[1](reverse_padded(x, lengths))[0], lengths))
            x = torch.cat(outputs, dim=-1)
        if self.lookahead is not None:
            x = self.lookahead(x, lengths)
        return zero_padding(self.projection(self.dropout(x)), lengths)

    def initial_state(self, batch: int, device=None, dtype=None) -> State:
        """Zero hidden (and cell) states per layer, as the offline forward starts from, and the lookahead buffer."""
        if not self.causal:
            raise NotStreamableError("a bidirectional RNN encoder reads the whole input backwards, so it cannot "
                                     "stream: use encoder.bidirectional=false (the *_streaming zoo entries)")
        zeros = torch.zeros(1, batch, self.config.hidden_size, device=device, dtype=dtype)
        state = {f"{name}{i}": zeros for i in range(len(self.layers))
                 for name in (("h", "c") if self.config.cell == "lstm" else ("h",))}
        if self.lookahead is not None:
            state["lookahead"] = self.lookahead.initial(batch, device, dtype)
        return state

    def stream(self, x: torch.Tensor, state: State, final: bool) -> torch.Tensor:
        """(B, n, F) next frames -> (B, n', out_dim), updating ``state`` in place (new tensors, never written
        into). n' = n, except with a lookahead: n frames late by τ, and + τ when ``final``."""
        lstm = self.config.cell == "lstm"
        if not x.shape[1]:  # nothing new: an RNN cannot run on 0 steps
            x = x.new_zeros(x.shape[0], 0, self.config.hidden_size)
        for i, (rnn,) in enumerate(self.layers if x.shape[1] else ()):
            hx = (state[f"h{i}"], state[f"c{i}"]) if lstm else state[f"h{i}"]
            x, hx = rnn(x, hx)
            if lstm:
                state[f"h{i}"], state[f"c{i}"] = hx
            else:
                state[f"h{i}"] = hx
        if self.lookahead is not None and (x.shape[1] or final):
            x, state["lookahead"] = self.lookahead.stream(x, state["lookahead"], final)
        return self.projection(x)
