"""What shipping audio models needs: the feature pipeline as graph operations (``ctcrnn export --with-features``)
and waveform tensors as bundle input (``bundle.transcribe(waveform)``).

:class:`GraphFeatures` computes, for a zero-padded batch of waveforms (B, N) and their sample counts, the
features :class:`~ctcrnn.audio.datasets.AudioPipeline` gives each waveform alone: centred STFT frames
(zero padding), power or magnitude, mel filterbank, log, then per-utterance or global normalisation over
each clip's own frames. ONNX has no complex tensors, so the STFT is a strided convolution with the
windowed DFT basis (cos and -sin rows); the window and mel matrix are the pipeline's own buffers, so the
two agree to float32 rounding. Registered with :mod:`ctcrnn.export` and :mod:`ctcrnn.bundle`; imported by
``ctcrnn/__init__``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..bundle import TENSOR_READERS
from ..export import GRAPH_FEATURES
from ..nn.masking import valid_mask
from .datasets import AudioPipeline
from .features import LOG_FLOOR, STD_FLOOR


@GRAPH_FEATURES.register(name="audio")
class GraphFeatures(nn.Module):
    """(B, N) float32 waveforms at the model's sample rate + (B,) sample counts -> ((B, T, F) normalised
    features, (B,) frame counts ``1 + N // hop``; 0 for an empty clip). Frames past a clip's count are zero."""

    def __init__(self, input_spec: dict):
        super().__init__()
        pipeline = AudioPipeline.from_spec(input_spec)
        config, transform = pipeline.features, pipeline.extractor.transform
        self.kind, self.normalize, self.sample_rate = config.kind, config.normalize, config.sample_rate
        self.n_fft, self.hop = config.fft_size, config.hop_length
        spectrogram = transform.spectrogram if config.kind == "fbank" else transform
        window = spectrogram.window.double()                                  # (win_length,)
        left = (self.n_fft - window.numel()) // 2                             # torch.stft centres a short window
        window = nn.functional.pad(window, (left, self.n_fft - window.numel() - left))
        bins = self.n_fft // 2 + 1
        angle = 2 * math.pi * torch.outer(torch.arange(bins, dtype=torch.float64),
                                          torch.arange(self.n_fft, dtype=torch.float64)) / self.n_fft
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window     # (2 * bins, n_fft): real, imaginary
        self.register_buffer("basis", basis.float()[:, None, :])             # conv1d weight (2F, 1, n_fft)
        self.register_buffer("mel", transform.mel_scale.fb.float() if config.kind == "fbank" else torch.empty(0))
        stats = pipeline.stats or {}
        self.register_buffer("mean", torch.tensor(stats.get("mean", []), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(stats.get("std", []), dtype=torch.float32).clamp_min(STD_FLOOR))
        if config.normalize == "global" and not self.mean.numel():
            raise ValueError("normalize='global' but the model's input_spec has no stats to put in the graph")
        self.example_length = 2 * self.sample_rate  # two seconds to trace with

    def describe_input(self) -> str:
        return f"mono samples at {self.sample_rate} Hz (values in [-1, 1])"

    def frame_counts(self, counts: torch.Tensor) -> torch.Tensor:
        """Frames torch.stft(center=True) gives N samples: 1 + (N + 2 * (n_fft // 2) - n_fft) // hop; 0 for N = 0."""
        frames = torch.div(counts + 2 * (self.n_fft // 2) - self.n_fft, self.hop, rounding_mode="floor") + 1
        return torch.where(counts > 0, frames, torch.zeros_like(frames))

    def forward(self, wave: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = counts.to(wave.device)
        wave = wave.float() * valid_mask(counts, wave.shape[1]).float()    # what each clip alone is padded with
        padded = nn.functional.pad(wave[:, None], (self.n_fft // 2, self.n_fft // 2))
        spectrum = nn.functional.conv1d(padded, self.basis, stride=self.hop)  # (B, 2F, T)
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag
        if self.kind == "fbank":
            feats = torch.log(torch.matmul(power.transpose(1, 2), self.mel) + LOG_FLOOR)   # (B, T, n_mels)
        else:
            feats = torch.log1p(torch.sqrt(power)).transpose(1, 2)                          # (B, T, bins)
        frames = self.frame_counts(counts)
        valid = valid_mask(frames, feats.shape[1])[..., None].float()                     # (B, T, 1)
        if self.normalize == "utterance":
            count = frames.clamp(min=1)[:, None, None].float()
            mean = (feats * valid).sum(1, keepdim=True) / count
            std = (((feats - mean) * valid) ** 2).sum(1, keepdim=True).div(count).sqrt().clamp_min(STD_FLOOR)
            feats = (feats - mean) / std
        elif self.normalize == "global":
            feats = (feats - self.mean) / self.std
        return feats * valid, frames


@TENSOR_READERS.register(name="audio")
def waveform_to_features(wave: torch.Tensor, input_spec: dict) -> torch.Tensor:
    """A mono waveform (N,) at the model's sample rate -> model input (T, F), as the model's reader makes it."""
    if wave.dim() != 1:
        raise ValueError(f"an audio tensor must be a mono waveform (N,) at {input_spec['sample_rate']} Hz, got "
                         f"shape {tuple(wave.shape)}")
    return AudioPipeline.from_spec(input_spec)(wave.float())
