"""Training-time augmentation: speed perturbation, gain and additive noise on waveforms, and
SpecAugment masks on features. Everything is off by default.

All randomness comes from the ``generator`` passed in (torch's global RNG when None), so a seed
reproduces an epoch's augmentations exactly. Must never import the core training code.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torchaudio.functional as AF

from .io import read_audio

from ..config import Options
from ..randomness import generator_device, randint, uniform


@dataclass
class AugmentConfig(Options):
    speed: list = field(default_factory=list)  # speed factors, one drawn per utterance, e.g. [0.9, 1.0, 1.1]
    noise_snr_db: list = field(default_factory=list)  # [low, high]: add noise at an SNR drawn uniformly in dB
    noise_files: list = field(default_factory=list)  # noise recordings to excerpt (looped if short); empty: white noise
    gain_db: list = field(default_factory=list)  # [low, high]: scale by a gain drawn uniformly in dB (a no-op
                                                  # after per-utterance normalisation; useful with global stats)
    freq_masks: int = 0  # SpecAugment frequency masks per utterance
    freq_mask_width: int = 27  # max bins per frequency mask (width drawn in [0, this])
    time_masks: int = 0  # SpecAugment time masks per utterance
    time_mask_width: int = 40  # max frames per time mask (width drawn in [0, this])
    time_mask_ratio: float = 0.05  # and at most this fraction of the utterance (the adaptive masking of
                                   # Park et al. 2020, "SpecAugment on large scale datasets")

    def __post_init__(self):
        self.speed, self.noise_snr_db = list(self.speed), list(self.noise_snr_db)
        self.noise_files, self.gain_db = list(self.noise_files), list(self.gain_db)
        if any(not s > 0 for s in self.speed):
            raise ValueError(f"augment.speed factors must be positive, got {self.speed}")
        for name in ("noise_snr_db", "gain_db"):
            value = getattr(self, name)
            if value and (len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"augment.{name} must be [] (off) or [low, high] with low <= high, got {value}")
        if self.noise_files and not self.noise_snr_db:
            raise ValueError("augment.noise_files is set but augment.noise_snr_db is empty: "
                             "set noise_snr_db=[low, high] to say how loud the noise is")
        for name in ("freq_masks", "freq_mask_width", "time_masks", "time_mask_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.time_mask_ratio <= 1:
            raise ValueError(f"augment.time_mask_ratio must be in (0, 1], got {self.time_mask_ratio}")

    @property
    def enabled(self) -> bool:
        """True when any augmentation would change its input (speed [1.0] alone changes nothing)."""
        return bool(any(s != 1.0 for s in self.speed) or self.noise_snr_db or self.gain_db
                    or (self.freq_masks and self.freq_mask_width) or (self.time_masks and self.time_mask_width))


def speed_perturb(wave: torch.Tensor, sample_rate: int, factor: float) -> torch.Tensor:
    """(N,) -> (ceil(N * sr / round(sr * factor)),): ``factor`` times faster, like sox ``speed`` (Kaldi, ESPnet).

    Resamples as if the audio had been recorded at ``sample_rate * factor``; the result is read at
    ``sample_rate``, so tempo and pitch both change.
    """
    if factor == 1.0:
        return wave
    return AF.resample(wave, round(sample_rate * factor), sample_rate)


@functools.lru_cache(maxsize=64)
def _noise_recording(path: str, sample_rate: int) -> torch.Tensor:
    # Cached: the same few noise files are read for every utterance of every epoch.
    return read_audio(path, sample_rate)


def _noise_like(wave: torch.Tensor, sample_rate: int, files: list, generator: torch.Generator | None) -> torch.Tensor:
    """Noise of wave's length: white Gaussian, or a random excerpt of a random file (looped if short)."""
    n = wave.shape[-1]
    if not files:
        return torch.randn(n, generator=generator, device=generator_device(generator) or wave.device).to(wave)
    noise = _noise_recording(str(files[randint(len(files), generator)]), sample_rate)
    start = randint(len(noise), generator)
    reps = math.ceil((start + n) / len(noise))
    return noise.repeat(reps)[start:start + n].to(wave)


def add_noise(wave: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave + a * noise`` with ``a`` chosen so ``10 log10(sum(wave^2) / sum((a noise)^2)) == snr_db``.

    A silent wave (or silent noise) is returned unchanged: an SNR relative to zero signal power is
    undefined, and any noise at all would be an SNR of -inf dB.
    """
    signal_power = wave.double().square().sum()
    noise_power = noise.double().square().sum()
    if signal_power == 0 or noise_power == 0:
        return wave
    scale = torch.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (wave.double() + scale * noise.double()).to(wave.dtype)


def augment_waveform(wave: torch.Tensor, sample_rate: int, cfg: AugmentConfig,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """(N,) -> (N',): speed perturbation (N' != N), then gain, then additive noise; each only if configured."""
    if cfg.speed:
        wave = speed_perturb(wave, sample_rate, float(cfg.speed[randint(len(cfg.speed), generator)]))
    if cfg.gain_db:
        wave = wave * 10 ** (uniform(*cfg.gain_db, generator) / 20)
    if cfg.noise_snr_db:
        snr_db = uniform(*cfg.noise_snr_db, generator)
        wave = add_noise(wave, _noise_like(wave, sample_rate, cfg.noise_files, generator), snr_db)
    return wave


def mask_spans(size: int, count: int, max_width: int, generator: torch.Generator | None) -> list[tuple[int, int]]:
    """``count`` spans ``(start, width)`` inside ``[0, size)``: width uniform in [0, max_width], start uniform."""
    spans = []
    for _ in range(count):
        width = randint(min(max_width, size) + 1, generator)
        spans.append((randint(size - width + 1, generator), width))
    return spans


def spec_augment(feats: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """(T, F) -> (T, F) with frequency masks (columns), then time masks (rows), set to 0.

    Apply it to *normalised* features: there 0 is the mean, which is the fill SpecAugment uses
    (Park et al. 2019: "setting masked values to zero is equivalent to setting them to the mean").
    A time mask is at most ``time_mask_ratio * T`` frames, so short utterances keep most of their frames.
    Masks may overlap. The input is not modified.
    """
    num_frames, num_bins = feats.shape
    freq = mask_spans(num_bins, cfg.freq_masks, cfg.freq_mask_width, generator)
    time = mask_spans(num_frames, cfg.time_masks,
                      min(cfg.time_mask_width, int(cfg.time_mask_ratio * num_frames)), generator)
    if not any(w for _, w in freq + time):
        return feats
    out = feats.clone()
    for start, width in freq:
        out[:, start:start + width] = 0
    for start, width in time:
        out[start:start + width, :] = 0
    return out
