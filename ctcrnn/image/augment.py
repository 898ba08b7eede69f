"""Training-time augmentation of text-line images: ink thickness, small rotation, shear (slant), scale and
horizontal stretch, blur, contrast and noise. A dataset applies it to its training split only.

Everything works on the normalised line (H, W), ink 1 and paper 0, at the model's height, so the same
settings mean the same thing for a 32-pixel printed line and a 128-pixel handwritten one. All randomness
comes from the ``generator`` passed in (one per item, seeded by (seed, epoch, index)), so an epoch's
augmentations are the same in any DataLoader worker and after a resume.
Must never import the core training code or another modality.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import Options
from ..randomness import uniform


@dataclass
class LineAugmentConfig(Options):
    enabled: bool = True     # training split only; validation, test and new files are never augmented
    rotate: float = 1.5      # degrees: rotation drawn in [-r, r], r = rotate or less for long lines (their ends
                             # move at most a tenth of the height, so the writing stays on the canvas)
    shear: float = 0.3       # horizontal shear (slant) drawn in [-shear, shear] (tan of the slant angle)
    scale: float = 0.08      # the writing is zoomed by s in [1 - scale, 1 + scale] (the height stays)
    stretch: float = 0.15    # the width alone is stretched by t in [1 - stretch, 1 + stretch]
    ink: float = 0.6         # ink thickness: blend towards a 3x3 dilation (max-pool) or erosion (min-pool) by a
                             # weight in [0, ink], thicker or thinner with equal odds
    blur: float = 1.0        # Gaussian blur with sigma in [0, blur] pixels
    contrast: float = 0.5    # paper lifted to [0, contrast/2], strongest ink lowered to [1 - contrast/2, 1]
    noise: float = 0.08      # additive Gaussian noise with standard deviation in [0, noise]
    probability: float = 0.5  # chance of each photometric change (ink, blur, contrast, noise) per line

    def __post_init__(self):
        for name in ("rotate", "shear", "ink", "blur", "noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("scale", "stretch", "contrast", "ink"):
            if not 0 <= getattr(self, name) < 1 + (name == "ink"):
                raise ValueError(f"augment.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.probability <= 1:
            raise ValueError(f"augment.probability must be in [0, 1], got {self.probability}")

    @property
    def active(self) -> bool:
        return self.enabled and any((self.rotate, self.shear, self.scale, self.stretch, self.ink, self.blur,
                                     self.contrast, self.noise))

    def max_width(self, width: int, height: int) -> int:
        """The widest a ``width``-pixel line can become (stretch, zoom, and the margin a shear adds)."""
        grow = (1 + self.scale) * (1 + self.stretch) if self.active else 1.0
        return math.ceil(width * grow) + (shear_margin(self.shear, height) if self.active else 0)


def shear_margin(shear: float, height: int) -> int:
    """Columns added to the line so that a shear of ``shear`` does not cut off its first and last letters."""
    return math.ceil(abs(shear) * height)


def ink_thickness(line: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend (H, W) towards its 3x3 dilation (weight > 0: bolder strokes) or erosion (weight < 0: thinner)."""
    if weight == 0:
        return line
    x = line[None, None]
    moved = F.max_pool2d(x, 3, stride=1, padding=1) if weight > 0 else -F.max_pool2d(-x, 3, stride=1, padding=1)
    return (x + abs(weight) * (moved - x))[0, 0]


def affine(line: torch.Tensor, rotate_deg: float, shear: float, zoom: float, stretch: float) -> torch.Tensor:
    """(H, W) -> (H, W') with W' = round(W * zoom * stretch) + the shear margin: the writing rotated, sheared,
    zoomed and stretched about the line's centre, sampled bilinearly; what comes from outside is paper (0)."""
    height, width = line.shape
    out_width = max(1, round(width * zoom * stretch)) + shear_margin(shear, height)
    theta = math.radians(rotate_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # Forward map (input -> output), about the centres: rotation @ shear @ scale(zoom * stretch, zoom).
    forward = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64) @ \
        torch.tensor([[1.0, -shear], [0.0, 1.0]], dtype=torch.float64) @ \
        torch.diag(torch.tensor([zoom * stretch, zoom], dtype=torch.float64))
    inverse = torch.linalg.inv(forward)
    ys = torch.arange(height, dtype=torch.float64) + 0.5 - height / 2
    xs = torch.arange(out_width, dtype=torch.float64) + 0.5 - out_width / 2
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    points = torch.stack([grid_x, grid_y], dim=-1) @ inverse.T            # (H, W', 2) input offsets
    source_x = (points[..., 0] + width / 2) * 2 / width - 1               # align_corners=False coordinates
    source_y = (points[..., 1] + height / 2) * 2 / height - 1
    grid = torch.stack([source_x, source_y], dim=-1).to(line.dtype)[None]
    return F.grid_sample(line[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]


def gaussian_blur(line: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma < 0.2:
        return line
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=line.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = F.conv2d(line[None, None], kernel.view(1, 1, 1, -1), padding=(0, radius))
    return F.conv2d(x, kernel.view(1, 1, -1, 1), padding=(radius, 0))[0, 0]


def augment_line(line: torch.Tensor, config: LineAugmentConfig, generator: torch.Generator | None) -> torch.Tensor:
    """(H, W) ink in [0, 1] -> (H, W') augmented, W' <= ``config.max_width(W, H)``. The input is not modified."""
    if not config.active:
        return line

    def chance() -> bool:
        return uniform(0.0, 1.0, generator) < config.probability

    if config.ink and chance():
        magnitude = uniform(0.0, config.ink, generator)
        line = ink_thickness(line, magnitude if uniform(0.0, 1.0, generator) < 0.5 else -magnitude)
    height, width = line.shape
    rotate = min(config.rotate, math.degrees(math.atan(0.1 * height / (width / 2))))
    line = affine(line, uniform(-rotate, rotate, generator),
                  uniform(-config.shear, config.shear, generator),
                  uniform(1 - config.scale, 1 + config.scale, generator),
                  uniform(1 - config.stretch, 1 + config.stretch, generator))
    if config.blur and chance():
        line = gaussian_blur(line, uniform(0.0, config.blur, generator))
    if config.contrast and chance():
        paper = uniform(0.0, config.contrast / 2, generator)
        strongest = uniform(1 - config.contrast / 2, 1.0, generator)
        line = paper + (strongest - paper) * line
    if config.noise and chance():
        std = uniform(0.0, config.noise, generator)
        line = line + std * torch.randn(line.shape, generator=generator, dtype=line.dtype)
    return line.clamp(0.0, 1.0)
