"""CNN frontends for text lines: (B, W, C, H) columns of pixels -> (B, W // stride, out_dim) feature vectors.

A line is read as a sequence along its width: each input step is one column of pixels (C channels x H
rows). :class:`LineCNN` lays the steps out as an image (B, C, H, W), runs 3x3 convolutions with optional
BatchNorm, pooling and dropout, and turns each remaining column into one vector, either with a last
convolution that spans the remaining rows (CRNN) or by flattening channels x rows (Puigcerver 2017).

Padding never reaches a real column: every layer zeroes the columns past each line's width at that layer's
rate, and width pooling floors (a window that reaches past the line's end only makes a column past its
output length), so in eval mode a line's output is the same alone or batched beside wider lines.
Imports torch, :mod:`ctcrnn.nn.model` and :mod:`ctcrnn.nn.masking` only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.masking import zero_padding
from ..nn.model import Frontend


def zero_columns(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) with the columns at or past each sample's length set to zero."""
    return zero_padding(x, lengths, time_dim=3)


ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(inplace=True)}


class LineCNN(Frontend):
    """A VGG-style line CNN: per block ``i`` [Dropout(dropouts[i])] Conv2d 3x3 ``channels[i]`` [BatchNorm]
    activation [MaxPool ``pools[i]`` = (rows, columns)], then a collapse of the rows into one vector per column:

    * ``collapse="conv"`` (CRNN): a Conv2d of ``collapse_channels`` with kernel (remaining rows, 2) and ReLU;
      the line is padded by one blank column on the right so that the output keeps W // stride columns;
    * ``collapse="flatten"`` (Puigcerver 2017): channels x remaining rows, concatenated per column.

    ``stride`` is the product of the width poolings: :meth:`output_lengths` gives W // stride exactly.
    ``output_dropout`` drops features of the output (the input of the first recurrent layer).
    """

    def __init__(self, in_shape: tuple[int, int] = (1, 32), channels: tuple[int, ...] = (64, 128, 256, 256, 512, 512),
                 batch_norm: tuple[bool, ...] = (False, False, False, False, True, True),
                 pools: tuple = ((2, 2), (2, 2), None, (2, 1), None, (2, 1)), dropouts: tuple[float, ...] = (),
                 activation: str = "relu", collapse: str = "conv", collapse_channels: int = 512,
                 output_dropout: float = 0.0):
        super().__init__()
        if len(in_shape) != 2:
            raise ValueError(f"LineCNN reads steps of shape (channels, height), got in_shape={tuple(in_shape)}: check "
                             f"the dataset's step_shape (text lines give (1, H))")
        blocks = len(channels)
        dropouts = tuple(dropouts) or (0.0,) * blocks
        if not blocks or len(batch_norm) != blocks or len(pools) != blocks or len(dropouts) != blocks:
            raise ValueError(f"LineCNN needs one batch_norm, pool and dropout per block: {blocks} channels, "
                             f"{len(batch_norm)} batch_norm, {len(pools)} pools, {len(dropouts)} dropouts")
        if activation not in ACTIVATIONS:
            raise ValueError(f"LineCNN activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if collapse not in ("conv", "flatten"):
            raise ValueError(f"LineCNN collapse must be 'conv' or 'flatten', got {collapse!r}")
        in_channels, rows = int(in_shape[0]), int(in_shape[1])
        self.in_shape = (in_channels, rows)
        self.blocks = nn.ModuleList()
        self.width_pools = []
        for width, norm, pool, p in zip(channels, batch_norm, pools, dropouts):
            pool_rows, pool_columns = pool or (1, 1)
            layers = [nn.Dropout(p)] if p else []
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), *([nn.BatchNorm2d(width)] if norm else []),
                       ACTIVATIONS[activation](), *([nn.MaxPool2d((pool_rows, pool_columns))] if pool else [])]
            self.blocks.append(nn.Sequential(*layers))
            self.width_pools.append(pool_columns)
            in_channels, rows = width, rows // pool_rows
        if rows < 1:
            raise ValueError(f"LineCNN: lines {in_shape[1]} pixels high leave no rows after the poolings {pools}: "
                             f"use a greater line height")
        self.stride = math.prod(self.width_pools)
        self.collapse = collapse
        if collapse == "conv":
            self.collapse_conv = nn.Sequential(nn.Conv2d(in_channels, collapse_channels, (rows, 2)), nn.ReLU())
            self.out_dim = collapse_channels
        else:
            self.out_dim = in_channels * rows
        self.output_dropout = nn.Dropout(output_dropout)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths, self.stride, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        x = x.permute(0, 2, 3, 1).contiguous()                         # (B, W, C, H) -> (B, C, H, W)
        if x.shape[-1] < self.stride:
            # A batch of lines narrower than one stride: pad so the poolings run; their output length is 0,
            # so the CTC feasibility check skips and counts them instead of a crash mid-epoch.
            x = nn.functional.pad(x, (0, self.stride - x.shape[-1]))
        x = zero_columns(x, lengths)
        for block, pool in zip(self.blocks, self.width_pools):
            # One mask per block, after its pooling: a floored window that reaches past a line's end only
            # makes a column past the new length, and that column is zeroed before the next convolution.
            lengths = torch.div(lengths, pool, rounding_mode="floor")
            x = zero_columns(block(x), lengths)
        if self.collapse == "conv":
            x = zero_columns(self.collapse_conv(nn.functional.pad(x, (0, 1))), lengths)  # (B, C', 1, W')
        b, c, h, w = x.shape
        return self.output_dropout(x.permute(0, 3, 1, 2).reshape(b, w, c * h))  # feature index = c * h_rows + row
