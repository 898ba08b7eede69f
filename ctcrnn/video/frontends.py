"""Per-frame 2D CNN frontends for video: (B, T, C, H, W) -> (B, T', out_dim), T' = ceil(T / temporal_stride)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..nn.masking import masked, valid_mask, zero_padding
from ..nn.model import Frontend, conv_output_lengths
from ..nn.streaming import CausalConvStream, State, causal_pad


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


class FrozenTrunkMixin:
    """A frozen trunk (``self.freeze_trunk``) stays in eval mode when the model trains: frozen means frozen
    BatchNorm statistics too, not only frozen weights."""

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_trunk:
            self.trunk.eval()
        return self


class FrameCNN(FrozenTrunkMixin, Frontend):
    """Applies a 2D CNN to every valid frame as one (N_valid, C, H, W) batch.

    Padding frames are never run through the CNN, so BatchNorm statistics in training see real
    frames only and batch composition cannot change a clip's features.
    """

    def __init__(self, in_shape: tuple[int, int, int], trunk: str = "small", widths: tuple[int, ...] = (16, 32, 64),
                 grid: int = 4, feature_dim: int = 128, dropout: float = 0.1, weights_path: str | None = None,
                 freeze_trunk: bool = False, temporal_kernel: int = 5, temporal_stride: int = 1,
                 frame_difference: bool = False, motion_cues: bool = False, pool: str = "grid",
                 input_norm: bool = False, causal: bool = False):
        super().__init__()
        self.in_shape = tuple(in_shape)
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
        # causal=True pads the temporal conv on the left only: output j reads frames up to j * stride, so the
        # frontend runs on a live stream (differences and motion cues only look back one frame anyway).
        if temporal_kernel < 1 or (temporal_kernel % 2 == 0 and not causal):
            raise ValueError(f"temporal_kernel must be odd and positive (length-preserving), got {temporal_kernel}")
        self.causal = causal
        # A stride > 1 subsamples time: shorter CTC outputs and a cheaper RNN, at the cost of coarser
        # boundaries. Output j is centred on input frame j * stride; a kernel of at least 2 * stride - 1
        # makes sure every input frame is read by some output.
        if temporal_stride > 1 and temporal_kernel < 2 * temporal_stride - 1:
            raise ValueError(f"temporal_stride {temporal_stride} needs temporal_kernel >= {2 * temporal_stride - 1}, "
                             f"got {temporal_kernel}")
        self.stride = temporal_stride
        self.temporal = (nn.Conv1d(feature_dim, feature_dim, temporal_kernel, stride=temporal_stride,
                                   padding=0 if causal else temporal_kernel // 2) if temporal_kernel > 1 else None)
        self.out_dim = feature_dim

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.temporal is None:
            return lengths
        kernel, stride = self.temporal.kernel_size[0], self.temporal.stride[0]
        if self.causal:
            return conv_output_lengths(lengths + kernel - 1, kernel, stride)
        return conv_output_lengths(lengths, kernel, stride, self.temporal.padding[0])

    def _with_motion(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C, H, W) frames -> with their differences and motion cues as extra channels (the first
        frame has no predecessor: zeros)."""
        extra = []
        if self.frame_difference:
            extra.append(torch.diff(x, dim=1, prepend=x[:, :1]))
        if self.motion_cues:
            extra.append(normal_flow(x))
        return torch.cat([x, *extra], dim=2) if extra else x

    def _temporal(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, T) frame features (causally padded when causal) -> (B, T', F)."""
        return torch.relu(self.temporal(frames)).transpose(1, 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, steps = x.shape[:2]
        valid = valid_mask(lengths.to(x.device), steps)                                          # (B, T)
        x = self._with_motion(x)
        features = self.project(self.trunk(x[valid]))                                          # (N_valid, F)
        out = features.new_zeros(batch, steps, self.out_dim)
        out[valid] = features
        if self.temporal is not None:
            # Padding frames are zero, exactly what the conv's own zero padding would give a clip alone.
            out = out.transpose(1, 2)
            out = self._temporal(causal_pad(out, self.temporal.kernel_size[0], 2) if self.causal else out)
        return out

    def initial_state(self, batch: int, device=None, dtype=None) -> State:
        """The last frame seen (for differences and motion cues), whether one was seen, and the temporal conv's
        buffer: fixed shapes, so an exported step function can carry them."""
        if not self.causal:
            super().initial_state(batch)
        state = {"previous": torch.zeros(batch, 1, *self.in_shape, device=device, dtype=dtype),
                 "started": torch.zeros(batch, 1, 1, 1, 1, device=device, dtype=dtype)}
        if self.temporal is not None:
            state["temporal"] = self._temporal_stream().initial((self.out_dim, 0), batch, device, dtype)
        return state

    def _temporal_stream(self) -> CausalConvStream:
        return CausalConvStream(self._temporal, self.temporal.kernel_size[0], self.temporal.stride[0], time_dim=2)

    def stream(self, x: torch.Tensor, state: State, final: bool) -> torch.Tensor:
        """(B, n, C, H, W) next frames -> (B, n', out_dim). A stream's first frame is its own predecessor (as
        offline, where it gets zero motion); later chunks look back at the previous chunk's last frame."""
        if not x.shape[1]:
            return x.new_zeros(x.shape[0], 0, self.out_dim)
        started = state["started"]
        previous = started * state["previous"] + (1 - started) * x[:, :1]
        motion = self._with_motion(torch.cat([previous, x], dim=1))[:, 1:]
        state["previous"], state["started"] = x[:, -1:], torch.ones_like(started)
        features = self.project(self.trunk(motion.flatten(0, 1))).reshape(x.shape[0], -1, self.out_dim)
        if self.temporal is None:
            return features
        y, state["temporal"] = self._temporal_stream()(features.transpose(1, 2), state["temporal"])
        return x.new_zeros(x.shape[0], 0, self.out_dim) if y is None else y


class LipNet3D(Frontend):
    """LipNet's spatio-temporal CNN (Assael et al. 2016): (B, T, C, H, W) -> (B, T, 96 * H' * W').

    Three blocks of Conv3d -> ReLU -> Dropout3d -> MaxPool3d (1, 2, 2), as in the paper's table and
    its PyTorch reproduction (VIPL's LipNet-PyTorch): 32, 64 and 96 channels, kernels (3, 5, 5),
    (3, 5, 5), (3, 3, 3) over (time, height, width), paddings (1, 2, 2), (1, 2, 2), (1, 1, 1); only
    the first conv has stride (1, 2, 2), the other two stride 1. Time is never subsampled (stride 1).
    A 50 x 100 (H x W) mouth crop gives 25 x 50 -> 12 x 25 -> 12 x 25 -> 6 x 12 -> 6 x 12 -> 3 x 6,
    so 96 x 3 x 6 = 1728 features per frame (flattened channel-major). Spatial dropout drops whole
    channels of a clip. The temporal kernel of 3 would read the frame after a clip's last one, so
    padded frames are zeroed before every conv: a clip's output is the same alone or batched.
    """

    def __init__(self, in_shape: tuple[int, int, int] = (3, 50, 100), channels: tuple[int, int, int] = (32, 64, 96),
                 dropout: float = 0.5):
        super().__init__()
        in_channels, height, width = in_shape
        kernels, strides, paddings = ((3, 5, 5), (3, 5, 5), (3, 3, 3)), ((1, 2, 2), (1, 1, 1), (1, 1, 1)), \
            ((1, 2, 2), (1, 2, 2), (1, 1, 1))
        self.blocks = nn.ModuleList()
        for width_out, kernel, stride, padding in zip(channels, kernels, strides, paddings):
            self.blocks.append(nn.Sequential(nn.Conv3d(in_channels, width_out, kernel, stride, padding),
                                             nn.ReLU(inplace=True), nn.Dropout3d(dropout),
                                             nn.MaxPool3d((1, 2, 2), (1, 2, 2))))
            in_channels = width_out
            height = ((height + 2 * padding[1] - kernel[1]) // stride[1] + 1) // 2
            width = ((width + 2 * padding[2] - kernel[2]) // stride[2] + 1) // 2
        if height < 1 or width < 1:
            raise ValueError(f"LipNet3D: frames of {in_shape[1]} x {in_shape[2]} pixels shrink to nothing after "
                             f"three (1, 2, 2) poolings: use mouth crops of at least 16 x 16 (LipNet: 50 x 100)")
        self.feature_shape = (in_channels, height, width)
        self.out_dim = in_channels * height * width

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        x = x.transpose(1, 2)                                                  # (B, C, T, H, W)
        for block in self.blocks:
            # Zeroed padding is what the conv's own zero padding shows a clip that is alone.
            x = block(zero_padding(x, lengths, time_dim=2))
        x = zero_padding(x, lengths, time_dim=2)
        b, c, t, h, w = x.shape
        return x.permute(0, 2, 1, 3, 4).reshape(b, t, c * h * w)              # feature index = (c * H' + h) * W' + w


class CSLRFrontend(FrozenTrunkMixin, Frontend):
    """The visual module of VAC-family sign-language recognisers (Min et al. 2021, "Visual Alignment
    Constraint for Continuous Sign Language Recognition"; CorrNet keeps it): a 2-D CNN on every frame,
    then VAC's ``TemporalConv`` with ``conv_type=2``: K5-P2-K5-P2, i.e. 2 x (Conv1d kernel 5, no
    padding -> BatchNorm1d -> ReLU -> MaxPool1d 2), ``hidden`` channels. (B, T, C, H, W) -> (B, T', hidden).

    Lengths. The conv stack alone maps T to ((T - 4) // 2 - 4) // 2 frames (VAC's ``update_lgt``).
    VAC's collate function first pads every clip of n frames by replicating its first frame 6 times and
    its last frame up to 4 * ceil(n / 4) + 12 frames, so a clip yields exactly ceil(n / 4) outputs and
    clips of 1-11 frames still yield some. ``edge_padding=True`` (default) does that padding here, on the
    per-frame features (the CNN sees each frame once; replicated frames have identical features), so
    T' = ceil(T / 4); ``edge_padding=False`` gives the bare formula, clamped at 0 (such clips are then
    skipped by the CTC feasibility check; a batch of only such clips yields one all-padding frame).

    Padding and BatchNorm. The CNN runs on real frames only (as :class:`FrameCNN`), so its BatchNorm
    batch statistics never see padding. The temporal convs have no padding, so a valid output frame
    reads valid input frames only; frames past each clip's length are zeroed after every layer, but in
    training BatchNorm1d's batch statistics still include those zeros of the shorter clips (VAC's include
    replicated last frames instead). In eval mode BatchNorm uses running statistics and a clip's output
    is the same alone or batched. ``freeze_trunk`` also keeps the trunk's BatchNorm in eval mode.
    """

    edge_left, edge_total = 6, 12   # VAC's collate: 6 replicated frames before, the rest after

    def __init__(self, in_shape: tuple[int, int, int] = (3, 224, 224), trunk: str = "resnet18",
                 widths: tuple[int, ...] = (16, 32, 64), weights_path: str | None = None,
                 freeze_trunk: bool = False, hidden: int = 1024, edge_padding: bool = True):
        super().__init__()
        if trunk == "small":
            # CPU-sized stand-in for tests and toy data: not from VAC.
            self.trunk, width = small_cnn(in_shape[0], tuple(widths), grid=1, pool="avgmax")
        elif trunk == "resnet18":
            self.trunk, width = resnet18_trunk(in_shape[0], weights_path)
        else:
            raise ValueError(f"unknown trunk {trunk!r}: use 'resnet18' (VAC) or 'small'")
        if freeze_trunk:
            self.trunk.requires_grad_(False)
        self.freeze_trunk, self.edge_padding = freeze_trunk, edge_padding
        self.trunk_dim = width
        self.temporal = nn.ModuleList()
        for layer in range(2):
            self.temporal.append(nn.Sequential(nn.Conv1d(width if layer == 0 else hidden, hidden, 5),
                                               nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)))
        self.pool = nn.MaxPool1d(2)
        self.stride = 4
        self.out_dim = hidden

    @staticmethod
    def conv_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """VAC's K5-P2-K5-P2 without padding: ((T - 4) // 2 - 4) // 2, as the layers compute it."""
        for _ in range(2):
            lengths = torch.div(lengths - 4, 2, rounding_mode="floor")
        return lengths

    def padded_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Clip lengths after VAC's edge padding: 4 * ceil(T / 4) + 12."""
        return 4 * torch.div(lengths + 3, 4, rounding_mode="floor") + self.edge_total

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        if self.edge_padding:
            lengths = self.padded_lengths(lengths)
        return self.conv_lengths(lengths).clamp(min=0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lengths = lengths.to(x.device)
        batch, steps = x.shape[:2]
        valid = valid_mask(lengths, steps)                                                       # (B, T)
        features = self.trunk(x[valid])                                                          # (N_valid, D)
        frames = features.new_zeros(batch, steps, self.trunk_dim)
        frames[valid] = features
        if self.edge_padding:
            # Frame p of the padded clip is frame p - 6 of the clip, clamped to its first and last frames.
            padded = self.padded_lengths(lengths)
            index = torch.arange(int(padded.max()), device=x.device)[None, :] - self.edge_left
            index = torch.minimum(index.clamp(min=0), (lengths[:, None] - 1).clamp(min=0))   # (B, T_padded)
            frames = frames.gather(1, index[..., None].expand(-1, -1, self.trunk_dim))
            lengths = padded
        # At least 16 frames so the kernels fit (16 -> 12 -> 6 -> 2 -> 1): a batch of clips too short for
        # any output then yields one frame with length 0 instead of a crash mid-epoch.
        if frames.shape[1] < 16:
            frames = nn.functional.pad(frames, (0, 0, 0, 16 - frames.shape[1]))
        out = zero_padding(frames.transpose(1, 2), lengths, time_dim=2)                         # (B, D, T)
        for layer in self.temporal:
            lengths = lengths - 4
            out = masked(layer, out, lengths, time_dim=2)
            lengths = torch.div(lengths, 2, rounding_mode="floor")
            out = zero_padding(self.pool(out), lengths, time_dim=2)
        # Batch time past the longest clip (when x was padded beyond it) carries no frames.
        return out[:, :, : max(int(lengths.max()), 1)].transpose(1, 2)
