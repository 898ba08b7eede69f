"""Video architectures: per-frame CNN -> stacked bidirectional RNN -> CTC."""
from __future__ import annotations

from ..encoder import EncoderConfig
from ..model import CTCModel
from ..registry import register_model
from ..video import FrameCNN


@register_model
def frame_cnn_rnn(*, num_classes: int, in_shape: tuple[int, int, int] = (3, 32, 32), trunk: str = "small",
                  widths: tuple[int, ...] = (16, 32, 64), grid: int = 4, feature_dim: int = 128,
                  dropout: float = 0.0, weights_path: str | None = None, freeze_trunk: bool = False,
                  temporal_kernel: int = 9, temporal_stride: int = 4, frame_difference: bool = True,
                  motion_cues: bool = True, pool: str = "avgmax", input_norm: bool = True,
                  encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """Per-frame 2D CNN -> temporal conv (kernel 9, stride 4) -> 2-layer BiGRU x 96 -> CTC.

    The frame CNN is a small stride-2 conv stack over each frame, its difference to the previous one
    and normal-flow motion cues (standardised per channel first), pooled by mean and max over space (``pool="grid"`` keeps a coarse position grid instead,
    ``"softargmax"`` keypoint coordinates), or ``trunk="resnet18"``: torchvision's ResNet-18 with
    ``weights=None`` unless ``weights_path`` names a local state_dict. This is the default recipe for
    weakly supervised action labelling on SyntheticActions (``configs/synthetic_actions_gru.yaml``);
    ``encoder={"cell": "lstm"}`` swaps in a BiLSTM. ``motion_cues`` adds normal-flow channels (see
    :func:`ctcrnn.video.frontends.normal_flow`) and ``input_norm`` standardises the input channels.
    """
    frontend = FrameCNN(tuple(in_shape), trunk=trunk, widths=tuple(widths), grid=grid, feature_dim=feature_dim,
                        dropout=dropout, weights_path=weights_path, freeze_trunk=freeze_trunk,
                        temporal_kernel=temporal_kernel, temporal_stride=temporal_stride,
                        frame_difference=frame_difference, motion_cues=motion_cues, pool=pool,
                        input_norm=input_norm)
    defaults = dict(cell="gru", hidden_size=96, num_layers=2, bidirectional=True, dropout=0.0)
    return CTCModel(frontend, EncoderConfig.resolve(defaults, encoder), num_classes)
