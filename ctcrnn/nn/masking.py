"""Padding masks: which frames of a padded batch are real, and zeroing the ones that are not.

One copy for the encoder and every frontend (audio, video, features), so "a sample's output is the same
alone or beside longer samples" rests on one definition of padding. Imports torch only.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def valid_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T) bool: True where frame t < lengths[b], on ``lengths``' device.

    >>> valid_mask(torch.tensor([2, 0, 3]), 3)
    tensor([[ True,  True, False],
            [False, False, False],
            [ True,  True,  True]])
    """
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def zero_padding(x: torch.Tensor, lengths: torch.Tensor, time_dim: int = 1) -> torch.Tensor:
    """``x`` (B, ..., T, ...) with the frames at or past each sample's length along ``time_dim`` set to zero.

    A multiplication rather than a masked fill, so gradients flow through the real frames unchanged and
    the dtype of ``x`` is kept.
    """
    valid = valid_mask(lengths.to(x.device), x.shape[time_dim])                     # (B, T)
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[time_dim] = x.shape[time_dim]
    return x * valid.reshape(shape).to(x.dtype)


def masked(modules: Iterable[nn.Module], x: torch.Tensor, lengths: torch.Tensor, time_dim: int) -> torch.Tensor:
    """Run ``x`` through ``modules`` in turn, zeroing padded frames after each one (deepspeech.pytorch's
    MaskConv): a BatchNorm or LayerNorm shift, or a bias, would otherwise turn zero padding into values
    the next time kernel reads. ``lengths`` are the lengths of the modules' output (the same after every
    module: only the first, a strided or unpadded convolution, may change the frame count)."""
    for module in modules:
        x = zero_padding(module(x), lengths, time_dim)
    return x
