"""Audio frontends: 2-D convolutions over (time, frequency) feature maps -> one vector per output frame.

Input ``(B, T, F)`` features (F = STFT or filterbank bins), output ``(B, T', out_dim)`` with exact
:meth:`output_lengths`. Every layer zeroes the frames past each sample's length at that layer's frame
rate (deepspeech.pytorch's ``MaskConv``), so padding never reaches a real frame through a time kernel:
in eval mode a sample's output is the same alone or batched with longer ones.
Imports torch, :mod:`ctcrnn.nn.model` and :mod:`ctcrnn.nn.masking` only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..nn.masking import masked, zero_padding
from ..nn.model import Frontend, conv_output_lengths
from ..nn.streaming import CausalConvStream, State, causal_pad


def feature_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output size of a convolution along frequency (same formula as :func:`conv_output_lengths`)."""
    return (size + 2 * padding - kernel) // stride + 1


class DeepSpeech2Conv(Frontend):
    """DeepSpeech2's conv stack as in deepspeech.pytorch: (B, T, F) -> (B, T', channels * F').

    The input is laid out (B, 1, F, T) as in deepspeech.pytorch (so its conv weights load as they are).
    Per layer ``i``: Conv2d with kernel ``(freq_kernels[i], time_kernels[i])``, stride
    ``(freq_strides[i], time_strides[i])`` and half-kernel zero padding, BatchNorm2d, Hardtanh(0, 20).
    The defaults are the paper's: kernels 41x11 and 21x11, strides (2, 2) and (2, 1), 32 channels;
    161 STFT bins give 81 then 41 frequency rows, so 32 x 41 = 1312 features per frame (flattened
    channel-major, as deepspeech.pytorch does) at half the input frame rate. In training mode
    BatchNorm's batch statistics include the zeroed padding, as in deepspeech.pytorch.

    ``causal=True`` pads time on the left only (``time_kernel - 1`` frames), so output j reads input frames up
    to ``j * stride`` and never the future: the streaming variant (DeepSpeech 2's deployed models limit
    their future context the same way, section 3.5), run chunk by chunk by :meth:`stream`.
    """

    def __init__(self, in_features: int = 161, channels: int = 32, freq_kernels: tuple[int, ...] = (41, 21),
                 freq_strides: tuple[int, ...] = (2, 2), time_kernels: tuple[int, ...] = (11, 11),
                 time_strides: tuple[int, ...] = (2, 1), max_value: float = 20.0, causal: bool = False):
        super().__init__()
        layers = len(freq_kernels)
        if not layers or {len(freq_strides), len(time_kernels), len(time_strides)} != {layers}:
            raise ValueError(f"DeepSpeech2Conv needs one freq_kernel, freq_stride, time_kernel and time_stride per "
                             f"layer, got {freq_kernels}, {freq_strides}, {time_kernels}, {time_strides}")
        centred = freq_kernels if causal else (*freq_kernels, *time_kernels)
        if any(k % 2 == 0 for k in centred) or min(time_kernels) < 1:
            raise ValueError(f"DeepSpeech2Conv kernels must be odd where centred (half-kernel padding), got "
                             f"freq_kernels={freq_kernels}, time_kernels={time_kernels}, causal={causal}")
        if causal and any(k < s for k, s in zip(time_kernels, time_strides)):
            raise ValueError(f"a causal DeepSpeech2Conv needs every time kernel >= its stride (no input frame "
                             f"skipped), got time_kernels={time_kernels}, time_strides={time_strides}")
        self.in_features, self.causal = in_features, causal
        self.time_kernels, self.time_strides = tuple(time_kernels), tuple(time_strides)
        self.stride = math.prod(time_strides)
        self.layers = nn.ModuleList()
        self.layer_inputs = []  # (channels, frequency rows) each layer reads: the shape of a stream's buffers
        in_channels, freq = 1, in_features
        for fk, fs, tk, ts in zip(freq_kernels, freq_strides, time_kernels, time_strides):
            self.layer_inputs.append((in_channels, freq))
            self.layers.append(nn.Sequential(
                nn.Conv2d(in_channels, channels, (fk, tk), stride=(fs, ts), padding=(fk // 2, 0 if causal else tk // 2)),
                nn.BatchNorm2d(channels), nn.Hardtanh(0, max_value)))
            in_channels, freq = channels, feature_size(freq, fk, fs, fk // 2)   # >= 1: odd kernels, half padding
        self.freq_out = freq
        self.out_dim = channels * freq

    def _layer_lengths(self, lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
        if self.causal:  # left padding kernel - 1: (L - 1) // stride + 1 outputs
            return conv_output_lengths(lengths + kernel - 1, kernel, stride)
        return conv_output_lengths(lengths, kernel, stride, kernel // 2)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for kernel, stride in zip(self.time_kernels, self.time_strides):
            lengths = self._layer_lengths(lengths, kernel, stride)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        x = zero_padding(x.transpose(1, 2)[:, None], lengths, time_dim=3)    # (B, 1, F, T)
        for layer, kernel, stride in zip(self.layers, self.time_kernels, self.time_strides):
            lengths = self._layer_lengths(lengths, kernel, stride)
            x = masked(layer, causal_pad(x, kernel, time_dim=3) if self.causal else x, lengths, time_dim=3)
        return self._flatten(x)

    @staticmethod
    def _flatten(x: torch.Tensor) -> torch.Tensor:
        b, c, f, _ = x.shape
        return x.reshape(b, c * f, -1).transpose(1, 2)                        # feature index = c * F' + f

    def _streams(self) -> list[CausalConvStream]:
        return [CausalConvStream(layer, k, s, time_dim=3)
                for layer, k, s in zip(self.layers, self.time_kernels, self.time_strides)]

    def initial_state(self, batch: int, device=None, dtype=None) -> State:
        if not self.causal:
            super().initial_state(batch)
        return {f"conv{i}": stream.initial((channels, freq, 0), batch, device, dtype)
                for i, (stream, (channels, freq)) in enumerate(zip(self._streams(), self.layer_inputs))}

    def stream(self, x: torch.Tensor, state: State, final: bool) -> torch.Tensor:
        """(B, n, F) next feature frames -> (B, n', out_dim); causal layers have nothing to flush."""
        x = x.transpose(1, 2)[:, None]                                        # (B, 1, F, n)
        for i, stream in enumerate(self._streams()):
            y, state[f"conv{i}"] = stream(x, state[f"conv{i}"])
            if y is None:
                return x.new_zeros(x.shape[0], 0, self.out_dim)
            x = y
        return self._flatten(x)


class FrameLayerNorm(nn.Module):
    """LayerNorm over (channels, freq) of each frame of a (B, C, T, F) map, as SpeechBrain's LayerNorm
    on its (B, T, F, C) maps; it never mixes frames, so padding cannot leak through it."""

    def __init__(self, channels: int, freq: int):
        super().__init__()
        self.norm = nn.LayerNorm((channels, freq))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class CRDNNFrontend(Frontend):
    """The CNN part of SpeechBrain's CRDNN: (B, T, F) -> (B, T // time_pooling, channels[-1] * F').

    Each block: 2 x (Conv2d k x k "same", LayerNorm over the frame's channels x freq, LeakyReLU),
    max-pooling over frequency by ``freq_pooling``, Dropout2d. Then optional max-pooling over time by
    ``time_pooling`` (window = stride, no padding, as SpeechBrain's Pooling1d; 1 = none). With 40 fbank
    bins and the defaults: 40 -> 20 -> 10 rows, 256 x 10 = 2560 features per frame.
    """

    def __init__(self, in_features: int = 40, channels: tuple[int, ...] = (128, 256), kernel_size: int = 3,
                 freq_pooling: int = 2, time_pooling: int = 2, dropout: float = 0.15):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"CRDNNFrontend kernel_size must be odd ('same' padding), got {kernel_size}")
        if time_pooling < 1 or freq_pooling < 1:
            raise ValueError(f"CRDNNFrontend poolings must be >= 1, got time_pooling={time_pooling}, "
                             f"freq_pooling={freq_pooling}")
        freq_out = in_features // freq_pooling ** len(channels)
        if freq_out < 1:
            raise ValueError(f"CRDNNFrontend: {in_features} feature bins leave no frequency rows after "
                             f"{len(channels)} poolings by {freq_pooling}: lower freq_pooling or use fewer blocks")
        self.in_features = in_features
        self.blocks = nn.ModuleList()
        in_channels, freq = 1, in_features
        for width in channels:
            self.blocks.append(nn.Sequential(
                nn.Conv2d(in_channels, width, kernel_size, padding=kernel_size // 2), FrameLayerNorm(width, freq),
                nn.LeakyReLU(),
                nn.Conv2d(width, width, kernel_size, padding=kernel_size // 2), FrameLayerNorm(width, freq),
                nn.LeakyReLU(),
                nn.MaxPool2d((1, freq_pooling)), nn.Dropout2d(dropout)))
            in_channels, freq = width, freq // freq_pooling
        self.time_pool = nn.MaxPool2d((time_pooling, 1)) if time_pooling > 1 else nn.Identity()
        self.stride = time_pooling
        self.out_dim = channels[-1] * freq_out

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return conv_output_lengths(lengths, self.stride, self.stride)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < self.stride:
            # A batch of clips shorter than one pooling window: pad so the pooling runs; their output
            # length is 0, so the CTC feasibility check skips and counts them instead of a crash mid-epoch.
            x = nn.functional.pad(x, (0, 0, 0, self.stride - x.shape[1]))
        lengths = lengths.to(x.device)
        x = zero_padding(x[:, None], lengths, time_dim=2)                    # (B, 1, T, F)
        for block in self.blocks:
            x = masked(block, x, lengths, time_dim=2)
        # A window that ends past a sample's length only yields frames past its output length: zeroed here.
        x = zero_padding(self.time_pool(x), self.output_lengths(lengths), time_dim=2)
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f)
