"""Streaming building blocks: layers that run over a stream chunk by chunk and give exactly what their
offline forward gives over the whole input.

A stream's state is a flat ``dict[str, Tensor]``: every module that needs memory keeps its tensors under its
own prefix (``"frontend.conv0"``, ``"encoder.h1"``, ...), so the whole state of a model is one dict that an
exported step function can take and return as plain tensors. Chunks are batch-first ``(B, n, ...)``: B
streams advancing together (a live recogniser has B = 1).

* :class:`CausalConvStream` runs a causal convolution along time (left padding ``kernel - 1``, any stride),
  keeping the input frames the next outputs still need. Output ``j`` reads inputs ``j·s - k + 1 .. j·s``, so
  it is computed as soon as input ``j·s`` arrives: no lookahead, and nothing to flush at the end.
* :class:`Lookahead` is DeepSpeech 2's lookahead ("row") convolution: output ``t`` is a per-feature weighted
  sum of inputs ``t .. t + τ``. It is the one bounded look into the future of a streaming model: it delays
  output by ``τ`` frames, and at the end of a stream it flushes over ``τ`` zero frames, as the offline
  forward's zero padding does.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .masking import zero_padding

State = dict[str, torch.Tensor]


class NotStreamableError(ValueError):
    """A model (or one of its parts) that looks at the future without bound: bidirectional RNNs, centred
    convolutions, self-attention over the whole input."""


def causal_pad(x: torch.Tensor, kernel: int, time_dim: int) -> torch.Tensor:
    """``x`` with ``kernel - 1`` zero frames before its first frame along ``time_dim`` (a causal conv's padding)."""
    pad = [0, 0] * (x.dim() - 1 - time_dim % x.dim()) + [kernel - 1, 0]
    return F.pad(x, pad)


class CausalConvStream:
    """Runs ``layer`` — a convolution along ``time_dim`` with kernel ``kernel``, stride ``stride`` and no time
    padding, optionally followed by per-frame operations — over a stream, as the offline
    ``layer(causal_pad(x))`` would.

    The state is the input frames not yet fully used: it starts as ``kernel - 1`` zero frames (the causal
    padding), and after each chunk keeps the frames from the first one the next output reads. When chunks
    are multiples of ``stride`` it holds ``kernel - 1`` frames after every chunk (a fixed-size state for an
    exported step function).
    """

    def __init__(self, layer: Callable[[torch.Tensor], torch.Tensor], kernel: int, stride: int, time_dim: int):
        if kernel < stride:  # outputs would skip input frames that have not arrived yet
            raise ValueError(f"a streamed convolution needs kernel >= stride, got kernel {kernel}, stride {stride}")
        self.layer, self.kernel, self.stride, self.time_dim = layer, kernel, stride, time_dim

    def initial(self, frame: torch.Size | tuple[int, ...], batch: int, device=None, dtype=None) -> torch.Tensor:
        """The starting buffer: ``kernel - 1`` zero frames; ``frame`` is the input's shape without B."""
        shape = [batch, *frame]
        shape[self.time_dim] = self.kernel - 1
        return torch.zeros(shape, device=device, dtype=dtype)

    def __call__(self, x: torch.Tensor, buffer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """New input frames -> (the outputs they complete, possibly none; the next buffer)."""
        x = torch.cat([buffer, x], dim=self.time_dim)
        if torch.jit.is_tracing():
            # An exported step function takes chunks of whole strides (the caller pads the last one with zeros:
            # no kept output reads them), so every chunk completes chunk / stride outputs and the buffer is
            # always the last kernel - 1 frames; written without Python shape arithmetic, so the graph's
            # time axis stays dynamic.
            keep = x.narrow(self.time_dim, 0, 0) if self.kernel == 1 else x.flip(self.time_dim).narrow(
                self.time_dim, 0, self.kernel - 1).flip(self.time_dim)
            return self.layer(x), keep
        steps = x.shape[self.time_dim]
        outputs = (steps - self.kernel) // self.stride + 1 if steps >= self.kernel else 0
        if outputs == 0:
            return None, x
        used = (outputs - 1) * self.stride + self.kernel
        y = self.layer(x.narrow(self.time_dim, 0, used))
        consumed = outputs * self.stride
        return y, x.narrow(self.time_dim, consumed, steps - consumed)


class Lookahead(nn.Module):
    """DeepSpeech 2's lookahead convolution (Amodei et al. 2016, section 3.5): (B, T, F) -> (B, T, F),
    ``out[t, f] = Σ_{j=0..τ} w[f, j] · x[t + j, f]``, frames past the end (or a sample's length) read as zero.

    One weight per feature and future frame (a depthwise convolution without bias): a unidirectional RNN
    gets ``τ`` frames of future context at the price of ``τ`` frames of latency, where a bidirectional one
    would need the whole input.
    """

    def __init__(self, features: int, frames: int):
        super().__init__()
        if frames < 1:
            raise ValueError(f"a lookahead of {frames} frames: use 1 or more (0 means no Lookahead layer)")
        self.frames = frames
        self.conv = nn.Conv1d(features, features, frames + 1, groups=features, bias=False)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = zero_padding(x, lengths)                       # a sample's end reads zeros, alone or batched
        return self.conv(F.pad(x.transpose(1, 2), (0, self.frames))).transpose(1, 2)

    def initial(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        """The starting buffer: ``τ`` zero frames standing for inputs -τ .. -1. The first ``τ`` outputs a stream
        gives are therefore outputs -τ .. -1, which do not exist: :attr:`frames` tells the caller to drop them."""
        return torch.zeros(batch, self.frames, self.conv.in_channels, device=device, dtype=dtype)

    def stream(self, x: torch.Tensor, buffer: torch.Tensor, final: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n, F) new frames -> (B, n (+ τ when final), F) outputs, and the last ``τ`` input frames.

        Each call gives one output per input frame, ``τ`` frames late; ``final`` appends ``τ`` zero frames
        (the end of the stream) so the last ``τ`` outputs come out too."""
        x = torch.cat([buffer, x], dim=1)
        if final:
            x = F.pad(x, (0, 0, 0, self.frames))
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return y, x[:, -self.frames:]
