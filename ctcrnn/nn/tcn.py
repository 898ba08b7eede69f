"""A dilated temporal convolution stack for ``EncoderConfig(type="tcn")``: non-causal, residual, same length out.

(B, T, F) features + (B,) lengths -> (B, T, out_dim). Layer i convolves with dilation 2**i (kernel
``config.kernel_size``, centred, zero-padded), so the receptive field grows exponentially with depth
(MS-TCN's dilated residual layers). Padded frames are zeroed before every convolution, so they look exactly
like the convolution's own zero padding: a sample's output is the same alone or beside longer samples.
Core module: must never import a modality package.
"""
from __future__ import annotations

import torch
from torch import nn

from .encoder import EncoderConfig
from .masking import zero_padding


class DilatedResidualLayer(nn.Module):
    """x + dropout(conv1x1(GELU(dilated conv(LN(x))))); (B, T, C) -> (B, T, C)."""

    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(width, width, 1)
        self.activation, self.dropout = nn.GELU(), nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y = zero_padding(self.norm(x), lengths).transpose(1, 2)                      # (B, C, T)
        y = self.mix(self.activation(self.conv(y))).transpose(1, 2)
        return x + self.dropout(y)


class TCNEncoder(nn.Module):
    """Linear input projection -> ``num_layers`` dilated residual layers -> LayerNorm -> optional projection."""

    causal = False  # centred kernels read future frames at every layer: no streaming

    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.input = nn.Linear(input_size, width)
        self.layers = nn.ModuleList(DilatedResidualLayer(width, config.kernel_size, 2 ** i, config.dropout)
                                    for i in range(config.num_layers))
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(width, config.projection) if config.projection else nn.Identity()
        self.out_dim = config.out_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        x = self.input(zero_padding(x, lengths))
        for layer in self.layers:
            x = layer(x, lengths)
        return zero_padding(self.projection(self.dropout(self.norm(x))), lengths)

    @property
    def receptive_field(self) -> int:
        """Frames each output frame sees: 1 + (k - 1) x (1 + 2 + ... + 2**(L-1))."""
        return 1 + (self.config.kernel_size - 1) * (2 ** self.config.num_layers - 1)
