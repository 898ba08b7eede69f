"""A pre-norm Transformer encoder for ``EncoderConfig(type="transformer")``: the RNN stack's drop-in rival.

(B, T, F) features + (B,) lengths -> (B, T, out_dim), frames past a sample's length zero. Sinusoidal
positions (defined for any length, no table to outgrow) are added after a linear input projection; every
layer is x + MHA(LN(x)) then x + FF(LN(x)) (pre-norm: trains without a learning-rate warm-up crutch), with
padded frames masked out as keys, so a sample's output is the same alone or beside longer samples.
Core module: must never import a modality package.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .encoder import EncoderConfig
from .masking import valid_mask, zero_padding


def sinusoidal_positions(steps: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(T, width) sin/cos positions of "Attention is all you need"; odd widths drop the last cos column.

    >>> sinusoidal_positions(3, 4)[0].tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    position = torch.arange(steps, device=device, dtype=torch.float64)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float64) * (-math.log(10000.0) / width))
    table = torch.zeros(steps, width + width % 2, device=device, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
    return table[:, :width].to(dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask. (B, T, D) -> (B, T, D)."""

    def __init__(self, width: int, nhead: int, dropout: float):
        super().__init__()
        self.nhead, self.dropout = nhead, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.nhead, d // self.nhead).permute(2, 0, 3, 1, 4)
        # keys: (B, T) bool, True = may be attended to; (B, 1, 1, T) broadcasts over heads and queries.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class TransformerLayer(nn.Module):
    """x + dropout(attention(LN(x))), then x + dropout(FF(LN(x))): pre-norm."""

    def __init__(self, width: int, nhead: int, ff_size: int, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = SelfAttention(width, nhead, dropout)
        self.feed_forward = nn.Sequential(nn.Linear(width, ff_size), nn.GELU(), nn.Dropout(dropout),
                                          nn.Linear(ff_size, width))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), keys))
        return x + self.dropout(self.feed_forward(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """Linear input projection + sinusoidal positions -> ``num_layers`` pre-norm layers -> LayerNorm
    -> optional projection. Width ``config.width`` (``d_model``, or hidden_size x directions, so the CTC
    head sees the size a BiRNN of that hidden size would give it)."""

    causal = False  # self-attention over the whole input: no streaming

    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.input = nn.Linear(input_size, width)
        self.layers = nn.ModuleList(TransformerLayer(width, config.nhead, config.ff_size or 4 * width, config.dropout)
                                    for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(config.dropout)
        self.projection = nn.Linear(width, config.projection) if config.projection else nn.Identity()
        self.out_dim = config.out_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        keys = valid_mask(lengths, x.shape[1])
        # A sample of length 0 would have no key at all (a NaN softmax): let it attend to its padding,
        # whose output is zeroed below anyway.
        keys = keys | (lengths == 0)[:, None]
        x = self.input(zero_padding(x, lengths))
        x = self.dropout(x + sinusoidal_positions(x.shape[1], x.shape[2], x.device, x.dtype))
        for layer in self.layers:
            x = layer(x, keys)
        return zero_padding(self.projection(self.dropout(self.norm(x))), lengths)
