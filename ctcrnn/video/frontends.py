"""Per-frame 2D CNN frontends for video: (B, T, C, H, W) -> (B, T', out_dim), T' = ceil(T / temporal_stride)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..model import Frontend, conv_output_lengths


class SpatialSoftArgmax(nn.Module):
    """(N, C, H, W) -> (N, 5C): per channel the expected x and y under a spatial softmax, their spreads,
    and the peak response (Levine et al. 2016, "deep spatial autoencoders"). Where something is, how
    big it is and whether it is there become features a linear layer over time can difference, which
    is what motion, growth and blinking are."""

    def __init__(self, channels: int):
        super().__init__()
        self.log_temperature = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        flat = x.flatten(2)                                                      # (N, C, H*W)
        weights = (flat * self.log_temperature.exp()[None, :, None]).softmax(-1)
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).repeat_interleave(w)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).repeat(h)
        mean_x, mean_y = (weights * xs).sum(-1), (weights * ys).sum(-1)
        spread_x = (weights * (xs - mean_x[..., None]) ** 2).sum(-1)
        spread_y = (weights * (ys - mean_y[..., None]) ** 2).sum(-1)
        return torch.cat([mean_x, mean_y, spread_x, spread_y, flat.amax(-1)], dim=1)


class GlobalAvgMaxPool(nn.Module):
    """(N, C, H, W) -> (N, 2C): mean and max over space. Translation invariant, so a motion detector
    learnt at one place works everywhere (with frame differences, direction is a local pattern)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], dim=1)


def small_cnn(in_channels: int, widths: tuple[int, ...], grid: int, pool: str = "grid",
              input_norm: bool = False) -> tuple[nn.Module, int]:
    """3x3 stride-2 conv blocks, then a pool that keeps *where* the content is, which motion actions
    need (a global average pool would throw position away): a fixed grid, flattened, or a spatial
    soft-argmax."""
    # Standardise each input channel first: frame differences and motion cues are an order of magnitude
    # smaller than the pixels, and without this the first conv would all but ignore them (its gradient
    # for a channel scales with that channel's size).
    layers, channels = [nn.BatchNorm2d(in_channels)] if input_norm else [], in_channels
    for width in widths:
        layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        channels = width
    if pool == "softargmax":
        return nn.Sequential(*layers, SpatialSoftArgmax(channels)), 5 * channels
    if pool == "avgmax":
        return nn.Sequential(*layers, GlobalAvgMaxPool()), 2 * channels
    if pool != "grid":
        raise ValueError(f"unknown pool {pool!r}: use 'grid', 'avgmax' or 'softargmax'")
    layers += [nn.AdaptiveAvgPool2d(grid), nn.Flatten()]
    return nn.Sequential(*layers), channels * grid * grid


def resnet18_trunk(in_channels: int, weights_path: str | None) -> tuple[nn.Module, int]:
    """torchvision ResNet-18 without its classifier (512-d per frame); weights only from a local file."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights_path:
        state = torch.load(Path(weights_path), map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"fc.weight", "fc.bias"}:
            raise ValueError(f"{weights_path} is not a ResNet-18 state_dict: missing {missing[:4]}, "
                             f"unexpected {unexpected[:4]}")
    if in_channels != 3:
        # Keep the (pretrained) RGB filters and start the extra channels (e.g. frame differences) at zero,
        # so the trunk initially computes exactly what it was trained to.
        conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        with torch.no_grad():
            conv1.weight.zero_()
            conv1.weight[:, : min(3, in_channels)] = net.conv1.weight[:, : min(3, in_channels)]
        net.conv1 = conv1
    net.fc = nn.Identity()
    return net, 512


def normal_flow(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) -> (B, T, 2, H, W): I_t * dI/dx and I_t * dI/dy of the grey-level frames.

    Brightness constancy says I_t = -v . grad I, so I_t * grad I = -(v . grad I) grad I points against
    the motion wherever there is an edge: its sum over a frame is the numerator of the least-squares
    (Lucas-Kanade) global velocity. A CNN can learn this product from frames and their differences,
    but slowly, because each factor alone says nothing about direction; handing it over is the cheap
    cousin of the optical-flow stream of two-stream networks (Simonyan & Zisserman 2014). The first
    frame has no predecessor and gets zeros.
    """
    grey = x.mean(dim=2)                                                     # (B, T, H, W)
    dt = torch.diff(grey, dim=1, prepend=grey[:, :1])
    mid = 0.5 * (grey + torch.cat([grey[:, :1], grey[:, :-1]], dim=1))      # gradient between t-1 and t
    dx = torch.zeros_like(mid)
    dy = torch.zeros_like(mid)
    dx[..., 1:-1] = 0.5 * (mid[..., 2:] - mid[..., :-2])
    dy[..., 1:-1, :] = 0.5 * (mid[..., 2:, :] - mid[..., :-2, :])
    return torch.stack([dt * dx, dt * dy], dim=2)


