"""Waveform -> frame features: log-mel filterbanks or DeepSpeech2-style log spectrograms, and their
normalisation (per utterance, or with global statistics computed over a training set).

Framing is centred and zero-padded: frame ``t`` is centred on sample ``t * hop``, so a waveform of
``N >= 1`` samples gives exactly ``1 + N // hop`` frames, even when N is shorter than one window.
Must never import the core training code; the core never imports this.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torchaudio.transforms as AT
from torch import nn

from ..config import Options
from ..registry import closest

KINDS = ("fbank", "stft")
NORMALIZE_MODES = ("utterance", "global", "none")
LOG_FLOOR = 1e-6  # added before the log so digital silence gives log(1e-6), never -inf
STD_FLOOR = 1e-5  # a constant bin (or a 1-frame utterance) has std 0; dividing by this keeps it finite


@dataclass
class FeatureConfig(Options):
    kind: str = "fbank"  # fbank: log-mel filterbank; stft: log(1 + |STFT|) linear spectrogram (DeepSpeech2)
    sample_rate: int = 16000  # Hz the waveform must be at (read_audio resamples to it)
    n_mels: int = 80  # mel bins (fbank only)
    win_ms: float = 25.0  # analysis window length in milliseconds
    hop_ms: float = 10.0  # frame shift in milliseconds
    n_fft: int = 0  # 0: fbank uses the next power of two >= window, stft the window itself (20 ms@16k -> 161 bins)
    normalize: str = "utterance"  # utterance | global (needs stats from compute_global_stats) | none

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"features.kind={self.kind!r} is unknown{closest(self.kind, KINDS)}; "
                             f"choose one of {', '.join(KINDS)}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"features.normalize={self.normalize!r} is unknown"
                             f"{closest(self.normalize, NORMALIZE_MODES)}; choose one of {', '.join(NORMALIZE_MODES)}")
        for name in ("sample_rate", "n_mels", "win_ms", "hop_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"features.{name} must be positive, got {getattr(self, name)!r}")
        if self.n_fft < 0 or (self.n_fft and self.n_fft < self.win_length):
            raise ValueError(f"features.n_fft={self.n_fft} must be 0 (automatic) or >= the window "
                             f"({self.win_length} samples = {self.win_ms} ms at {self.sample_rate} Hz)")
        if self.hop_length < 1:
            raise ValueError(f"features.hop_ms={self.hop_ms} is under one sample at {self.sample_rate} Hz")

    @property
    def win_length(self) -> int:
        return round(self.win_ms * self.sample_rate / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def fft_size(self) -> int:
        """The n_fft actually used, with 0 resolved."""
        if self.n_fft:
            return self.n_fft
        return 1 << math.ceil(math.log2(self.win_length)) if self.kind == "fbank" else self.win_length


class FeatureExtractor(nn.Module):
    """Waveform (N,) -> un-normalised features (T, F), float32, ``T = num_frames(N)``.

    Also takes (B, N) -> (B, T, F) for equal-length waveforms. An ``nn.Module`` so ``.to(device)``
    moves the mel filterbank and window.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        # Zero padding (not reflect) so N shorter than half a window still gives frames.
        common = {"n_fft": config.fft_size, "win_length": config.win_length, "hop_length": config.hop_length,
                  "center": True, "pad_mode": "constant"}
        if config.kind == "fbank":
            self.transform = AT.MelSpectrogram(sample_rate=config.sample_rate, n_mels=config.n_mels,
                                               power=2.0, **common)
        else:
            self.transform = AT.Spectrogram(power=1.0, **common)

    @property
    def feature_dim(self) -> int:
        return self.config.n_mels if self.config.kind == "fbank" else self.config.fft_size // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames :meth:`forward` returns for ``num_samples`` samples: ``1 + N // hop`` (0 for N = 0)."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        return 0 if num_samples == 0 else 1 + num_samples // self.config.hop_length

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.shape[-1] == 0:
            return wave.new_zeros(*wave.shape[:-1], 0, self.feature_dim, dtype=torch.float32)
        spec = self.transform(wave.float())  # (..., F, T)
        spec = torch.log(spec + LOG_FLOOR) if self.config.kind == "fbank" else torch.log1p(spec)
        return spec.transpose(-1, -2).contiguous()


def normalize_features(feats: torch.Tensor, mode: str, stats: dict | None = None) -> torch.Tensor:
    """Normalise features (T, F) -> (T, F).

    ``utterance``: zero mean, unit (population) std per bin over this utterance's frames;
    ``global``: ``(x - stats["mean"]) / stats["std"]`` with stats from :func:`compute_global_stats`;
    ``none``: unchanged. Std is floored at ``STD_FLOOR`` so constant bins and 1-frame utterances stay finite.
    """
    if mode == "none":
        return feats
    if mode == "utterance":
        mean = feats.mean(dim=0, keepdim=True)
        std = feats.std(dim=0, correction=0, keepdim=True) if len(feats) else torch.ones_like(mean)
        return (feats - mean) / std.clamp_min(STD_FLOOR)
    if mode == "global":
        if not stats or "mean" not in stats or "std" not in stats:
            raise ValueError("normalize='global' needs stats with 'mean' and 'std': compute them with "
                             "compute_global_stats over the training features and pass them in "
                             "(or use normalize='utterance')")
        mean = torch.as_tensor(stats["mean"], dtype=feats.dtype, device=feats.device)
        std = torch.as_tensor(stats["std"], dtype=feats.dtype, device=feats.device)
        if mean.shape != (feats.shape[-1],) or std.shape != mean.shape:
            raise ValueError(f"global stats have {mean.numel()} means and {std.numel()} stds but the features "
                             f"have {feats.shape[-1]} bins: recompute the stats with the current feature config")
        return (feats - mean) / std.clamp_min(STD_FLOOR)
    raise ValueError(f"unknown normalize mode {mode!r}{closest(mode, NORMALIZE_MODES)}; "
                     f"choose one of {', '.join(NORMALIZE_MODES)}")


def compute_global_stats(features: Iterable[torch.Tensor]) -> dict:
    """Mean and population std per bin over *all frames* of ``features`` (each (T, F)).

    Sums are kept in float64 so millions of frames do not lose precision. Returns plain
    ``{"mean": [float], "std": [float], "frames": int}`` so it loads under ``torch.load(weights_only=True)``.
    """
    total = total_sq = None
    frames = 0
    for feats in features:
        x = feats.detach().to("cpu", torch.float64)
        if total is None:
            total = torch.zeros(x.shape[-1], dtype=torch.float64)
            total_sq = torch.zeros_like(total)
        elif x.shape[-1] != total.numel():
            raise ValueError(f"features have {x.shape[-1]} bins after earlier ones had {total.numel()}: "
                             f"all utterances must come from one feature config")
        total += x.sum(dim=0)
        total_sq += (x * x).sum(dim=0)
        frames += x.shape[0]
    if not frames:
        raise ValueError("compute_global_stats got no frames: the feature iterable was empty")
    mean = total / frames
    var = (total_sq / frames - mean * mean).clamp_min(0.0)  # rounding can make a constant bin slightly negative
    return {"mean": mean.tolist(), "std": var.sqrt().tolist(), "frames": frames}
