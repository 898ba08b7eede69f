"""CRNN's deep bidirectional LSTM: bidirectional layers with a linear map between them.

Shi, Bai and Yao's implementation (``BidirectionalLSTM`` in their Torch code and in crnn.pytorch) follows
each bidirectional layer with a linear layer from the two directions (2 x 256) back to 256; the last one is
the output layer itself. That is where the paper's 8.3 M parameters come from: the plain stack of
:class:`~ctcrnn.nn.encoder.RNNEncoder` feeds 512 features into the second layer (8.7 M in all).
Imports torch and :mod:`ctcrnn.nn.encoder` only.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..nn.encoder import EncoderConfig, RNNEncoder


class ProjectedRNNStack(nn.Module):
    """``config.num_layers`` single-layer :class:`RNNEncoder` s; every one but the last ends in a linear layer
    to ``config.hidden_size`` features. Same interface as :class:`RNNEncoder`: (B, T, F) + (B,) lengths ->
    (B, T, out_dim), frames past a sample's length zero, padding never read (each layer is an RNNEncoder).
    ``config.dropout`` drops each layer's output, as RNNEncoder drops between its layers."""

    def __init__(self, input_size: int, config: EncoderConfig):
        super().__init__()
        self.config = config
        single = dataclasses.replace(config, num_layers=1, projection=config.hidden_size)
        sizes = [input_size] + [config.hidden_size] * (config.num_layers - 1)
        self.layers = nn.ModuleList(
            RNNEncoder(size, single if i < config.num_layers - 1 else dataclasses.replace(single, projection=config.projection))
            for i, size in enumerate(sizes))
        self.out_dim = config.out_dim

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, lengths)
        return x