class FrameCNN(Frontend):
    """Applies a 2D CNN to every valid frame as one (N_valid, C, H, W) batch.

    Padding frames are never run through the CNN, so BatchNorm statistics in training see real
    frames only and batch composition cannot change a clip's features.
    """

    def __init__(self, in_shape: tuple[int, int, int], trunk: str = "small", widths: tuple[int, ...] = (16, 32, 64),
                 grid: int = 4, feature_dim: int = 128, dropout: float = 0.1, weights_path: str | None = None,
                 freeze_trunk: bool = False, temporal_kernel: int = 5, temporal_stride: int = 1,
                 frame_difference: bool = False, motion_cues: bool = False, pool: str = "grid",
                 input_norm: bool = False):
        super().__init__()
        # Frame differences (x_t - x_{t-1}) as extra channels put motion in front of the CNN directly,
        # as in TSN's "RGB difference" stream; the first frame's difference is zero.
        self.frame_difference, self.motion_cues = frame_difference, motion_cues
        in_channels = in_shape[0] * (2 if frame_difference else 1) + (2 if motion_cues else 0)
        if trunk == "small":
            self.trunk, width = small_cnn(in_channels, tuple(widths), grid, pool, input_norm)
        elif trunk == "resnet18":
            self.trunk, width = resnet18_trunk(in_channels, weights_path)
        else:
            raise ValueError(f"unknown trunk {trunk!r}: use 'small' or 'resnet18'")
        if freeze_trunk:
            # Frozen means frozen BatchNorm statistics too: see train() below.
            self.trunk.requires_grad_(False)
        self.freeze_trunk = freeze_trunk
        self.project = nn.Sequential(nn.Linear(width, feature_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        # A short temporal convolution (centred, zero padded) lets the features of a frame see its
        # neighbours, so motion (a difference between frames) is one linear filter away for the RNN.
        if temporal_kernel % 2 == 0 or temporal_kernel < 1:
            raise ValueError(f"temporal_kernel must be odd and positive (length-preserving), got {temporal_kernel}")
        # A stride > 1 subsamples time: shorter CTC outputs and a cheaper RNN, at the cost of coarser
        # boundaries. Output j is centred on input frame j * stride; a kernel of at least 2 * stride - 1
        # makes sure every input frame is read by some output.
        if temporal_stride > 1 and temporal_kernel < 2 * temporal_stride - 1:
            raise ValueError(f"temporal_stride {temporal_stride} needs temporal_kernel >= {2 * temporal_stride - 1}, "
                             f"got {temporal_kernel}")
        self.stride = temporal_stride
        self.temporal = (nn.Conv1d(feature_dim, feature_dim, temporal_kernel, stride=temporal_stride,
                                   padding=temporal_kernel // 2) if temporal_kernel > 1 else None)
        self.out_dim = feature_dim

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.temporal is None:
            return lengths
        return conv_output_lengths(lengths, self.temporal.kernel_size[0], self.temporal.stride[0],
                                   self.temporal.padding[0])

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()
        return self

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, steps = x.shape[:2]
        valid = torch.arange(steps, device=x.device)[None, :] < lengths.to(x.device)[:, None]  # (B, T)
        extra = []
        if self.frame_difference:
            extra.append(torch.diff(x, dim=1, prepend=x[:, :1]))
        if self.motion_cues:
            extra.append(normal_flow(x))
        if extra:
            x = torch.cat([x, *extra], dim=2)
        features = self.project(self.trunk(x[valid]))                                          # (N_valid, F)
        out = features.new_zeros(batch, steps, self.out_dim)
        out[valid] = features
        if self.temporal is not None:
            # Padding frames are zero, exactly what the conv's own zero padding would give a clip alone.
            out = torch.relu(self.temporal(out.transpose(1, 2))).transpose(1, 2)
        return out
