"""Frontends for precomputed per-frame features (I3D, ResNet, Fisher vectors): (B, T, D) -> (B, T', out_dim).

Imports torch, :mod:`ctcrnn.nn.model` and :mod:`ctcrnn.nn.masking` only.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn.masking import zero_padding
from ..nn.model import Frontend, conv_output_lengths


class FeatureProjection(Frontend):
    """Input dropout, then a per-frame linear projection or a 1-D temporal convolution: (B, T, D) -> (B, T', out_dim).

    ``kernel=1, stride=1`` is a linear layer on each frame (T' = T). Otherwise a centred ``Conv1d``
    (odd ``kernel``, ``kernel // 2`` zero padding, ``stride``) with T' = floor((T - 1) / stride) + 1, as
    :func:`~ctcrnn.model.conv_output_lengths` gives. Padded input frames are zeroed before the convolution,
    so a clip's last real frames see the same zeros whether it is alone or batched beside longer clips;
    output frames past a clip's length are zeroed too. ``activation`` adds a ReLU after the projection.
    Dropout on the input drops single feature dimensions (I3D features are 2048-d and overfit easily when the
    only supervision is a transcript of a handful of actions).
    """

    def __init__(self, in_dim: int, out_dim: int = 256, kernel: int = 1, stride: int = 1, dropout: float = 0.0,
                 activation: bool = True):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"FeatureProjection kernel must be odd and >= 1 (a centred window), got {kernel}")
        if stride < 1:
            raise ValueError(f"FeatureProjection stride must be >= 1, got {stride}")
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"FeatureProjection sizes must be positive, got in_dim={in_dim}, out_dim={out_dim}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"FeatureProjection dropout must be in [0, 1), got {dropout}")
        self.in_dim, self.out_dim, self.kernel, self.stride = in_dim, out_dim, kernel, stride
        self.dropout = nn.Dropout(dropout)
        self.temporal = kernel > 1 or stride > 1
        self.proj = (nn.Conv1d(in_dim, out_dim, kernel, stride=stride, padding=kernel // 2) if self.temporal
                     else nn.Linear(in_dim, out_dim))
        self.activation = nn.ReLU() if activation else nn.Identity()

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if not self.temporal:
            return lengths
        return conv_output_lengths(lengths, self.kernel, self.stride, self.kernel // 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[2] != self.in_dim:
            raise ValueError(f"FeatureProjection expects (B, T, {self.in_dim}) features, got {tuple(x.shape)}: "
                             f"check the model's in_shape against the dataset's step_shape")
        x = self.dropout(x)
        if not self.temporal:
            return self.activation(self.proj(x))
        x = zero_padding(x, lengths).transpose(1, 2)                  # (B, D, T)
        x = self.activation(self.proj(x)).transpose(1, 2)            # (B, T', out_dim)
        return zero_padding(x, self.output_lengths(lengths))
