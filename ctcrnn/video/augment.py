"""Training-time augmentation of video clips: temporal rescaling, random crop, horizontal flip and colour
jitter (the CSLR recipe of VAC: crop 224, flip, +-20 % temporal rescale). Everything is off by default; a
dataset applies it to training clips only.

One draw per clip: every frame gets the same crop window, flip and colour factors, so motion stays
coherent. All randomness comes from the ``generator`` passed in (torch's global RNG when None), so a seed
reproduces an epoch's augmentations exactly. Must never import the core training code.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..config import Options
from ..randomness import randint, uniform
from .io import VideoConfig, check_hw

_GREY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass
class VideoAugmentConfig(Options):
    random_crop: list = field(default_factory=list)  # [H, W] crop at a random place per clip, replacing the
                                                     # centre crop (read with reading_config); [] off
    flip: bool = False  # mirror the clip left-right with probability 0.5 (not for data where handedness matters)
    temporal_rescale: float = 0.0  # x: resample the clip to round(T * f) frames, f uniform in [1-x, 1+x]; 0 off
    colour_jitter: float = 0.0  # x: brightness, contrast and saturation factors uniform in [1-x, 1+x]; 0 off

    def __post_init__(self):
        self.random_crop = check_hw("augment.random_crop", self.random_crop)
        if not 0 <= self.temporal_rescale < 1:
            raise ValueError(f"augment.temporal_rescale must be in [0, 1) (0.2 rescales by 0.8..1.2), "
                             f"got {self.temporal_rescale}")
        if not 0 <= self.colour_jitter <= 1:
            raise ValueError(f"augment.colour_jitter must be in [0, 1], got {self.colour_jitter}")

    @property
    def enabled(self) -> bool:
        return bool(self.random_crop or self.flip or self.temporal_rescale or self.colour_jitter)


def reading_config(video: VideoConfig, augment: VideoAugmentConfig) -> VideoConfig:
    """The VideoConfig to read training clips with: without the centre crop when a random crop replaces it
    (evaluation keeps reading with ``video`` itself)."""
    if augment.random_crop and video.crop:
        return dataclasses.replace(video, crop=[])
    return video


def rescale_indices(num_frames: int, factor: float) -> list[int]:
    """Source frame of each of the ``max(1, round(num_frames * factor))`` output frames: the one under the
    centre of output frame k, ``floor((k + 0.5) * num_frames / L)``. factor 1 is the identity, 2 repeats
    each frame twice, 0.5 keeps frames 1, 3, 5, ...; index frame labels with it to keep them aligned."""
    if num_frames <= 0:
        return []
    if not factor > 0:
        raise ValueError(f"rescale factor must be positive, got {factor}")
    length = max(1, int(num_frames * factor + 0.5))
    return [((2 * k + 1) * num_frames) // (2 * length) for k in range(length)]


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 1, H, W) luma."""
    return (x * x.new_tensor(_GREY_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def colour_jitter(frames: torch.Tensor, brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """(T, C, H, W) float in [0, 1] -> same, with torchvision's definitions applied in this fixed order:
    brightness scales, contrast blends with each frame's mean grey, saturation blends with the grey image
    (RGB only; a grey clip ignores it). Clamped to [0, 1]."""
    x = (frames * brightness).clamp(0, 1)
    grey = _grey(x) if x.shape[1] == 3 else x
    x = (contrast * x + (1 - contrast) * grey.mean(dim=(1, 2, 3), keepdim=True)).clamp(0, 1)
    if x.shape[1] == 3:
        x = (saturation * x + (1 - saturation) * _grey(x)).clamp(0, 1)
    return x


def augment_clip(frames: torch.Tensor, cfg: VideoAugmentConfig,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[int]]:
    """(T, C, H, W) -> ((T', C, H', W'), indices): temporal rescale, random crop, flip, colour jitter, each only
    if configured. ``indices`` (len T') are the source frames used, so ``[labels[i] for i in indices]`` keeps
    frame labels aligned. Float frames in [0, 1]; uint8 works too (jittered in float, rounded back). With
    everything off the input itself is returned. The input is never modified.
    """
    num_frames = frames.shape[0]
    indices = list(range(num_frames))
    if cfg.temporal_rescale:
        factor = uniform(1 - cfg.temporal_rescale, 1 + cfg.temporal_rescale, generator)
        indices = rescale_indices(num_frames, factor)
        frames = frames[indices]
    if cfg.random_crop:
        (h, w), (ch, cw) = frames.shape[-2:], cfg.random_crop
        if ch > h or cw > w:
            raise ValueError(f"augment.random_crop {cfg.random_crop} is larger than the clip's frames ({h}x{w}): "
                             f"lower it or resize the frames (video.size)")
        top, left = randint(h - ch + 1, generator), randint(w - cw + 1, generator)
        frames = frames[..., top:top + ch, left:left + cw]
    if cfg.flip and uniform(0, 1, generator) < 0.5:
        frames = frames.flip(-1)
    if cfg.colour_jitter:
        low, high = 1 - cfg.colour_jitter, 1 + cfg.colour_jitter
        factors = [uniform(low, high, generator) for _ in range(3)]
        if frames.dtype == torch.uint8:
            frames = (colour_jitter(frames.float() / 255, *factors) * 255).round().to(torch.uint8)
        else:
            frames = colour_jitter(frames, *factors)
    return frames, indices
