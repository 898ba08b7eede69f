"""Video as a live stream: frames chunk by chunk (a camera feed, or a file read as if live).

Frames are model input as they come (``(N, C, H, W)`` floats in [0, 1], the size of the model's input spec);
the state a causal video model carries across chunks (the previous frame, the temporal convolution's context)
lives in its frontend (:class:`~ctcrnn.video.frontends.FrameCNN`).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from ..streaming import STREAM_INPUTS, StreamInput
from .io import read_video_for_spec


@STREAM_INPUTS.register(name="video")
class VideoStream(StreamInput):
    """Frames ``(N, C, H, W)``, float, values in [0, 1] as the model's reader gives them."""

    def describe(self) -> str:
        c, h, w = self.step_shape
        return f"float frames (N, {c}, {h}, {w}) with values in [0, 1]"

    def open_file(self, path: str | Path, chunk_seconds: float) -> Iterator[torch.Tensor]:
        return file_chunks(path, self.input_spec, chunk_seconds)


def file_chunks(path: str | Path, input_spec: dict, chunk_seconds: float) -> Iterator[torch.Tensor]:
    """A video read as the model's training data was, in chunks of ``chunk_seconds`` at the model's frame rate."""
    frames = read_video_for_spec(path, input_spec)
    size = max(1, round(chunk_seconds * float(input_spec.get("fps") or 25.0)))
    yield from frames.split(size)
